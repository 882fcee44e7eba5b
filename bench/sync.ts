// `npm run bench:sync [-- --contacts N]`: what backfill and ordering cost (#13,
// docs/backfill.md), on a throwaway embedded Postgres, one relay process and a
// loopback receiver in this process.
//   live latency   one contact update every 50 ms to a live webhook for 15 s: p50 and
//                  p99 from the change's timestamp to its arrival, alone and while a
//                  backfill of N contacts (default 100,000) runs to another webhook
//   ordered        1,000 contacts changed at once, five times (5,000 deliveries):
//                  deliveries/s to an ordered webhook beside the same to a plain one
// Figures depend on the machine: compare the rows of one run, not runs. Progress goes
// to stderr every few seconds; the tables to stdout at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { RELAY_NODE_FLAGS } from '../relay/node-flags.ts';
import { startEmbeddedPostgres } from '../tools/embedded-postgres.ts';
import { migrate } from '../tools/migrate.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const { values } = parseArgs({ options: { contacts: { type: 'string', default: '100000' } } });
const BACKFILL_CONTACTS = Number(values.contacts);

interface Arrival { path: string; at: number; body: any }
const arrivals: Arrival[] = [];
const server = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (c: Buffer) => chunks.push(c));
  request.on('end', () => {
    arrivals.push({ path: request.url ?? '', at: Date.now(), body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
    response.writeHead(204).end();
  });
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const port = (server.address() as { port: number }).port;
const url = (path: string) => `http://127.0.0.1:${port}${path}`;

const dataDir = await mkdtemp(join(tmpdir(), 'bpd-bench-sync-'));
const postgres = await startEmbeddedPostgres({ dataDir, fast: true });
const databaseUrl = postgres.url();
await migrate(databaseUrl);
const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
// a connection the server ends as it stops at the end of the run: expected then
pool.on('error', () => {});

function relay(): ChildProcess {
  return spawn(process.execPath, [...RELAY_NODE_FLAGS, `${root}relay/main.ts`], {
    cwd: root,
    env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl, RELAY_ALLOW_NETWORKS: '127.0.0.0/8', RELAY_LOG_LEVEL: 'silent', RELAY_DB_ROLE: '' },
    stdio: 'inherit',
  });
}

async function one<T = any>(sql: string, params: unknown[] = []): Promise<T> {
  return (await pool.query(sql, params)).rows[0];
}
async function until(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('bench: gave up waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}
const benchStarted = Date.now();
/** What the run is doing now, said on stderr every PROGRESS_EVERY_MS. */
let doing = (): string => 'starting';
const PROGRESS_EVERY_MS = 5000;
const say = (line: string) => console.error(`bench:sync [${((Date.now() - benchStarted) / 1000).toFixed(0)}s] ${line}`);
const progressTimer = setInterval(() => say(doing()), PROGRESS_EVERY_MS);
progressTimer.unref();
const arrived = (path: string) => arrivals.filter((a) => a.path === path).length;

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

const company = (await one('insert into crm.companies (name) values ($1) returning id', ['Bench'])).id;
async function webhook(path: string, actions: string[], ordered = false): Promise<string> {
  const { id } = await one(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions, ordered)
     values ($1, $2, $3, '{first_name,city}', $4::webhooks.action[], $5) returning id`,
    [company, path, url(path), actions, ordered]);
  return id;
}

/** Latency of live updates written every 50 ms for 15 s (one contact each). */
async function liveLatency(label: string): Promise<{ label: string; p50: number; p99: number; n: number }> {
  const before = arrivals.filter((a) => a.path === '/live').length;
  const stop = Date.now() + 15_000;
  let written = 0;
  const backfill = doing;
  doing = () => `${label}: ${written} written, ${arrived('/live') - before} arrived${label.includes('during') ? `; ${backfill()}` : ''}`;
  while (Date.now() < stop) {
    await pool.query(`update crm.contacts set city = 'live ' || $2 where id = $1`, [liveContact, written++]);
    await new Promise((r) => setTimeout(r, 50));
  }
  await until(() => arrivals.filter((a) => a.path === '/live').length >= before + written, 120_000);
  doing = backfill;
  const latencies = arrivals.filter((a) => a.path === '/live').slice(before)
    .map((a) => a.at - Date.parse(a.body.timestamp)).sort((x, y) => x - y);
  return { label, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), n: latencies.length };
}

const liveHook = await webhook('/live', ['contact.updated']);
const liveContact = (await one(`insert into crm.contacts (company_id, first_name) values ($1, 'live') returning id`, [company])).id;
const sync = await webhook('/sync', ['contact.deleted']);
say(`writing ${BACKFILL_CONTACTS.toLocaleString('en-US')} contacts to backfill`);
doing = () => `writing ${BACKFILL_CONTACTS.toLocaleString('en-US')} contacts`;
await pool.query(`alter table crm.contacts disable trigger user`);
await pool.query(
  `insert into crm.contacts (company_id, first_name, city) select $1, 'C' || i, 'City ' || i from generate_series(1, $2) i`,
  [company, BACKFILL_CONTACTS]);
await pool.query(`alter table crm.contacts enable trigger user`);
await pool.query('analyze');

const relayProcess = relay();
// warm up: the relay is up and has sent one live update before anything is measured
await pool.query(`update crm.contacts set city = 'warm' where id = $1`, [liveContact]);
await until(() => arrivals.some((a) => a.path === '/live'), 60_000);
const rows: string[] = [];
const alone = await liveLatency('live updates alone');
const started = Date.now();
const backfillId = (await one('select webhooks.backfill($1) as id', [sync])).id;
doing = () => `backfill: ${arrived('/sync').toLocaleString('en-US')} of ${BACKFILL_CONTACTS.toLocaleString('en-US')} snapshots arrived`;
const during = await liveLatency(`live updates during a backfill of ${BACKFILL_CONTACTS.toLocaleString('en-US')} contacts`);
await until(async () => (await one('select state from webhooks.backfills where id = $1', [backfillId])).state === 'done', 30 * 60_000);
await until(() => arrivals.filter((a) => a.path === '/sync').length >= BACKFILL_CONTACTS, 30 * 60_000);
const backfillSeconds = (Date.now() - started) / 1000;
rows.push('| measurement | p50 | p99 | n |', '| --- | --- | --- | --- |');
for (const r of [alone, during]) rows.push(`| ${r.label} | ${r.p50} ms | ${r.p99} ms | ${r.n} |`);
rows.push('', `backfill of ${BACKFILL_CONTACTS.toLocaleString('en-US')} contacts: all sent in ${backfillSeconds.toFixed(1)} s (${Math.round(BACKFILL_CONTACTS / backfillSeconds)} snapshots/s)`, '');

// ordered: 1,000 contacts changed at once, five times
const orderedRows: string[] = ['| webhook | deliveries | seconds | deliveries/s |', '| --- | --- | --- | --- |'];
for (const ordered of [false, true]) {
  const path = ordered ? '/ordered' : '/plain';
  const hook = await webhook(path, ['contact.updated'], ordered);
  const ids = (await pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'O' || i from generate_series(1, 1000) i returning id`, [company])).rows.map((r) => r.id);
  doing = () => `${ordered ? 'ordered' : 'not ordered'}: ${arrived(path).toLocaleString('en-US')} of 5,000 arrived`;
  const t0 = Date.now();
  for (let round = 1; round <= 5; round++) {
    await pool.query(`update crm.contacts set city = $2 where id = any ($1::bigint[])`, [ids, `round ${round}`]);
  }
  await until(() => arrivals.filter((a) => a.path === path).length >= 5000, 10 * 60_000);
  const seconds = (Date.now() - t0) / 1000;
  orderedRows.push(`| ${ordered ? 'ordered' : 'not ordered'} | 5,000 (1,000 contacts × 5) | ${seconds.toFixed(2)} | ${Math.round(5000 / seconds)} |`);
  if (ordered) {
    // check the order while here: each contact's rounds arrive 1..5
    const seen = new Map<number, number>();
    let outOfOrder = 0;
    for (const a of arrivals.filter((x) => x.path === path)) {
      const round = Number(String(a.body.data.contact.city).split(' ')[1]);
      if ((seen.get(a.body.data.contact.id) ?? 0) >= round) outOfOrder++;
      seen.set(a.body.data.contact.id, round);
    }
    orderedRows.push('', `out of order: ${outOfOrder}`);
  }
  await pool.query('update webhooks.webhooks set enabled = false, disabled_at = now() where id = $1', [hook]);
}
void liveHook;

clearInterval(progressTimer);
console.log(['', ...rows, ...orderedRows, ''].join('\n'));
relayProcess.kill('SIGTERM');
await once(relayProcess, 'exit');
await pool.end();
await postgres.stop();
await rm(dataDir, { recursive: true, force: true });
server.close();
