// Each company's share of the API (api/company-share.ts): a company's slow requests,
// here held by a lock a DBA keeps, take at most its share of the pool, so another
// company is answered meanwhile; past its share a company's requests wait their turn,
// and past the queue or the wait they are refused with a named error.
import { connect } from 'node:net';
import test from 'ava';
import { DEFAULT_LIMITS } from '../../api/limits.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { scrape } from '../helpers/prometheus.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);

const RENAME = 'mutation($id: BigInt!, $name: String!) { updateWebhook(input: { id: $id, name: $name }) { result { name } } }';
const COUNT = '{ allWebhooks { totalCount } }';

async function companyWithWebhook(api: TestApi) {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  return { hook, token: await api.token(company.id) };
}

/** A DBA's transaction that holds the webhook's row: every update of it waits. */
async function holdRow(webhookId: string) {
  const dba = await db().pool.connect();
  await dba.query('begin');
  await dba.query('select 1 from webhooks.webhooks where id = $1 for update', [webhookId]);
  return {
    async release() {
      await dba.query('commit');
      dba.release();
    },
  };
}

/** Backends of this database waiting for a lock now. */
async function lockWaiters(): Promise<number> {
  const { rows } = await db().pool.query(
    `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`);
  return rows[0].n;
}

/** Until `n` backends wait for a lock (polled: Postgres sends no signal). */
async function untilLockWaiters(n: number): Promise<void> {
  while ((await lockWaiters()) < n) await new Promise((resolve) => setTimeout(resolve, 10));
}

