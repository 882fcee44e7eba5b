// The relay's side of the wake-up protocol (sql/20_wakeup.sql) reproduced on one
// connection, for tests of what captures notify.
import pg from 'pg';
import { CHANNEL } from '../../relay/engine-names.ts';

/**
 * A connection that LISTENs on bpd_webhooks, as a relay's does, and can announce
 * itself idle or awake. next() resolves with the next notification, in order.
 */
export async function relayConnection(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const queue: pg.Notification[] = [];
  const waiters: Array<(n: pg.Notification) => void> = [];
  client.on('notification', (n) => {
    const waiter = waiters.shift();
    if (waiter) waiter(n);
    else queue.push(n);
  });
  await client.query(`listen ${CHANNEL}`);
  return {
    goingIdle: async () => (await client.query('select webhooks_relay.going_idle() as safe')).rows[0].safe as boolean,
    capturesDone: async () => (await client.query('select webhooks_relay.captures_done() as done')).rows[0].done as boolean,
    awake: () => client.query('select webhooks_relay.awake()'),
    next: () => new Promise<pg.Notification>((resolve) => {
      const queued = queue.shift();
      if (queued) resolve(queued);
      else waiters.push(resolve);
    }),
    pending: () => queue.length,
    close: () => client.end(),
  };
}

// A committed transaction that notifies with a payload of its own: every notification
// before it in the stream came from earlier commits.
export async function sentinel(pool: pg.Pool, mark: string) {
  await pool.query('select pg_notify($1, $2)', [CHANNEL, mark]);
}
