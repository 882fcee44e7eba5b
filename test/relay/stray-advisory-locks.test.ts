// The engine's advisory-lock keys are computable (sql/00_schemas.sql) and any login may
// take them (docs/sql.md, "Do not take the engine's keys by hand"). Whatever a stray
// session holds, a CRM writer's capture and the relay's claim only try their locks:
// neither waits behind it.
import test from 'ava';
import { ownConnection } from '../helpers/db.ts';
import { relayScene, testRelay, waitForRows } from '../helpers/relay.ts';

test("a session holding every engine key a capture or a claim could meet blocks neither: the writer's contact is captured and delivered once", async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204 }] });

  const stray = await ownConnection(database.url, t);
  await stray.query(
    `select pg_advisory_lock(webhooks_private.lock_space(), webhooks_private.capturing_lock()),
            pg_advisory_lock(webhooks_private.lock_space(), webhooks_private.relay_idle_lock()),
            pg_advisory_lock(webhooks_private.day_drop_lock(webhooks_private.utc_day(now()))),
            pg_advisory_lock(webhooks_private.day_counts_lock($1)),
            pg_advisory_lock(webhooks_private.company_webhooks_lock($2)),
            pg_advisory_lock(webhooks_private.partition_lock())`, [webhook.id, company.id]);

  // a wait for any of them would end at lock_timeout (55P03), not hang the test
  const writer = await ownConnection(database.url, t);
  await writer.query(`set lock_timeout = '3s'`);
  const { rows: [contact] } = await writer.query(
    `insert into crm.contacts (company_id, first_name) values ($1, 'Stray') returning id`, [company.id]);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  const rows = await waitForRows(database.pool,
    'select state from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, contact.id],
    (found) => found[0]?.state === 'succeeded');
  t.deepEqual(rows, [{ state: 'succeeded' }]);
  t.is(receiver.requests.length, 1);
});
