// NOTIFY is a wake-up hint sent on commit: at most one per transaction, none when
// nothing was written, none after a rollback.
import test from 'ava';
import pg from 'pg';
import { useTestDatabase } from './helpers/db.ts';
import { factories } from './helpers/factories.ts';

const db = useTestDatabase(test);

/** Listens on bpd_webhooks; next() resolves with the next notification, in order. */
async function listen(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const queue: pg.Notification[] = [];
  const waiters: Array<(n: pg.Notification) => void> = [];
  client.on('notification', (n) => {
    const waiter = waiters.shift();
    if (waiter) waiter(n);
    else queue.push(n);
  });
  await client.query('listen bpd_webhooks');
  return {
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
async function sentinel(pool: pg.Pool, mark: string) {
  await pool.query('select pg_notify($1, $2)', ['bpd_webhooks', mark]);
}

test.serial('one notification for a transaction that writes many deliveries, after commit', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const listener = await listen(db().url);
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query("insert into crm.contacts (company_id, first_name) select $1, 'n' || g from generate_series(1, 3) g", [company.id]);
    await client.query('insert into crm.contacts (company_id, first_name) values ($1, $2)', [company.id, 'last']);
    const { rows } = await client.query('select count(*)::int as n from webhooks.deliveries where company_id = $1', [company.id]);
    t.is(rows[0].n, 8);
    t.is(listener.pending(), 0, 'nothing before commit');
    await client.query('commit');
  } finally {
    client.release();
  }
  await sentinel(db().pool, 'end');
  t.deepEqual([(await listener.next()).payload, (await listener.next()).payload], ['', 'end']);
  await listener.close();
});

test.serial('no notification after a rollback, nor for a change no webhook wants', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const listener = await listen(db().url);
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query('insert into crm.contacts (company_id) values ($1)', [company.id]);
    await client.query('rollback');
  } finally {
    client.release();
  }
  const quiet = await f.company();
  await f.contact(quiet.id); // no webhook of this company listens
  await sentinel(db().pool, 'end');
  t.is((await listener.next()).payload, 'end');
  await listener.close();
});
