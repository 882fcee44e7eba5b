// `node bench/relay-allocations.ts`: what the relay's JavaScript allocates per delivery,
// and where. Allocation is counted, not timed, so the figures hold on a loaded machine.
//
// Set-up: a fresh embedded Postgres, a receiver on loopback in this process that answers
// 204, and the relay (relay/loop.ts, as relay/main.ts runs it, with RELAY_NODE_FLAGS and
// a log line per settled attempt, level info, written to /dev/null) in a child process.
// A warm-up backlog is drained first (connections open, statements prepared, code
// compiled); then a backlog of --count contacts' contact.created deliveries to one
// webhook, committed at once, is drained while the child counts:
//   - bytes allocated on the JavaScript heap per delivery: the heap's growth between
//     garbage collections, summed (v8.GCProfiler's heap sizes before and after each),
//   - garbage collections per delivery, by kind, and their time,
//   - the allocation sites: V8's sampling heap profiler (objects collected since
//     included), each sample's bytes given to the frame that allocated it (a leaf) and
//     to the nearest frame of the relay's own code above it,
//   - with --cpu, instead of the heap profile: a CPU profile, self time by function
//     and by area (the relay's code, pg, undici, pino, Node's internals, GC).
// Knobs: --count N (default 20000), --warm N (2000), --cpu, --top N (15), --callers
// 'name file' (the call paths that end in an allocating frame whose name starts so); any RELAY_*
// setting is passed on (RELAY_MAX_IN_FLIGHT=4 for a CPU profile at low concurrency).
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { Session } from 'node:inspector/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GCProfiler } from 'node:v8';
import pg from 'pg';
import { RELAY_NODE_FLAGS } from '../relay/node-flags.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const { values: options } = parseArgs({
  options: {
    count: { type: 'string', default: '20000' },
    warm: { type: 'string', default: '2000' },
    cpu: { type: 'boolean', default: false },
    top: { type: 'string', default: '15' },
    callers: { type: 'string' },
    child: { type: 'boolean', default: false },
  },
});

/** Parent → child: drain until this many are settled, then answer. */
type Ask = { type: 'drained'; settled: number } | { type: 'measure' } | { type: 'report'; settled: number; deliveries: number };
type Answer = { type: 'drained' } | { type: 'measuring' } | { type: 'report'; lines: string[] };

if (options.child) await child();
else await parent();

// --- the relay's process ---------------------------------------------------------
async function child(): Promise<void> {
  const { Relay } = await import('../relay/loop.ts');
  const { relaySettings } = await import('../relay/settings.ts');
  const relay = new Relay(relaySettings());
  await relay.start();
  const inspector = new Session();
  inspector.connect();
  let gc: GCProfiler | null = null;
  let usedAtStart = 0;
  let cpuAtStart = process.cpuUsage();
  const send = (answer: Answer) => process.send!(answer);
  /** resolves once the relay has settled `count` results in all */
  const settled = (count: number) =>
    new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (relay.settleStats.settled < count) return;
        clearInterval(timer);
        resolve();
      }, 20);
    });
  process.on('message', async (ask: Ask) => {
    if (ask.type === 'drained') {
      await settled(ask.settled);
      send({ type: 'drained' });
    } else if (ask.type === 'measure') {
      if (options.cpu) {
        await inspector.post('Profiler.enable');
        await inspector.post('Profiler.setSamplingInterval', { interval: 1000 });
        await inspector.post('Profiler.start');
      } else {
        await inspector.post('HeapProfiler.startSampling', {
          samplingInterval: 512,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true,
        });
      }
      gc = new GCProfiler();
      gc.start();
      usedAtStart = (await import('node:v8')).getHeapStatistics().used_heap_size;
      cpuAtStart = process.cpuUsage();
      send({ type: 'measuring' });
    } else {
      await settled(ask.settled);
      const cpu = process.cpuUsage(cpuAtStart);
      const usedAtEnd = (await import('node:v8')).getHeapStatistics().used_heap_size;
      const gcs = gc!.stop()!;
      const lines = heapLines(gcs, usedAtStart, usedAtEnd, ask.deliveries, cpu);
      if (options.cpu) {
        const { profile } = await inspector.post('Profiler.stop');
        lines.push(...cpuLines(profile as CpuProfile, ask.deliveries));
      } else {
        const { profile } = await inspector.post('HeapProfiler.stopSampling');
        lines.push(...allocationLines(profile, ask.deliveries));
      }
      send({ type: 'report', lines });
      await relay.stop();
      process.exit(0);
    }
  });
}

