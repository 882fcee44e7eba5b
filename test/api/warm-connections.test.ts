// The API keeps as many connections open as one company's requests may use at once,
// however long they stay idle (api/server.ts): a connection opened anew reads the
// catalog entries of every partition of the outbox and plans its statements before its
// first answer (0.2 to 0.4 s for a report at 90 days kept, against about 35 ms warm),
// so an admin who comes back to the page after a quiet spell would have paid that on
// each of the page's first requests. Those above it close after their idle time.
import test from 'ava';
import { AUTHENTICATOR_ROLE } from '../../api/authenticator.ts';
import { DEFAULT_LIMITS } from '../../api/limits.ts';
import { startTestApi } from '../helpers/api.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);

const IDLE_MS = 200;
const RENAME = 'mutation($id: BigInt!, $name: String!) { updateWebhook(input: { id: $id, name: $name }) { result { name } } }';

/** The API's connections to this test's database, by backend pid. */
async function apiBackends(): Promise<number[]> {
  const { rows } = await db().pool.query(
    'select pid from pg_stat_activity where datname = current_database() and usename = $1 order by pid',
    [AUTHENTICATOR_ROLE]);
  return rows.map((row) => row.pid as number);
}

test("after a quiet spell one company's worth of connections is still open; the rest closed after their idle time", async (t) => {
  const warm = DEFAULT_LIMITS.companyMaxInFlight;
  const api = await startTestApi(db().url, { poolSize: 2 * warm, idleConnectionMs: IDLE_MS });
  t.teardown(() => api.stop());
  const f = factories(db().pool);

  // two companies' renames at once, each waiting on a DBA's lock of its webhook: the
  // pool opens a connection for every one of them
  const dba = await db().pool.connect();
  t.teardown(() => dba.release());
  await dba.query('begin');
  const renames: Array<Promise<unknown>> = [];
  for (let c = 0; c < 2; c++) {
    const company = await f.company();
    const token = await api.token(company.id);
    for (let i = 0; i < warm; i++) {
      const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
      await dba.query('select 1 from webhooks.webhooks where id = $1 for update', [hook.id]);
      renames.push(api.gql(token, RENAME, { id: hook.id, name: `Renamed ${i}` }));
    }
  }
  await until('every rename holds a connection', async () => (await apiBackends()).length === 2 * warm);
  await dba.query('commit');
  for (const rename of await Promise.all(renames)) t.is((rename as { errors?: unknown }).errors, undefined);

  // the connections above one company's share close once idle; the others stay open,
  // however long the quiet lasts (no event to wait for: ten times their idle time)
  await until('the connections above the warm ones close', async () => (await apiBackends()).length <= warm);
  const kept = await apiBackends();
  t.is(kept.length, warm);
  await new Promise((resolve) => setTimeout(resolve, 10 * IDLE_MS));
  t.deepEqual(await apiBackends(), kept);

  // and the next request goes through one of them
  const company = await f.company();
  t.is((await api.gql(await api.token(company.id), '{ allWebhooks { totalCount } }')).data?.allWebhooks.totalCount, 0);
  t.deepEqual(await apiBackends(), kept);
});
