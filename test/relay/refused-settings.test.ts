// A typo in an engine setting stops nothing (sql/02_settings.sql), so the relay says
// it when it starts: one warning per refused setting, with what holds instead.
import test from 'ava';
import { once } from 'node:events';
import { lines } from '../helpers/lines.ts';
import type pg from 'pg';
import { relayScene, spawnRelay, testRelay, waitForRows } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

/** The server processes of this database's relay connections (its pool's). */
async function relayBackends(pool: Pick<pg.Pool, 'query'>): Promise<number[]> {
  const { rows } = await pool.query(
    `select pid from pg_stat_activity where datname = current_database() and application_name = 'bpd-webhooks-relay'`);
  return rows.map((row) => row.pid as number);
}

test('a relay starting in a database with a refused setting warns of it, and delivers', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set webhooks.max_in_flight = 'thirty-two'`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204 }] });

  const relay = spawnRelay(database.url, { RELAY_ID: 'relay-settings', RELAY_LOG_LEVEL: 'warn' });
  t.teardown(() => relay.kill('SIGKILL'));
  const out = lines(relay.stdout!);
  const [warning] = await out.next(/"msg":"setting webhooks\.max_in_flight = 'thirty-two' is not used[^"]*"/);
  t.like(JSON.parse(out.seen.find((line) => line.includes(warning))!), {
    level: 40,
    setting: 'webhooks.max_in_flight',
    setTo: 'thirty-two',
    inForce: '32',
    msg: "setting webhooks.max_in_flight = 'thirty-two' is not used: not a whole number: the default holds",
  });

  await f.contact(company.id);
  await receiver.waitFor(1, { path: '/hook' });
  t.is(out.seen.filter((line) => line.includes('is not used')).length, 1, 'said once');
  relay.kill('SIGTERM');
  await once(relay, 'exit');
});

// A DBA's change of a setting (alter database … set) reaches a session when it
// connects: a relay that kept its connections for its whole life ran on the settings
// of its start, however long it ran, and its gauge of refused settings showed none of
// a typo made after it. Its connections are renewed (RELAY_DB_CONNECTION_LIFETIME_MS).
test('a setting changed while the relay runs is in force once its connections are renewed', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, otherwise: 500 });
  const relay = testRelay(database.url, { RELAY_DB_CONNECTION_LIFETIME_MS: '500' });
  t.teardown(() => relay.stop());
  await relay.start();
  // every connection the relay may hold opened before the change: claims and settles
  // of a burst of failing deliveries, a poll, a rescue and a backfill step at once
  for (let i = 0; i < 40; i++) await f.contact(company.id);
  await until('the relay holds its four connections', async () => (await relayBackends(database.pool)).length === 4);
  await database.pool.query(`update webhooks.webhooks set enabled = false, disabled_at = now(), disabled_by = 'admin', disabled_reason = 'quiet' where id = $1`, [webhook.id]);

  await database.pool.query(`alter database ${database.name} set webhooks.max_attempts = 1`);
  const opened = await relayBackends(database.pool);
  await until('the connections open at the change renewed', async () =>
    (await relayBackends(database.pool)).every((pid) => !opened.includes(pid)));
  const later = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/later') });
  receiver.route('/later', { secret: later.secret, otherwise: 500 });
  await f.contact(company.id);
  const [delivery] = await waitForRows(database.pool,
    `select state, attempts from webhooks.deliveries where webhook_id = $1 and attempts > 0 and state <> 'in_flight'`,
    [later.id], (rows) => rows.length === 1);
  t.deepEqual(delivery, { state: 'failed', attempts: 1 }, 'failed for good at the one attempt now allowed');
});
