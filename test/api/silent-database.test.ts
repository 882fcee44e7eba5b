// The network path between the API and Postgres goes silent (a partition, a NAT that
// dropped the connection: nothing closes it, nothing comes back): a request on a
// connection opened before is answered with DATABASE_UNAVAILABLE once the database
// has said nothing for longer than any statement of a request may run, and the
// requests after it work over new connections. Before, the request waited until TCP
// gave up (many minutes), and the pool put its connection back for the next one to
// wait behind.
import test from 'ava';
import { startTestApi } from '../helpers/api.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { freezableProxy } from '../helpers/proxy.ts';
import { within } from '../helpers/until.ts';
import { apiDatabaseReadTimeoutMs } from '../../api/limits.ts';

const db = useTestDatabase(test);

const CREATE = `mutation($name: String!) {
  createWebhook(input: { name: $name, url: "https://receiver.example.com/bpd", fields: ["first_name"], actions: [CONTACT_CREATED] }) {
    result { webhook { name } }
  }
}`;

// short, so that the test is: the read timeout is this plus its margin
const STATEMENT_TIMEOUT_MS = 1_000;

test('a request on a connection whose path went silent: DATABASE_UNAVAILABLE within the read timeout, and the next requests work over new connections', async (t) => {
  const proxy = await freezableProxy(new URL(db().url));
  // one connection: the request after the silent one gets it back, or a new one
  const api = await startTestApi(proxy.url, { poolSize: 1, limits: { statementTimeoutMs: STATEMENT_TIMEOUT_MS } });
  // (the proxy first: a connection left hanging would hold the pool's end)
  t.teardown(async () => {
    await proxy.close();
    await api.stop();
  });
  const company = await factories(db().pool).company();
  const token = await api.token(company.id);
  const before = await api.gql(token, CREATE, { name: 'Before' });
  t.is(before.errors, undefined, 'answered while the path carries bytes');

  proxy.freeze();
  const bound = apiDatabaseReadTimeoutMs({ statementTimeoutMs: STATEMENT_TIMEOUT_MS }) + 5_000;
  const silent = await within(bound, api.gql(token, CREATE, { name: 'Silent' }));
  t.not(silent, 'still waiting', `answered within ${bound} ms`);
  if (silent === 'still waiting') return;
  t.is(silent.status, 200);
  t.is(silent.errors?.[0]?.extensions?.code, 'DATABASE_UNAVAILABLE', JSON.stringify(silent.errors));

  for (const name of ['After', 'After again']) {
    const after = await within(bound, api.gql(token, CREATE, { name }));
    t.not(after, 'still waiting', `${name}: answered, not queued behind the silent connection`);
    if (after === 'still waiting') return;
    t.is(after.errors, undefined, `${name}: ${JSON.stringify(after.errors)}`);
  }
  const names = (await db().pool.query<{ name: string }>(
    'select name from webhooks.webhooks where company_id = $1 order by name', [company.id])).rows.map((r) => r.name);
  t.deepEqual(names, ['After', 'After again', 'Before'], 'the silent one kept nothing');
});
