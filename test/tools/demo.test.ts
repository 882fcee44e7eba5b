// `npm run demo`'s parts against a database of their own: the seeding makes the
// company, its users, statuses, contacts and three webhooks posting to the demo
// receiver (and a second run makes nothing twice); with a relay running, the receiver
// gets every delivery of the seeding and of the trickle, each signature verified.
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { startDemoReceiver } from '../../tools/demo/receiver.ts';
import { DEMO_ACTOR, DEMO_CONTACT_COUNT, receiverSecrets, seedDemo } from '../../tools/demo/seed.ts';
import { trickle } from '../../tools/demo/trickle.ts';
import { lines } from '../helpers/lines.ts';
import { relayTestDatabase, testRelay, waitForRows } from '../helpers/relay.ts';

test('the demo seeds a company with users, statuses, contacts and three webhooks; a second run makes nothing twice', async (t) => {
  const database = await relayTestDatabase();
  t.teardown(() => database.drop());
  const receiver = await startDemoReceiver(0);
  t.teardown(() => receiver.close());
  const steps: string[] = [];
  const demo = await seedDemo(database.pool, receiver.url, (step, done, total) => {
    if (done === total) steps.push(`${step} ${total}`);
  });
  t.true(demo.created);
  t.deepEqual(steps, ['users 3', 'statuses 4', 'webhooks 3', `contacts ${DEMO_CONTACT_COUNT}`]);

  const one = async (sql: string) => (await database.pool.query(sql, [demo.companyId])).rows;
  t.deepEqual(await one('select name from crm.companies where id = $1'), [{ name: 'Demo Realty' }]);
  t.deepEqual((await one('select name from crm.users where company_id = $1 order by id')).map((r) => r.name),
    ['Jane Doe', 'Omar Haddad', 'Li Wei']);
  t.true((await one('select name from crm.statuses where company_id = $1')).some((r) => r.name === 'Thank You Note'));
  t.is((await one('select count(*)::int as n from crm.contacts where company_id = $1'))[0].n, DEMO_CONTACT_COUNT);
  const webhooks = await one(`select w.name, w.url, w.actions::text[] as actions, s.name as status, u.name as user
    from webhooks.webhooks w left join crm.statuses s on s.id = w.status_id left join crm.users u on u.id = w.user_id
    where w.company_id = $1 order by w.id`);
  t.deepEqual(webhooks, [
    { name: 'Handwritten thank-you notes', url: `${receiver.url}/thank-you-notes`, actions: ['contact.status_added'], status: 'Thank You Note', user: null },
    { name: 'Contacts spreadsheet', url: `${receiver.url}/spreadsheet`, actions: ['contact.created', 'contact.saved', 'contact.updated'], status: null, user: null },
    { name: 'Jane’s new contacts to her task list', url: `${receiver.url}/tasks`, actions: ['contact.user_assigned'], status: null, user: 'Jane Doe' },
  ]);
  t.regex(receiver.url, /^http:\/\/127\.0\.0\.1:\d+$/, 'loopback only');
  // every seeded contact fired the spreadsheet webhook
  t.is((await one(`select count(*)::int as n from webhooks.deliveries where company_id = $1 and action = 'contact.created'`))[0].n, DEMO_CONTACT_COUNT);
  t.deepEqual(await one(`select distinct actor, action from webhooks.audit_log where company_id = $1`),
    [{ actor: DEMO_ACTOR, action: 'webhook.created' }]);
  t.deepEqual([...(await receiverSecrets(database.pool, demo.companyId, receiver.url)).keys()].sort(),
    ['/spreadsheet', '/tasks', '/thank-you-notes']);

  // again, with the receiver elsewhere: the same company, its webhooks pointed there
  const again = await seedDemo(database.pool, 'http://127.0.0.1:1');
  t.false(again.created);
  t.is(again.companyId, demo.companyId);
  t.is((await one('select count(*)::int as n from crm.contacts where company_id = $1'))[0].n, DEMO_CONTACT_COUNT);
  t.deepEqual((await one('select url from webhooks.webhooks where company_id = $1 order by id')).map((r) => r.url),
    ['http://127.0.0.1:1/thank-you-notes', 'http://127.0.0.1:1/spreadsheet', 'http://127.0.0.1:1/tasks']);
  t.is((await database.pool.query('select count(*)::int as n from crm.companies where name = $1', ['Demo Realty'])).rows[0].n, 1);
});

