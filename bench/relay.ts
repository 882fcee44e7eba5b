// `npm run bench:relay`: how fast the relay drains a backlog, and how long a change
// takes from commit to the receiver under a steady load. A benchmark, not a test:
// it prints figures and the targets beside them.
//
// Set-up: a fresh embedded Postgres (default durability), the relay as its own
// process (`node relay/main.ts`, as `npm run relay` runs it), and a
// receiver on loopback in this process that answers 204.
//   1. Burn-down: 20,000 pending deliveries, committed at once, to one webhook and
//      then spread over 10 webhooks; deliveries per second until the last arrives.
//   2. Open loop: contacts updated at a fixed rate (500/s for 20 s) by an external
//      source (contact.updated); latency from the commit to the receiver.
// The relay's peak memory is its peak resident set size (VmHWM) over both. It logs
// every settled attempt (level info, the default) to a file, as in production.
//
// Knobs: BENCH_BACKLOG, BENCH_RATE, BENCH_SECONDS, BENCH_PHASES (burn-1,burn-10,open),
// BENCH_RELAY_NODE_FLAGS, BENCH_DEBUG (latency per second), BENCH_SHOW_RELAY_LOG, and
// any RELAY_* setting, passed on to the relay.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startEmbeddedPostgres } from '../tools/embedded-postgres.ts';
import { migrate } from '../tools/migrate.ts';
import { RELAY_NODE_FLAGS } from '../relay/node-flags.ts';
import { now } from './clock.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 20_000);
const RATE = Number(process.env.BENCH_RATE ?? 500);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const WARM_UP_SECONDS = 2;
const PHASES = (process.env.BENCH_PHASES ?? 'burn-1,burn-10,open').split(',');

// --- receiver -----------------------------------------------------------------
let received = 0;
let waitingFor: { count: number; resolve: () => void } | null = null;
const receiptBySeq = new Map<number, number>();
let parseBodies = false;
const receiver = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const at = now();
    received++;
    if (parseBodies) {
      const seq = JSON.parse(Buffer.concat(chunks).toString()).data?.contact?.custom?.seq;
      if (typeof seq === 'number') receiptBySeq.set(seq, at);
    }
    res.writeHead(204).end();
    if (waitingFor && received >= waitingFor.count) {
      waitingFor.resolve();
      waitingFor = null;
    }
  });
});
receiver.keepAliveTimeout = 60_000;
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
const arrivals = (count: number) =>
  received >= count ? Promise.resolve() : new Promise<void>((resolve) => (waitingFor = { count, resolve }));

// --- database -----------------------------------------------------------------
const dataDir = await mkdtemp(join(tmpdir(), 'bpd-bench-relay-'));
const server = await startEmbeddedPostgres({ dataDir });
const url = server.url();
await migrate(url);
const pool = new pg.Pool({ connectionString: url, max: 16 });
pool.on('error', () => {}); // connections end when the server stops at the end

