// The network path between the API and Postgres goes silent (a partition, a NAT that
// dropped the connection: nothing closes it, nothing comes back): a request on a
// connection opened before is answered with DATABASE_UNAVAILABLE once the database
// has said nothing for longer than any statement of a request may run, and the
// requests after it work over new connections. Before, the request waited until TCP
// gave up (many minutes), and the pool put its connection back for the next one to
// wait behind. The server ends the session given up, and the locks its change took,
// though the path stays open (as a partition keeps it).
import test, { type ExecutionContext } from 'ava';
import { startTestApi, type TestApi } from '../helpers/api.ts';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { freezableProxy } from '../helpers/proxy.ts';
import { until, within } from '../helpers/until.ts';
import { AUTHENTICATOR_ROLE } from '../../api/authenticator.ts';
import { apiDatabaseReadTimeoutMs } from '../../api/limits.ts';

const db = useTestDatabase(test);

const CREATE = `mutation($name: String!) {
  createWebhook(input: { name: $name, url: "https://receiver.example.com/bpd", fields: ["first_name"], actions: [CONTACT_CREATED] }) {
    result { webhook { name } }
  }
}`;

const RENAME = 'mutation($id: BigInt!, $name: String!) { updateWebhook(input: { id: $id, name: $name }) { result { name } } }';

// short, so that the test is: the read timeout is this plus its margin
const STATEMENT_TIMEOUT_MS = 1_000;
/** A request on a silent connection is answered within this long. */
const ANSWERED_WITHIN_MS = apiDatabaseReadTimeoutMs({ statementTimeoutMs: STATEMENT_TIMEOUT_MS }) + 5_000;

const namesOf = async (companyId: string) => (await db().pool.query<{ name: string }>(
  'select name from webhooks.webhooks where company_id = $1 order by name', [companyId])).rows.map((r) => r.name);

/** The API behind a proxy whose path can go silent, with a pool of one connection (the next request gets it back, or a new one). */
async function apiBehindProxy(t: ExecutionContext) {
  const proxy = await freezableProxy(new URL(db().url));
  const api = await startTestApi(proxy.url, { poolSize: 1, limits: { statementTimeoutMs: STATEMENT_TIMEOUT_MS } });
  // (the proxy first: a connection left hanging would hold the pool's end)
  t.teardown(async () => {
    await proxy.close();
    await api.stop();
  });
  const company = await factories(db().pool).company();
  return { proxy, api, company, token: await api.token(company.id) };
}

/** Requests after the silent one: each answered, over a new connection. */
async function nextRequestsWork(t: ExecutionContext, api: TestApi, token: string, names: string[]): Promise<void> {
  for (const name of names) {
    const after = await within(ANSWERED_WITHIN_MS, api.gql(token, CREATE, { name }));
    t.not(after, 'still waiting', `${name}: answered, not queued behind the silent connection`);
    if (after === 'still waiting') return;
    t.is(after.errors, undefined, `${name}: ${JSON.stringify(after.errors)}`);
  }
}

// (serial: the second test locks the table the first one writes)
test.serial('a request on a connection whose path went silent: DATABASE_UNAVAILABLE within the read timeout, and the next requests work over new connections', async (t) => {
  const { proxy, api, company, token } = await apiBehindProxy(t);
  const before = await api.gql(token, CREATE, { name: 'Before' });
  t.is(before.errors, undefined, 'answered while the path carries bytes');

  proxy.freeze();
  const silent = await within(ANSWERED_WITHIN_MS, api.gql(token, CREATE, { name: 'Silent' }));
  t.not(silent, 'still waiting', `answered within ${ANSWERED_WITHIN_MS} ms`);
  if (silent === 'still waiting') return;
  t.is(silent.status, 200);
  t.is(silent.errors?.[0]?.extensions?.code, 'DATABASE_UNAVAILABLE', JSON.stringify(silent.errors));

  await nextRequestsWork(t, api, token, ['After', 'After again']);
  t.deepEqual(await namesOf(company.id), ['After', 'After again', 'Before'], 'the silent one kept nothing');
});

test.serial('a request running when its path goes silent: DATABASE_UNAVAILABLE within the read timeout, nothing kept, and the next requests work', async (t) => {
  const { proxy, api, company, token } = await apiBehindProxy(t);
  // the mutation's insert waits for the test's lock
  const holder = await ownConnection(db().url, t);
  await holder.query('begin');
  await holder.query('lock table webhooks.webhooks in share mode');
  const answer = api.gql(token, CREATE, { name: 'Running' });
  const waiting = `select pid from pg_stat_activity
    where datname = current_database() and usename = $1 and wait_event_type = 'Lock'`;
  await until('the mutation waits for the lock', async () => (await db().pool.query(waiting, [AUTHENTICATOR_ROLE])).rowCount === 1);

  proxy.freeze();
  const silent = await within(ANSWERED_WITHIN_MS, answer);
  await holder.query('rollback');
  t.not(silent, 'still waiting', `answered within ${ANSWERED_WITHIN_MS} ms`);
  if (silent === 'still waiting') return;
  t.is(silent.errors?.[0]?.extensions?.code, 'DATABASE_UNAVAILABLE', JSON.stringify(silent.errors));

  await nextRequestsWork(t, api, token, ['After']);
  t.deepEqual(await namesOf(company.id), ['After'], 'the running one kept nothing');
});

test.serial('a session given up on a silent path ends on the server: the row its change locked is released within the read timeout', async (t) => {
  const { proxy, api, company, token } = await apiBehindProxy(t);
  const webhook = await factories(db().pool).webhook({ companyId: company.id, name: 'Locked', actions: ['contact.created'] });
  // the mutation's update waits for the test's lock on the row, then takes it and runs
  const holder = await ownConnection(db().url, t);
  await holder.query('begin');
  await holder.query('select from webhooks.webhooks where id = $1 for update', [webhook.id]);
  const answer = api.gql(token, RENAME, { id: webhook.id, name: 'Renamed' });
  const waiting = `select pid from pg_stat_activity
    where datname = current_database() and usename = $1 and wait_event_type = 'Lock'`;
  let pid = 0;
  await until('the mutation waits for the row', async () => {
    pid = (await db().pool.query<{ pid: number }>(waiting, [AUTHENTICATOR_ROLE])).rows[0]?.pid ?? 0;
    return pid !== 0;
  });
  // its path goes silent, and then its update takes the row: its answer is lost, and
  // its session waits for a next statement that never comes
  proxy.freeze();
  await holder.query('commit');
  const silent = await within(ANSWERED_WITHIN_MS, answer);
  t.not(silent, 'still waiting');
  if (silent === 'still waiting') return;
  t.is(silent.errors?.[0]?.extensions?.code, 'DATABASE_UNAVAILABLE', JSON.stringify(silent.errors));

  // the proxy holds the path open, as a partition does: only the server's own bound ends the session
  const started = Date.now();
  const taker = await ownConnection(db().url, t);
  await taker.query('begin');
  await taker.query(`set local lock_timeout = ${ANSWERED_WITHIN_MS}`);
  const taken = await taker.query('select name from webhooks.webhooks where id = $1 for update', [webhook.id])
    .then((r) => r.rows[0]?.name as string, (error: { code?: string }) => `not taken: ${error.code}`);
  await taker.query('rollback');
  t.is(taken, 'Locked', 'the row is released, the given-up change not kept');
  t.log(`released ${Date.now() - started} ms after the API gave the request up`);
  const still = await db().pool.query('select from pg_stat_activity where datname = current_database() and pid = $1', [pid]);
  t.is(still.rowCount, 0, 'the given-up session is gone from the server');
});