/** The API's requests waiting for their company's turn, once there are `n`. */
async function waitingForTurn(api: TestApi, n: number): Promise<void> {
  while ((await scrape(api.api.url)).get('bpd_webhooks_api_requests_waiting') !== n) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test.serial('a company whose requests wait on a lock holds its share of the pool, and another company is answered meanwhile', async (t) => {
  // the pool (4) is larger than a company's share (2): without the share, a
  // company's six requests took all four connections, and the other company's
  // request waited until they timed out
  const api = await startTestApi(db().url, { poolSize: 4 });
  try {
    const a = await companyWithWebhook(api);
    const b = await companyWithWebhook(api);
    const lock = await holdRow(a.hook.id);
    const answered: string[] = [];
    const renames = Array.from({ length: 6 }, (_, i) =>
      api.gql(a.token, RENAME, { id: a.hook.id, name: `Renamed ${i}` }).finally(() => answered.push(`a${i}`)));
    await untilLockWaiters(DEFAULT_LIMITS.companyMaxInFlight);
    await waitingForTurn(api, 4);
    const other = await api.gql(b.token, COUNT);
    answered.push('b');
    t.deepEqual(other.data, { allWebhooks: { totalCount: 1 } });
    t.deepEqual(answered, ['b'], 'the other company is answered while the first one\'s requests still wait');
    t.is(await lockWaiters(), DEFAULT_LIMITS.companyMaxInFlight, 'the first company holds no more backends than its share');
    await lock.release();
    const results = await Promise.all(renames);
    t.deepEqual(results.map((r) => [r.status, r.errors]), Array(6).fill([200, undefined]), 'every one waited its turn and ran');
    const { rows } = await db().pool.query('select name from webhooks.webhooks where id = $1', [a.hook.id]);
    t.regex(rows[0].name, /^Renamed \d$/);
  } finally {
    await api.stop();
  }
});

test.serial('one request holds one connection, however many fields it asks at once, and another company is answered meanwhile', async (t) => {
  // each top-level field of a query is its own statement, and they ran at once, each
  // on a connection of its own: one request of six fields took all four of the pool
  const api = await startTestApi(db().url, { poolSize: 4 });
  const dba = await db().pool.connect();
  try {
    const a = await companyWithWebhook(api);
    const b = await companyWithWebhook(api);
    // a DBA's lock that every read of the deliveries waits for (the webhooks are not behind it)
    await dba.query('begin');
    await dba.query('lock table webhooks.delivery_history in access exclusive mode');
    const answered: string[] = [];
    const wide = api.gql(a.token, `{ ${Array.from({ length: 6 }, (_, i) => `d${i}: allDeliveries(first: 1, offset: ${i}) { nodes { id } }`).join(' ')} }`)
      .finally(() => answered.push('a'));
    await untilLockWaiters(1);
    const other = await api.gql(b.token, COUNT);
    answered.push('b');
    t.deepEqual(other.data, { allWebhooks: { totalCount: 1 } });
    t.deepEqual(answered, ['b'], 'the other company is answered while the wide request waits');
    t.is(await lockWaiters(), 1, 'the wide request holds one backend');
    await dba.query('commit');
    const result = await wide;
    t.is(result.errors, undefined);
    t.deepEqual(Object.keys(result.data), ['d0', 'd1', 'd2', 'd3', 'd4', 'd5']);
  } finally {
    await dba.query('rollback').catch(() => {});
    dba.release();
    await api.stop();
  }
});

test.serial('a client that leaves while its request runs leaves the turn taken until the request ends', async (t) => {
  // the turn went back when the client went away, while its SQL went on: a company
  // whose clients left each request once it ran held as many backends as it sent
  const api = await startTestApi(db().url, { poolSize: 4 });
  const dba = await db().pool.connect();
  try {
    const a = await companyWithWebhook(api);
    const b = await companyWithWebhook(api);
    await dba.query('begin');
    await dba.query('lock table webhooks.delivery_history in access exclusive mode');
    for (let i = 0; i < DEFAULT_LIMITS.companyMaxInFlight + 1; i++) {
      const leave = new AbortController();
      const sent = fetch(`${api.api.url}/graphql`, {
        method: 'POST',
        signal: leave.signal,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${a.token}` },
        body: JSON.stringify({ query: '{ allDeliveries(first: 1) { nodes { id } } }' }),
      }).catch(() => undefined);
      // it waits on the lock, or for its company's turn: then its client leaves
      await until(`request ${i} waits`, async () =>
        (await lockWaiters()) > i || (await scrape(api.api.url)).get('bpd_webhooks_api_requests_waiting') === 1);
      leave.abort();
      await sent;
    }
    t.is(await lockWaiters(), DEFAULT_LIMITS.companyMaxInFlight, 'the company holds no more backends than its share');
    const other = await api.gql(b.token, COUNT);
    t.deepEqual(other.data, { allWebhooks: { totalCount: 1 } });
    await dba.query('commit');
    // the turns come back as the requests end
    const again = await api.gql(a.token, COUNT);
    t.deepEqual(again.data, { allWebhooks: { totalCount: 1 } });
  } finally {
    await dba.query('rollback').catch(() => {});
    dba.release();
    await api.stop();
  }
});

test.serial('past its running and waiting share a company\'s request is refused at once with TOO_MANY_REQUESTS', async (t) => {
  const api = await startTestApi(db().url, { limits: { companyMaxInFlight: 1, companyMaxQueued: 2 } });
  try {
    const a = await companyWithWebhook(api);
    const lock = await holdRow(a.hook.id);
    const held = Array.from({ length: 3 }, (_, i) => api.gql(a.token, RENAME, { id: a.hook.id, name: `Held ${i}` }));
    await untilLockWaiters(1);
    await waitingForTurn(api, 2);
    const response = await fetch(`${api.api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${a.token}` },
      body: JSON.stringify({ query: COUNT }),
    });
    t.is(response.status, 429);
    t.is(response.headers.get('retry-after'), '1');
    const body = (await response.json()) as { errors: Array<{ message: string; extensions: Record<string, unknown> }> };
    t.deepEqual(body.errors[0].extensions, { code: 'TOO_MANY_REQUESTS', why: 'queue_full' });
    t.regex(body.errors[0].message, /API_COMPANY_MAX_IN_FLIGHT.*API_COMPANY_MAX_QUEUED/);
    await lock.release();
    t.deepEqual((await Promise.all(held)).map((r) => r.errors), [undefined, undefined, undefined], 'the three before it ran');
  } finally {
    await api.stop();
  }
});

test.serial('a request that waits longer than API_COMPANY_MAX_WAIT_MS for its company\'s turn is refused, and the turn goes on', async (t) => {
  const api = await startTestApi(db().url, { limits: { companyMaxInFlight: 1, companyMaxWaitMs: 100 } });
  try {
    const a = await companyWithWebhook(api);
    const lock = await holdRow(a.hook.id);
    const first = api.gql(a.token, RENAME, { id: a.hook.id, name: 'First' });
    await untilLockWaiters(1);
    const late = await api.gql(a.token, COUNT);
    t.is(late.status, 429);
    t.deepEqual(late.errors?.[0].extensions, { code: 'TOO_MANY_REQUESTS', why: 'waited_too_long' });
    t.regex(late.errors![0].message, /API_COMPANY_MAX_WAIT_MS/);
    await lock.release();
    t.is((await first).errors, undefined);
    // nothing is left waiting or held: the next request runs at once
    t.deepEqual((await api.gql(a.token, COUNT)).data, { allWebhooks: { totalCount: 1 } });
    t.is((await scrape(api.api.url)).get('bpd_webhooks_api_requests_waiting'), 0);
  } finally {
    await api.stop();
  }
});

/** A POST of the query with the token whose client closes its connection as soon as it is sent. */
function sendAndLeave(url: string, token: string, query: string): Promise<void> {
  const { hostname, port } = new URL(url);
  const body = JSON.stringify({ query });
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.end(`POST /graphql HTTP/1.1\r\nhost: ${hostname}\r\nauthorization: Bearer ${token}\r\n` +
        `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, () => {
        socket.destroy();
        resolve();
      });
    });
    socket.on('error', reject);
  });
}

test.serial('a client that goes away while its token is checked or while its request runs gives its turn back', async (t) => {
  const api = await startTestApi(db().url, { limits: { companyMaxInFlight: 1, companyMaxWaitMs: 2_000 } });
  try {
    const a = await companyWithWebhook(api);
    for (let i = 0; i < 40; i++) await sendAndLeave(api.api.url, a.token, COUNT);
    // every turn those took came back: the next request gets one (before the fix, a
    // client gone while its token was checked kept its turn for good: 429 here)
    const next = await api.gql(a.token, COUNT);
    t.is(next.status, 200, JSON.stringify(next.errors));
    t.deepEqual(next.data, { allWebhooks: { totalCount: 1 } });
  } finally {
    await api.stop();
  }
});
