// A result the database refuses to settle cannot hold back the others: the relay
// writes the batch one by one, drops the refused result, and the rescue takes over
// that delivery once its lease runs out.
import test from 'ava';
import { RELAY_POOL_MAX } from '../../relay/database.ts';
import { migrate } from '../../tools/migrate.ts';
import { freezableProxy } from '../helpers/proxy.ts';
import { relayScene, rememberedLog, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

/**
 * A trigger of a DBA's that refuses every change of one webhook: what the settle
 * writes for it (the disable a 410 asks for) fails inside the settle statement. (A
 * configuration stored before a rule did so until 2026-12-05; the rules now apply to
 * what is written, and such a webhook is disabled.)
 */
async function refuseChangesOf(pool: import('pg').Pool, webhookId: string) {
  await pool.query(`create function public.refuse_webhook_change() returns trigger language plpgsql
    as $$ begin raise exception 'a change of webhook % is refused', old.id; end $$`);
  await pool.query(`create trigger refuse_change before update on webhooks.webhooks
    for each row when (old.id = ${Number(webhookId)}) execute function public.refuse_webhook_change()`);
}

test('a result that cannot be settled is isolated; the other deliveries settle', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/gone'), maxAttempts: 1 });
  const fine = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/fine') });
  receiver.route('/gone', { otherwise: 410 });
  receiver.route('/fine', { otherwise: 200 });
  // disabling the webhook on its 410 fails inside the settle statement
  await refuseChangesOf(database.pool, gone.id);
  for (let i = 0; i < 3; i++) await f.contact(company.id);

  // a short lease, so that the rescue comes soon; the request timeout below it must
  // still leave the receiver ample time to answer on a busy machine
  const relay = testRelay(database.url, { RELAY_LEASE_MS: '3000', RELAY_REQUEST_TIMEOUT_MS: '2500' });
  t.teardown(() => relay.stop());
  await relay.start();

  const settled = await waitForFinalDeliveries(database.pool, [fine.id], 3);
  t.true(settled.every((d) => d.state === 'succeeded'));
  const refused = await waitForFinalDeliveries(database.pool, [gone.id], 3);
  for (const d of refused) {
    t.is(d.state, 'failed');
    t.regex(d.last_error, /^lease expired/);
  }
  const { rows: [hook] } = await database.pool.query('select enabled from webhooks.webhooks where id = $1', [gone.id]);
  t.true(hook.enabled, 'the disable could not be written');
});

