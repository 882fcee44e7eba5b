// `npm run backfill -- --webhook N`: starts a backfill, drives it and shows its
// progress until every snapshot is sent; --cancel stops one.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { lines } from '../helpers/lines.ts';
import { relayScene, testRelay } from '../helpers/relay.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);

function backfillCli(databaseUrl: string, ...args: string[]) {
  return run(process.execPath, [`${root}tools/backfill.ts`, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl },
    timeout: 120_000,
  });
}

test('--webhook N: progress lines until every snapshot is sent; the receiver has each contact once', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set webhooks.backfill_defer = '10 milliseconds'`);
  await database.pool.query(`alter database ${database.name} set webhooks.backfill_batch = '100'`);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], url: receiver.url('/sync') });
  receiver.route('/sync', { secret: hook.secret });
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'C' || i from generate_series(1, 300) i`, [company.id]);
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  const { stdout } = await backfillCli(database.url, '--webhook', hook.id);
  const lines = stdout.trim().split('\n');
  t.regex(lines[0]!, /^backfill \d+ of webhook \d+ started$/);
  t.true(lines.includes('100% 300 / 300 sent, 300 queued'), stdout);
  t.regex(lines.at(-1)!, /^backfill \d+ done: 300 snapshots sent/);
  const ids = receiver.received('/sync').map((r) => JSON.parse(r.body).data.contact.id);
  t.is(new Set(ids).size, 300);
});

test('refusals are said by name; --cancel stops a running backfill', async (t) => {
  const { database, f, company } = await relayScene(t);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  const unknown = await backfillCli(database.url, '--webhook', '99999999').catch((e) => e);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /webhook 99999999 not found \(webhook_not_found\)/);
  const bad = await backfillCli(database.url, '--webhook', '1; drop table x').catch((e) => e);
  t.is(bad.code, 2);

  const { rows: [{ id }] } = await database.pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const { stdout } = await backfillCli(database.url, '--cancel', id);
  t.is(stdout.trim(), `backfill ${id} cancelled after 0 snapshots`);
  const { rows: [row] } = await database.pool.query('select state from webhooks.backfills where id = $1', [id]);
  t.is(row.state, 'cancelled');
});

test('Ctrl-C stops following and leaves the backfill running: the command\'s own SIGINT handler, no other module\'s', async (t) => {
  // no relay: the snapshots stay unsent, and the command follows them until stopped
  const { database, f, company } = await relayScene(t);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  await f.contact(company.id, { first_name: 'Unsent' });
  const child = spawn(process.execPath, [`${root}tools/backfill.ts`, '--webhook', hook.id], {
    cwd: root,
    env: { PATH: process.env.PATH, DATABASE_URL: database.url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const out = lines(child.stdout!);
  lines(child.stderr!);
  const exited = once(child, 'close');
  const backfill = (await out.next(/^backfill (\d+) of webhook \d+ started$/, 60_000, 0))[1]!;
  child.kill('SIGINT');
  const [code, signal] = await exited;
  t.deepEqual([code, signal], [0, null]);
  t.true(out.seen.includes(
    `stopped following: backfill ${backfill} goes on in the relay (npm run backfill -- --cancel ${backfill} stops it)`), out.seen.join('\n'));
  // not cancelled: its steps (the command's or the relays') and its unsent snapshots go on
  const { rows: [row] } = await database.pool.query(
    'select b.state, webhooks.backfills_unfinished(b)::int as unfinished from webhooks.backfills b where b.id = $1', [backfill]);
  t.not(row.state, 'cancelled');
  t.true(row.state === 'running' || row.unfinished > 0, JSON.stringify(row));
});

test('its database connection ended while it follows (a restart, a DBA\'s pg_terminate_backend): it goes on over a new one and sees the backfill done', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set webhooks.backfill_defer = '10 milliseconds'`);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], url: receiver.url('/sync') });
  receiver.route('/sync', { secret: hook.secret });
  await database.pool.query(`insert into crm.contacts (company_id, first_name) select $1, 'C' || i from generate_series(1, 20) i`, [company.id]);
  // no relay yet: the command follows snapshots that wait
  const child = spawn(process.execPath, [`${root}tools/backfill.ts`, '--webhook', hook.id], {
    cwd: root,
    env: { PATH: process.env.PATH, DATABASE_URL: database.url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  const out = lines(child.stdout!);
  const err = lines(child.stderr!);
  // ('close': its output read to the end, which 'exit' may come before)
  const exited = once(child, 'close');
  await out.next(/^backfill \d+ of webhook \d+ started$/, 60_000, 0);

  const { rows: ended } = await database.pool.query(
    `select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name = 'bpd-webhooks backfill'`, [database.name]);
  t.is(ended.length, 1);
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  const [code] = await exited;
  t.is(code, 0, [...out.seen, ...err.seen].join('\n'));
  t.regex(out.seen.at(-1)!, /^backfill \d+ done: 20 snapshots sent/);
  t.false(err.seen.some((line) => /^\s+at /.test(line)), `no stack trace: ${err.seen.join('\n')}`);
});
