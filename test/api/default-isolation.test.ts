// A database whose default isolation is serializable (a DBA's choice for the CRM's
// sake): the API's sessions still run READ COMMITTED, which its changes are written
// for. An admin's change to a webhook whose row another transaction changed first
// waits for it and then goes on; at serializable it failed with "could not serialize
// access due to concurrent update".
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { waitForRows } from '../helpers/relay.ts';

const { db, api } = useTestDatabaseWithApi(test, {
  beforeApi: (database) => database.pool.query(`alter database ${database.name} set default_transaction_isolation = 'serializable'`).then(() => {}),
});

const SET = `mutation($id: BigInt!, $window: IntervalInput, $ordered: Boolean) {
  setWebhookDelivery(input: { id: $id, coalesceWindow: $window, ordered: $ordered }) { result { id ordered } }
}`;

test("an admin's change waits for a DBA's change of the same webhook, then goes on", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const admin = await api().token(company.id);

  const dba = await db().pool.connect();
  t.teardown(() => dba.release());
  await dba.query('begin');
  await dba.query('update webhooks.webhooks set name = $2 where id = $1', [hook.id, 'Renamed by the DBA']);
  const change = api().gql(admin, SET, { id: hook.id, window: null, ordered: true });
  // the admin's change waits for the DBA's row lock
  await waitForRows(db().pool,
    `select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`, [],
    (rows) => rows.length > 0, 10_000);
  await dba.query('commit');
  const done = await change;
  t.falsy(done.errors, JSON.stringify(done.errors));
  const { rows: [row] } = await db().pool.query('select name, ordered from webhooks.webhooks where id = $1', [hook.id]);
  t.deepEqual(row, { name: 'Renamed by the DBA', ordered: true });
});