test('a batch the database cannot write for now (read-only) is written once it can: not dropped as a refused result', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  let answer!: () => void;
  receiver.route('/hook', { replies: [{ status: 200, after: new Promise<void>((resolve) => (answer = resolve)) }] });
  await f.contact(company.id);

  const { log, lines } = rememberedLog(5_000);
  const relay = testRelay(database.url, { RELAY_LEASE_MS: '15000', RELAY_REQUEST_TIMEOUT_MS: '10000' }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  await receiver.waitFor(1, { path: '/hook' });

  // while the request is out, the database turns read-only for a moment (a standby
  // not yet promoted, an operator's default_transaction_read_only): the relay's new
  // connections can read but not write
  const dropRelayConnections = () => database.pool.query(
    `select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name = 'bpd-webhooks-relay'`,
    [database.name]);
  await database.pool.query(`alter database ${database.name} set default_transaction_read_only = on`);
  await dropRelayConnections();
  answer();
  await until('a settle refused as read-only', async () => lines().some((line) => /"msg":"settle /.test(line) && /"code":"25006"/.test(line)));
  await database.pool.query(`alter database ${database.name} reset default_transaction_read_only`);
  await dropRelayConnections();

  const [delivery] = await waitForFinalDeliveries(database.pool, [webhook.id], 1);
  t.like(delivery, { state: 'succeeded', attempts: 1, last_status_code: 200 });
  const { rows } = await database.pool.query('select attempt, status_code, error from webhooks.delivery_attempts where webhook_id = $1', [webhook.id]);
  t.deepEqual(rows, [{ attempt: 1, status_code: 200, error: null }], 'the attempt as it was made, not a lease that ran out');
  t.is(receiver.received('/hook').length, 1, 'sent once');
});

test('a stored secret that cannot sign (written by hand before the tables checked its form) fails that webhook\'s attempts with the reason; the relay goes on', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const broken = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/broken'), maxAttempts: 1 });
  const rotated = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/rotated'), maxAttempts: 1 });
  const fine = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/fine') });
  receiver.route('/fine', { secret: fine.secret, otherwise: 200 });
  // written by hand, as a DBA importing secrets might, before migration 0036 checked
  // their form (its checks are NOT VALID: such rows stay): the checks taken off for
  // the writes, then put back as the migration left them
  await database.pool.query(`alter table webhooks_private.webhook_secrets drop constraint webhook_secrets_secret_form;
                             alter table webhooks_private.rotated_secrets drop constraint rotated_secrets_secret_form`);
  await database.pool.query(`update webhooks_private.webhook_secrets set secret = 'whsec_' where webhook_id = $1`, [broken.id]);
  await database.pool.query(
    `insert into webhooks_private.rotated_secrets (webhook_id, secret, expires_at) values ($1, 'whsec-not-base64', now() + interval '1 hour')`,
    [rotated.id],
  );
  await database.pool.query('delete from webhooks_private.migrations where name >= $1', ['0036_secret_form']);
  await migrate(database.url);
  await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  const { claimed } = await relay.runOnce();
  t.is(claimed, 3);
  const [done] = await waitForFinalDeliveries(database.pool, [fine.id], 1);
  t.is(done.state, 'succeeded');
  for (const [webhook, why] of [[broken, 'a signing secret must not be empty'], [rotated, 'a signing secret must start with whsec_']] as const) {
    const [delivery] = await waitForFinalDeliveries(database.pool, [webhook.id], 1);
    t.like(delivery, { state: 'failed', attempts: 1, last_error: `not sent: the webhook's signing secret cannot sign (${why})` });
  }
  t.deepEqual(receiver.requests.map((r) => r.path), ['/fine']);
});

test('a result that could not be written is still held until its lease runs out: a hand-back after a lost claim answer does not take it for never sent', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/gone'), maxAttempts: 1 });
  receiver.route('/gone', { otherwise: 410 });
  // as in the first test: the disable its 410 asks for cannot be written
  await refuseChangesOf(database.pool, gone.id);
  const contact = await f.contact(company.id);
  const proxy = await freezableProxy(new URL(database.url));
  t.teardown(() => proxy.close());

  const { log, lines } = rememberedLog(5_000);
  const logged = (msg: string) => lines().some((line) => (JSON.parse(line).msg as string).startsWith(msg));
  // the default lease, a minute: past this test
  const relay = testRelay(proxy.url, { RELAY_DB_QUERY_TIMEOUT_MS: '2000', RELAY_LEASE_MS: '60000' }, { log });
  t.teardown(() => relay.stop());
  await relay.start();
  await receiver.waitFor(1, { path: '/gone' });
  await until('the 410 is refused and dropped', async () => logged('cannot settle this attempt'));
  const leaseOf = async () => (await database.pool.query(
    'select state, attempts, locked_until from webhooks.deliveries where webhook_id = $1', [gone.id])).rows[0];
  const leased = await leaseOf();

  // a claim whose answer is lost: the relay hands back what is leased to it and not
  // held, before its next claim
  const later = await f.webhook({ companyId: company.id, actions: ['contact.updated'], url: receiver.url('/later') });
  receiver.route('/later', { secret: later.secret, otherwise: 200 });
  // every connection of the relay open, then deaf: the claims' own (open since the
  // first claim) and all of the pool's, which the hand-back runs on. The next claim's
  // answer is lost
  await Promise.all(Array.from({ length: RELAY_POOL_MAX }, () => relay.pool.query('select pg_sleep(0.2)')));
  t.is(relay.claimPool.totalCount, 1);
  proxy.deafen();
  await database.pool.query(`update crm.contacts set first_name = 'Later' where id = $1`, [contact.id]);
  // leased by a claim whose answer was lost, it goes only once handed back (its
  // lease is a minute); the hand-back that does it may lose its answer too, and
  // the next find nothing more (test/relay/silent-network.test.ts)
  await waitForRows(database.pool, 'select 1 from webhooks.delivery_attempts where webhook_id = $1', [later.id],
    (rows) => rows.length > 0, 30_000);
  await waitForFinalDeliveries(database.pool, [later.id], 1, 30_000);

  // the dropped result's delivery is still under the same lease, its attempt
  // counted: the request it made was not taken back as never sent, nor made again
  t.like(leased, { state: 'in_flight', attempts: 1 });
  t.deepEqual(await leaseOf(), leased);
  t.is(receiver.received('/gone').length, 1);
});