type GcStats = NonNullable<ReturnType<GCProfiler['stop']>>;

function heapLines(gcs: GcStats, usedAtStart: number, usedAtEnd: number, deliveries: number, cpu: NodeJS.CpuUsage): string[] {
  let allocated = 0;
  let after = usedAtStart;
  const byKind = new Map<string, { count: number; costUs: number }>();
  for (const event of gcs.statistics) {
    allocated += event.beforeGC.heapStatistics.usedHeapSize - after;
    after = event.afterGC.heapStatistics.usedHeapSize;
    const kind = byKind.get(String(event.gcType)) ?? { count: 0, costUs: 0 };
    kind.count++;
    kind.costUs += event.cost;
    byKind.set(String(event.gcType), kind);
  }
  allocated += usedAtEnd - after;
  const per = (n: number) => n / deliveries;
  const lines = [
    `deliveries measured: ${deliveries}`,
    `bytes allocated per delivery (JavaScript heap): ${Math.round(per(allocated))}`,
    `relay CPU per delivery (timed, for orientation): ${Math.round(per(cpu.user + cpu.system))} µs (user ${Math.round(per(cpu.user))}, system ${Math.round(per(cpu.system))})`,
  ];
  for (const [kind, { count, costUs }] of byKind) {
    lines.push(`GC ${kind}: ${(per(count) * 1000).toFixed(2)} per 1,000 deliveries, ${per(costUs).toFixed(1)} µs a delivery`);
  }
  return lines;
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

/** Where a frame's code lives, shortly: a file under relay/, a package, or node's internals. */
function area(url: string): string {
  if (!url) return '(native or V8)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1]!;
  const own = /\/(relay|bench)\/([^/]+)$/.exec(url);
  if (own) return `${own[1]}/${own[2]}`;
  if (url.startsWith('node:')) return 'node internals';
  return url;
}

function frameName(frame: HeapNode['callFrame']): string {
  return `${frame.functionName || '(anonymous)'} ${area(frame.url)}:${frame.lineNumber + 1}`;
}

function top(map: Map<string, number>, count: number): Array<[string, number]> {
  return [...map].sort((a, b) => b[1] - a[1]).slice(0, count);
}

function allocationLines(profile: { head: HeapNode }, deliveries: number): string[] {
  const bySite = new Map<string, number>();
  const byOwnCaller = new Map<string, number>();
  const byArea = new Map<string, number>();
  let total = 0;
  const paths = new Map<string, number>();
  const stack: string[] = [];
  const walk = (node: HeapNode, ownCaller: string) => {
    stack.push(frameName(node.callFrame));
    if (options.callers && node.selfSize > 0 && stack.at(-1)!.startsWith(options.callers)) {
      const path = stack.slice(-8).join(' > ');
      paths.set(path, (paths.get(path) ?? 0) + node.selfSize);
    }
    const here = /\/relay\/[^/]+$/.test(node.callFrame.url) ? frameName(node.callFrame) : ownCaller;
    if (node.selfSize > 0) {
      total += node.selfSize;
      const site = frameName(node.callFrame);
      bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
      byOwnCaller.set(here, (byOwnCaller.get(here) ?? 0) + node.selfSize);
      const where = area(node.callFrame.url);
      byArea.set(where, (byArea.get(where) ?? 0) + node.selfSize);
    }
    for (const next of node.children) walk(next, here);
    stack.pop();
  };
  walk(profile.head, '(no relay frame: timers, sockets, pg, undici callbacks)');
  const rows = (title: string, map: Map<string, number>) => [
    '',
    `${title} (sampled bytes per delivery, share of sampled)`,
    ...top(map, Number(options.top)).map(([name, bytes]) => `  ${String(Math.round(bytes / deliveries)).padStart(6)}  ${((bytes / total) * 100).toFixed(1).padStart(5)} %  ${name}`),
  ];
  return [
    `sampled allocation per delivery: ${Math.round(total / deliveries)} bytes`,
    ...rows('by area of the allocating frame', byArea),
    ...rows('by allocating frame', bySite),
    ...rows('by the nearest frame of relay/ above it', byOwnCaller),
    ...(options.callers ? rows(`the callers of ${options.callers}`, paths) : []),
  ];
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: HeapNode['callFrame']; hitCount?: number }>;
  startTime: number;
  endTime: number;
  samples: number[];
}