async function one<T = any>(sql: string, params: unknown[] = []): Promise<T> {
  return (await pool.query(sql, params)).rows[0] as T;
}
async function webhook(companyId: string, path: string, actions: string[], fields: string[]): Promise<string> {
  const row = await one(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions) values ($1, $2, $3, $4, $5::webhooks.action[]) returning id`,
    [companyId, `bench ${path}`, `${receiverUrl}${path}`, fields, actions],
  );
  return row.id;
}

// --- relay --------------------------------------------------------------------
let relay: ChildProcess | null = null;
const relayLog = join(dataDir, '..', `bpd-bench-relay-${process.pid}.log`);
function startRelay(): ChildProcess {
  const flags = process.env.BENCH_RELAY_NODE_FLAGS?.split(' ').filter(Boolean) ?? RELAY_NODE_FLAGS;
  const child = spawn(process.execPath, [...flags, `${root}relay/main.ts`], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: url,
      RELAY_ALLOW_NETWORKS: '127.0.0.0/8',
      RELAY_LOG_LEVEL: 'info',
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('RELAY_'))),
    },
    // the relay logs a line per settled attempt (level info, the default) to a file,
    // as it would in production; the last lines are shown at the end
    stdio: ['ignore', openSync(relayLog, 'w'), 'inherit'],
  });
  return child;
}
/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
/** CPU seconds of every postgres process (the server and its backends). */
function postgresCpu(): number {
  const postmaster = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!.trim();
  let total = cpuSeconds(Number(postmaster));
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.split(') ')[1]!.split(' ')[1] === postmaster) total += cpuSeconds(Number(pid));
    } catch {}
  }
  return total;
}
function peakMemoryMb(child: ChildProcess): number {
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

const results: Array<[string, string, string]> = [];

try {
  relay = startRelay();
  // warm up: the relay is listening once a first delivery arrives
  const warm = await one(`insert into crm.companies (name) values ('warm-up') returning id`);
  await webhook(warm.id, '/warm', ['contact.created'], ['first_name']);
  await one(`insert into crm.contacts (company_id, first_name) values ($1, 'warm') returning id`, [warm.id]);
  await arrivals(1);

  // --- 1. burn-down -----------------------------------------------------------
  for (const hooks of [1, 10]) {
    if (!PHASES.includes(`burn-${hooks}`)) continue;
    const company = await one(`insert into crm.companies (name) values ($1) returning id`, [`burn-down ${hooks}`]);
    for (let i = 0; i < hooks; i++) await webhook(company.id, `/burn/${hooks}/${i}`, ['contact.created'], ['first_name', 'email']);
    const before = received;
    const client = await pool.connect();
    await client.query('begin');
    await client.query(
      `insert into crm.contacts (company_id, first_name, email)
       select $1, 'Contact ' || n, 'c' || n || '@example.com' from generate_series(1, $2::int) n`,
      [company.id, BACKLOG / hooks],
    );
    const done = arrivals(before + BACKLOG);
    await client.query('commit');
    const started = now();
    const cpuBefore = cpuSeconds(relay.pid!);
    const pgBefore = postgresCpu();
    client.release();
    await done;
    const seconds = (now() - started) / 1000;
    // all settled too (the last results are written in the moments after arrival)
    for (;;) {
      const left = await one(`select count(*)::int as n from webhooks.deliveries where state <> 'succeeded'`);
      if (left.n === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const settledSeconds = (now() - started) / 1000;
    const relayCpu = cpuSeconds(relay.pid!) - cpuBefore;
    const postgresCpuUsed = postgresCpu() - pgBefore;
    results.push([
      `burn-down: ${BACKLOG.toLocaleString('en')} deliveries to ${hooks} webhook${hooks > 1 ? 's' : ''}`,
      `${Math.round(BACKLOG / seconds).toLocaleString('en')} deliveries/s (all received in ${seconds.toFixed(2)} s, all settled in ${settledSeconds.toFixed(2)} s; CPU per delivery: relay ${((relayCpu / BACKLOG) * 1e6).toFixed(0)} µs, Postgres ${((postgresCpuUsed / BACKLOG) * 1e6).toFixed(0)} µs)`,
      '',
    ]);
    console.log(results.at(-1)!.slice(0, 2).join(': '));
  }

  // --- 2. open loop -------------------------------------------------------------
  if (PHASES.includes('open')) {
  const company = await one(`insert into crm.companies (name) values ('open loop') returning id`);
  await webhook(company.id, '/open', ['contact.updated'], ['first_name', 'custom']);
  const { rows: contacts } = await pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Open ' || n from generate_series(1, 1000) n returning id`,
    [company.id],
  );
  parseBodies = true;
  // The writer stands in for the CRM. Its commits do not wait for the disk here: this
  // machine's fsync (a few ms, more under load) would otherwise cap one writer pool
  // below the target rate. What is measured starts at the commit either way.
  const writers = new pg.Pool({ connectionString: url, max: 16, options: '-c synchronous_commit=off' });
  writers.on('error', () => {});
  // the first WARM_UP seconds at full rate warm the relay's code and connections;
  // they are sent and received but not counted
  const warmUp = RATE * WARM_UP_SECONDS;
  const total = warmUp + RATE * SECONDS;
  const sentAt = new Array<number>(total);
  const committedAt = new Array<number>(total);
  const writes: Promise<unknown>[] = [];
  const before = received;
  const t0 = now();
  let issued = 0;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((now() - t0) / 1000) * RATE));
      while (issued < due) {
        const seq = issued++;
        sentAt[seq] = now();
        writes.push(
          writers
            .query(`update crm.contacts set custom = jsonb_build_object('seq', $1::int) where id = $2`, [seq, contacts[seq % contacts.length].id])
            .then(() => (committedAt[seq] = now())),
        );
      }
      if (issued >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 1);
  });
  await Promise.all(writes);
  await writers.end();
  await arrivals(before + total);
  const offeredRate = total / ((now() - t0) / 1000);

  const percentile = (values: number[], p: number) => values[Math.min(values.length - 1, Math.floor((p / 100) * values.length))]!;
  const fromCommit: number[] = [];
  const fromSend: number[] = [];
  for (let seq = warmUp; seq < total; seq++) {
    const at = receiptBySeq.get(seq);
    if (at === undefined) throw new Error(`update ${seq} never arrived`);
    fromCommit.push(at - committedAt[seq]!);
    fromSend.push(at - sentAt[seq]!);
  }
  if (process.env.BENCH_DEBUG) {
    for (let sec = 0; sec < SECONDS; sec++) {
      const slice = fromCommit.slice(sec * RATE, (sec + 1) * RATE).sort((a, b) => a - b);
      if (slice.length === 0) break;
      console.log(`second ${sec}: p50 ${percentile(slice, 50).toFixed(1)} p99 ${percentile(slice, 99).toFixed(1)} max ${slice.at(-1)!.toFixed(1)}`);
    }
  }
  fromCommit.sort((a, b) => a - b);
  fromSend.sort((a, b) => a - b);
  const p = (values: number[]) => [50, 95, 99].map((q) => percentile(values, q).toFixed(1)).join(' / ');
  results.push([
    `open loop: ${RATE} updates/s for ${SECONDS} s (after ${WARM_UP_SECONDS} s of warm-up), commit → receipt p50 / p95 / p99`,
    `${p(fromCommit)} ms`,
    `p50 ≤ 5 ms, p99 ≤ 30 ms`,
  ]);
  results.push([`  same, from the UPDATE being sent (includes the write itself)`, `${p(fromSend)} ms`, '']);
  results.push([`  rate achieved by the writer`, `${offeredRate.toFixed(0)} updates/s`, '']);
  }
  results.push([`relay peak memory (resident, whole run)`, `${peakMemoryMb(relay).toFixed(0)} MB`, '≤ 150 MB']);

  console.log(`\nbpd-webhooks relay benchmark (${cpus().length} cores, ${cpus()[0]?.model ?? 'cpu'}; Postgres ${(await one('show server_version')).server_version}, default durability)\n`);
  console.log('| measure | result | target |');
  console.log('| --- | --- | --- |');
  for (const [what, result, target] of results) console.log(`| ${what} | ${result} | ${target} |`);
} finally {
  if (relay && relay.exitCode === null) {
    const exited = once(relay, 'exit');
    relay.kill('SIGTERM');
    await exited;
  }
  await pool.end();
  receiver.closeAllConnections();
  receiver.close();
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
  const lines = readFileSync(relayLog, 'utf8').split('\n').filter((line) => line && !line.includes('"msg":"settled"'));
  if (process.env.BENCH_SHOW_RELAY_LOG) console.log(lines.join('\n'));
  const warnings = lines.filter((line) => /"level":[4-6]0/.test(line));
  if (warnings.length) console.log(`relay warnings/errors:\n${warnings.slice(0, 10).join('\n')}`);
  rmSync(relayLog, { force: true });
}
