// A sleeping relay's connections ended by a DBA (pg_terminate_backend): the one that
// listens for notifications, the one that holds relay_idle (sql/20_wakeup.sql), or
// all of them. The relay must not sleep through a change written right after: here it
// has no polling to fall back on (RELAY_POLL_INTERVAL_MS of an hour), so only its own
// recovery can find the change. (test/relay/long-life.test.ts ends them between
// deliveries, with polling on.)
import test from 'ava';
import { relayAsleep, relayScene, rememberedLog, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';

const CASES: Array<[string, string[]]> = [
  ['notification connection', ['bpd-webhooks-relay-listener']],
  ['connection holding relay_idle', ['bpd-webhooks-relay-idle']],
  ['connections, all of them,', ['bpd-webhooks-relay', 'bpd-webhooks-relay-idle', 'bpd-webhooks-relay-listener']],
];

for (const [what, kinds] of CASES) {
  test(`a sleeping relay's ${what} ended: a change written once they are gone is delivered, once, without polling`, async (t) => {
    const { database, receiver, f, company } = await relayScene(t);
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
    receiver.route('/hook', { secret: webhook.secret, otherwise: 204 });
    const { log, lines } = rememberedLog(500);
    const relay = testRelay(database.url, { RELAY_ID: 'relay-asleep', RELAY_POLL_INTERVAL_MS: '3600000',
      RELAY_RESCUE_INTERVAL_MS: '3600000', RELAY_BACKFILL_INTERVAL_MS: '3600000' }, { log });
    t.teardown(() => relay.stop());
    await relay.start();
    // awake once, so that every kind of connection is open, then asleep
    await f.contact(company.id);
    await receiver.waitFor(1, { path: '/hook' });
    await relayAsleep(database.pool);

    // (each kind's connection once it is open: asleep, the relay holds relay_idle, and a
    // connection of another kind may still be on its way under load)
    const [{ pids }] = await waitForRows(database.pool,
      `select coalesce(array_agg(pid), '{}') as pids, count(distinct application_name)::int as kinds
         from pg_stat_activity where datname = $1 and application_name = any ($2)`,
      [database.name, kinds], (rows) => rows[0].kinds === new Set(kinds).size);
    t.true(pids.length >= new Set(kinds).size);
    await database.pool.query('select pg_terminate_backend(pid) from unnest($1::int[]) pid', [pids]);
    // gone: a notification now reaches none of them
    await waitForRows(database.pool, 'select pid from pg_stat_activity where pid = any ($1::int[])', [pids], (rows) => rows.length === 0);
    const contact = await f.contact(company.id);
    const [, request] = await receiver.waitFor(2, { path: '/hook', timeoutMs: 15_000 }).catch((error: Error) => {
      t.log(lines().slice(-20).join('\n'));
      throw error;
    });
    t.is(JSON.parse(request!.body).data.contact.id, Number(contact.id));
    const done = await waitForFinalDeliveries(database.pool, [webhook.id], 2);
    t.deepEqual(done.map((d) => [d.state, d.attempts]), [['succeeded', 1], ['succeeded', 1]]);
    t.is(new Set(receiver.received('/hook').map((r) => r.headers['webhook-id'])).size, 2);
    t.is(receiver.received('/hook').length, 2, 'each sent once');
    // and it sleeps again, holding relay_idle on a connection of its own
    await relayAsleep(database.pool);
  });
}