function cpuLines(profile: CpuProfile, deliveries: number): string[] {
  const perSample = (profile.endTime - profile.startTime) / Math.max(1, profile.samples.length);
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const node of profile.nodes) {
    const us = (node.hitCount ?? 0) * perSample;
    if (us === 0) continue;
    const name = node.callFrame.url ? frameName(node.callFrame) : node.callFrame.functionName;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    const where = node.callFrame.url ? area(node.callFrame.url) : node.callFrame.functionName;
    byArea.set(where, (byArea.get(where) ?? 0) + us);
  }
  const rows = (title: string, map: Map<string, number>) => [
    '',
    `${title} (self time, µs per delivery)`,
    ...top(map, Number(options.top)).map(([name, us]) => `  ${(us / deliveries).toFixed(2).padStart(7)}  ${name}`),
  ];
  return [...rows('by area', byArea), ...rows('by function', byFunction)];
}

// --- the database, the receiver and the backlog ----------------------------------
async function parent(): Promise<void> {
  const count = Number(options.count);
  const warm = Number(options.warm);
  const { startEmbeddedPostgres } = await import('../tools/embedded-postgres.ts');
  const { migrate } = await import('../tools/migrate.ts');
  const receiver = createServer((request, response) => {
    request.resume();
    request.on('end', () => response.writeHead(204).end());
  });
  receiver.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;

  const dataDir = await mkdtemp(join(tmpdir(), 'bpd-relay-allocations-'));
  const server = await startEmbeddedPostgres({ dataDir });
  let relay: ChildProcess | null = null;
  const pool = new pg.Pool({ connectionString: server.url(), max: 2 });
  pool.on('error', () => {});
  try {
    await migrate(server.url());
    const company = (await pool.query(`insert into crm.companies (name) values ('allocations') returning id`)).rows[0].id;
    await pool.query(
      `insert into webhooks.webhooks (company_id, name, url, fields, actions) values ($1, 'allocations', $2, $3, $4::webhooks.action[])`,
      [company, receiverUrl, ['first_name', 'email'], ['contact.created']],
    );
    const backlog = (n: number, from: number) =>
      pool.query(
        `insert into crm.contacts (company_id, first_name, email)
         select $1, 'Contact ' || n, 'c' || n || '@example.com' from generate_series($2::int, $3::int) n`,
        [company, from, from + n - 1],
      );
    relay = fork(fileURLToPath(import.meta.url), ['--child', ...process.argv.slice(2)], {
      cwd: root,
      execArgv: [...RELAY_NODE_FLAGS, ...process.execArgv],
      env: {
        ...process.env,
        DATABASE_URL: server.url(),
        RELAY_ALLOW_NETWORKS: '127.0.0.0/8',
        RELAY_LOG_LEVEL: process.env.RELAY_LOG_LEVEL ?? 'info',
      },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    const ask = async (question: Ask): Promise<Answer> => {
      const answer = once(relay!, 'message') as Promise<[Answer]>;
      relay!.send(question);
      return (await answer)[0];
    };
    await backlog(warm, 1);
    await ask({ type: 'drained', settled: warm });
    await ask({ type: 'measure' });
    await backlog(count, warm + 1);
    const report = await ask({ type: 'report', settled: warm + count, deliveries: count });
    if (report.type === 'report') console.log(report.lines.join('\n'));
    await once(relay, 'exit');
  } finally {
    if (relay && relay.exitCode === null) relay.kill('SIGTERM');
    await pool.end();
    receiver.closeAllConnections();
    receiver.close();
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
