// A DBA may make repeatable read or serializable the database's default isolation,
// for the CRM's own sake. The relay's sessions stay READ COMMITTED, which the engine's
// claims, settles and rescues are written for: under the stricter levels they failed
// with serialization errors once two relays met, their results were dropped, and the
// deliveries sat in flight until their lease ran out and were then sent again.
import test from 'ava';
import { relayScene, rememberedLog, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

for (const level of ['repeatable read', 'serializable']) {
  test(`a database whose default isolation is ${level}: two relays deliver everything, in read committed sessions: no statement fails to serialize, no lease runs out`, async (t) => {
    const { database, receiver, f, company } = await relayScene(t);
    await database.pool.query(`alter database ${database.name} set default_transaction_isolation = '${level}'`);
    const hooks = [];
    for (let i = 0; i < 3; i++) {
      const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url(`/h${i}`) });
      // two failures first: retries make settles and claims of both relays meet
      receiver.route(`/h${i}`, { secret: hook.secret, replies: [500, 500], otherwise: 200 });
      hooks.push(hook);
    }
    const logs = ['relay-a', 'relay-b'].map(() => rememberedLog(5_000));
    const relays = ['relay-a', 'relay-b'].map((id, i) => testRelay(database.url, { RELAY_ID: id }, { log: logs[i].log }));
    for (const relay of relays) t.teardown(() => relay.stop());
    await Promise.all(relays.map((relay) => relay.start()));
    for (const relay of relays) {
      const { rows: [session] } = await relay.pool.query('show transaction_isolation');
      t.is(session.transaction_isolation, 'read committed');
    }

    await database.pool.query(
      `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, 300) n`,
      [company.id],
    );
    // (within a lease: none waited for its lease to run out)
    const done = await waitForFinalDeliveries(database.pool, hooks.map((h) => h.id), 900, 55_000);
    t.true(done.every((d) => d.state === 'succeeded'));
    // no statement of the relays failed to serialize, and no lease ran out
    const failed = logs.flatMap((l) => l.lines()).filter((line) => /could not serialize|40001|40P01/.test(line));
    t.deepEqual(failed, []);
    const { rows: [{ expired }] } = await database.pool.query(
      `select count(*)::int as expired from webhooks.delivery_attempts where error like 'lease expired%'`);
    t.is(expired, 0);
    // each delivery sent, and the two failures of each webhook; more only as
    // at-least-once allows (under a full test run's load, 41 more of 906 once, with
    // neither of the above and not explained yet; alone, none)
    const ids = hooks.flatMap((_, i) => receiver.received(`/h${i}`).map((r) => r.headers['webhook-id']));
    t.is(new Set(ids).size, 900, 'every delivery arrived');
    t.log(`${ids.length} requests for 906 expected`);
    const { rows: kinds } = await database.pool.query(
      `select status_code, left(error, 60) as error, count(*)::int as n from webhooks.delivery_attempts group by 1, 2 order by 3 desc`);
    t.log(JSON.stringify(kinds));
    t.true(ids.length >= 906);
  });
}