test('with a relay running, the demo receiver gets every delivery of the seeding and the trickle, signatures verified', async (t) => {
  const database = await relayTestDatabase();
  t.teardown(() => database.drop());
  const receiver = await startDemoReceiver(0);
  t.teardown(() => receiver.close());
  const demo = await seedDemo(database.pool, receiver.url);
  for (const [path, secrets] of await receiverSecrets(database.pool, demo.companyId, receiver.url)) receiver.setSecrets(path, secrets);
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  const made = await trickle(database.pool, demo, { count: 10, everyMs: 0 });
  t.is(made, 10);
  const deliveries = await waitForRows(database.pool,
    `select d.state, w.url from webhooks.deliveries d join webhooks.webhooks w on w.id = d.webhook_id where d.company_id = $1`,
    [demo.companyId], (rows) => rows.length > 0 && rows.every((r) => r.state === 'succeeded'));
  // the trickle reached all three webhooks
  t.deepEqual([...new Set(deliveries.map((d) => new URL(d.url).pathname))].sort(), ['/spreadsheet', '/tasks', '/thank-you-notes']);
  t.true(receiver.received.length >= deliveries.length);
  t.true(receiver.received.every((r) => r.verified), JSON.stringify(receiver.received.filter((r) => !r.verified)));

  // the receiver's page shows them, as text
  const html = await (await fetch(`${receiver.url}/`)).text();
  t.regex(html, /contact\.status_added/);
  t.regex(html, /verified/);
});

test('the trickle stops when told to', async (t) => {
  const database = await relayTestDatabase();
  t.teardown(() => database.drop());
  const demo = await seedDemo(database.pool, 'http://127.0.0.1:1');
  const stop = new AbortController();
  const made = trickle(database.pool, demo, { count: 1000, everyMs: 60_000, signal: stop.signal, log: () => stop.abort() });
  t.is(await made, 1);
});

test('npm run demo lives on when the server ends its connections (pg_terminate_backend): it goes on trickling, its receiver answers', async (t) => {
  const database = await relayTestDatabase();
  t.teardown(() => database.drop());
  // an API that answers as one that is up (GET /graphql: 405), so that the demo starts none
  const api = createServer((_, response) => response.writeHead(405).end());
  await once(api.listen(0, '127.0.0.1'), 'listening');
  t.teardown(() => api.close());
  const demo = spawn(process.execPath, [fileURLToPath(new URL('../../tools/demo.ts', import.meta.url))], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: database.url,
      PORT: String((api.address() as AddressInfo).port),
      DEMO_RECEIVER_PORT: '0',
      DEMO_CHANGES: '1000',
      DEMO_EVERY_MS: '200',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => demo.kill('SIGKILL'));
  const out = lines(demo.stdout!);
  const err = lines(demo.stderr!);
  let exited: number | null | undefined;
  demo.once('exit', (code) => (exited = code));
  const said = () => `stdout:\n${out.seen.join('\n')}\nstderr:\n${err.seen.join('\n')}`;

  await out.next(/^change 2\/1000/, 120_000, 0);
  const receiverUrl = out.seen.join('\n').match(/Receiver:\s+(\S+)/)![1]!;
  for (let round = 0; round < 3; round++) {
    const { rows } = await database.pool.query(`select pg_terminate_backend(pid) as ended from pg_stat_activity
      where datname = current_database() and application_name = 'bpd-webhooks demo'`);
    t.true(rows.length > 0 && rows.every((row) => row.ended), said());
    const [, made] = await out.next(/^change (\d+)\/1000/, 20_000).catch((error: Error) => {
      throw new Error(`${error.message}\n${said()}`);
    });
    t.true(Number(made) > 2);
  }
  t.is(exited, undefined, said());
  t.is((await fetch(receiverUrl)).status, 200);
});
