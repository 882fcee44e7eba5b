// The two modes, run the same way for every contender, each on a fresh clone of the
// migrated database:
//   burn-down: N changes written while the contender is stopped, then the time from
//              starting it until the last delivery arrives;
//   open loop: changes written at a fixed rate for a bounded time while the contender
//              runs; commit-to-arrival latency and whether the backlog grew.
import pg from 'pg';
import { analyse, committedSeqs, latency, latencySplit, upTo, type Latency, type LatencySplit } from './analysis.ts';
import { spawnChild, type ChildHandle, type ChildStats } from './child.ts';
import { now } from './clock.ts';
import { postgresCpuSeconds } from './cpu.ts';
import { vacuumAfterWarmUp, writeChanges, type BenchPostgres } from './database.ts';
import type { Receiver } from './receiver.ts';
import { writeAtRate } from './writer.ts';

/** Seconds of the open loop's rate written before its window, not measured (see openLoop). */
export const OPEN_LOOP_WARM_UP_SECONDS = 2;
/** The warm-up's changes are numbered from here, apart from the window's 1..n. */
const WARM_UP_SEQ_OFFSET = 100_000_000;

/** How long a run waits, after the last arrival, for every delivery to be recorded as done. */
const FINISH_BOUND_MS = 60_000;

export interface Bench {
  pg: BenchPostgres;
  receiver: Receiver;
  concurrency: number;
  /** where to write V8 CPU profiles of the children, if at all */
  cpuProfDir?: string;
  log(line: string): void;
}

export interface Contender {
  name: string;
  /** the child process entry */
  file: string;
  /** extra environment for the child */
  env?: Record<string, string>;
  /** Node flags for the child */
  execArgv?: string[];
  /** installs what the contender needs in its fresh database (not timed) */
  prepare(databaseUrl: string, receiverUrl: string): Promise<void>;
  /** SQL counting the work not yet recorded as done (outbox rows, queued jobs) */
  unfinishedSql: string;
  /**
   * When the sender began each change's first attempt (epoch ms, the sender's clock),
   * by the change's sequence number: splits the open loop's latency in two
   * (analysis.ts, latencySplit). Read before the clone is dropped; optional.
   */
  firstSends?(databaseUrl: string): Promise<Map<number, number>>;
}

export interface Cost {
  /** the child's own counters (the relay's claims, graphile-worker's deliveries) */
  extra: Record<string, number>;
  /** the contender process's CPU seconds per 1,000 deliveries */
  cpuPer1k: number;
  /** Postgres's CPU seconds (whole instance) per 1,000 deliveries over the same span */
  pgCpuPer1k: number;
  peakRssMb: number;
}

export interface BurnDownResult extends Cost {
  name: string;
  /** deliveries/s of each round, when several rounds were combined */
  rounds: number[];
  count: number;
  delivered: number;
  missing: number;
  duplicates: number;
  /** from the start signal to the last arrival */
  drainSeconds: number;
  /** count / drainSeconds */
  perSecond: number;
  /** from the start signal to the first arrival */
  firstArrivalMs: number;
  /** from the start signal until every delivery was recorded as done (NaN: not within the bound) */
  settledSeconds: number;
  /** false: the time bound ran out before every change arrived (the rest is still queued, not lost) */
  complete: boolean;
}

export interface OpenLoopResult extends Cost {
  name: string;
  rate: number;
  seconds: number;
  committed: number;
  /** the rate the writer achieved (commits per second over its window) */
  writtenPerSecond: number;
  /** due changes the writer dropped because the database was too far behind */
  dropped: number;
  /** commit returns against their schedule: how well the writer held the rate */
  writerLateP99Ms: number;
  delivered: number;
  missing: number;
  duplicates: number;
  latency: Latency;
  /** the latency in two: commit to the first send, and that send to its arrival (firstSends) */
  split: LatencySplit | null;
  /** changes committed and not yet arrived, at the end of the writing window */
  backlogAtEnd: number;
  /** the highest such count during the window */
  backlogMax: number;
  backlogGrew: boolean;
  /** after the window, until the last arrival */
  drainAfterMs: number;
  /** false: the drain bound ran out before every committed change arrived */
  complete: boolean;
}

function cost(stats: ChildStats, pgCpu: number, deliveries: number): Cost {
  const per1k = (seconds: number) => (deliveries > 0 ? (seconds * 1000) / deliveries : Number.NaN);
  return { cpuPer1k: per1k(stats.cpuSeconds), pgCpuPer1k: per1k(pgCpu), peakRssMb: stats.peakRssMb, extra: stats.extra };
}

export function childEnv(bench: Bench, contender: Contender, databaseUrl: string): Record<string, string> {
  return {
    ...contender.env,
    DATABASE_URL: databaseUrl,
    RECEIVER_ORIGIN: bench.receiver.origin,
    RECEIVER_URL: bench.receiver.url,
    CONCURRENCY: String(bench.concurrency),
  };
}

export async function burnDown(bench: Bench, contender: Contender, count: number, timeoutMs: number, warmUp = 0): Promise<BurnDownResult> {
  const clone = await bench.pg.clone(`${contender.name}_burn`);
  try {
    await contender.prepare(clone.url, bench.receiver.url);
    // cold (the default): the backlog is written with the sender stopped, and time and
    // CPU count from its start. Warm (--warm N): the sender first delivers N changes,
    // then the backlog is committed in one transaction while it runs, and time and CPU
    // count from that commit (as the fleet mode does, bench/fleet.ts)
    if (warmUp === 0) await writeChanges(clone.url, 1, count);
    else await writeChanges(clone.url, count + 1, count + warmUp);
    await bench.receiver.take();
    const child = await spawnChild(contender.file, {
      name: `${contender.name}-burn-down`,
      env: childEnv(bench, contender, clone.url),
      execArgv: contender.execArgv,
      cpuProfDir: bench.cpuProfDir,
    });
    if (warmUp > 0) await warmUpSenders(bench, clone.url, [child], { count: warmUp, unfinishedSql: contender.unfinishedSql, label: contender.name, timeoutMs, rewarmFrom: count + warmUp + 1 });
    const arrived = bench.receiver.expect(count, timeoutMs);
    if (warmUp > 0) await writeChanges(clone.url, 1, count, { atOnce: true });
    const pgBefore = postgresCpuSeconds(bench.pg.pid);
    const startedAt = now();
    if (warmUp === 0) await child.go();
    const complete = await arrived;
    if (!complete) bench.log(`  ${contender.name}: not all ${count} arrived within ${timeoutMs} ms`);
    // arrived is not finished: the contender still has to record each delivery as done
    const settledAt = complete ? await whenFinished(clone.url, contender.unfinishedSql) : Number.NaN;
    const pgCpu = postgresCpuSeconds(bench.pg.pid) - pgBefore;
    const stats = await child.stop();
    const delivery = analyse(await bench.receiver.take(), upTo(count));
    const drainSeconds = (delivery.lastArrival - startedAt) / 1000;
    return {
      name: contender.name,
      rounds: [delivery.delivered / drainSeconds],
      count,
      delivered: delivery.delivered,
      missing: delivery.missing,
      duplicates: delivery.duplicates,
      drainSeconds,
      perSecond: delivery.delivered / drainSeconds,
      firstArrivalMs: delivery.firstArrival - startedAt,
      settledSeconds: (settledAt - startedAt) / 1000,
      complete,
      ...cost(stats, pgCpu, delivery.delivered),
    };
  } finally {
    await clone.drop();
  }
}

/**
 * The warm-up of a measured run (burn-down --warm, the fleet): the senders, spawned
 * and waiting, deliver the `count` changes already written; then, once those are all
 * settled, the database is vacuumed (bench/database.ts says why), the receiver
 * forgets them and each sender marks its CPU, so that what follows is measured alone.
 * What did not arrive or settle in time is logged, not fatal.
 */
export async function warmUpSenders(
  bench: Bench,
  url: string,
  senders: ChildHandle[],
  options: { count: number; unfinishedSql: string; label: string; timeoutMs: number; rewarmFrom: number },
): Promise<void> {
  const warmed = bench.receiver.expect(options.count, options.timeoutMs);
  await Promise.all(senders.map((sender) => sender.go()));
  if (!(await warmed)) bench.log(`  ${options.label}: the ${options.count} warm-up deliveries did not all arrive within ${options.timeoutMs} ms`);
  if (Number.isNaN(await whenFinished(url, options.unfinishedSql))) bench.log(`  ${options.label}: the warm-up was not all settled within ${FINISH_BOUND_MS / 1000} s`);
  await vacuumAfterWarmUp(url);
  // the vacuum's analyze (and its vacuum's new page counts) invalidated every cached
  // plan of every connection: each of a relay's connections plans its statements
  // again at its next use, some 10–20 ms of Postgres time apiece. Counted in the
  // measured window it cost four relays four times what it cost one (BENCHMARKS.md,
  // 2026-12-08), once per window; a fleet running for days pays it once an autovacuum
  // of a table, spread over minutes. The same REWARM_CHANGES however many senders: the
  // dead rows they leave are the same for all.
  await bench.receiver.take();
  const rewarmed = bench.receiver.expect(REWARM_CHANGES, options.timeoutMs);
  await writeChanges(url, options.rewarmFrom, options.rewarmFrom + REWARM_CHANGES - 1, { atOnce: true });
  if (!(await rewarmed)) bench.log(`  ${options.label}: the ${REWARM_CHANGES} deliveries after the vacuum did not all arrive within ${options.timeoutMs} ms`);
  if (Number.isNaN(await whenFinished(url, options.unfinishedSql))) bench.log(`  ${options.label}: the deliveries after the vacuum were not all settled within ${FINISH_BOUND_MS / 1000} s`);
  await bench.receiver.take();
  await Promise.all(senders.map((sender) => sender.mark()));
}

/** Changes delivered after the warm-up's vacuum, so that every connection plans again before the measured window (warmUpSenders). */
export const REWARM_CHANGES = 1000;

/**
 * Polls (every 25 ms, at most boundMs) until the SQL counts nothing unfinished; the
 * time then, or NaN.
 */
export async function whenFinished(url: string, sql: string, boundMs = FINISH_BOUND_MS): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const deadline = now() + boundMs;
    while (now() < deadline) {
      const { rows } = await client.query(sql);
      if (Number(rows[0].count) === 0) return now();
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return Number.NaN;
  } finally {
    await client.end();
  }
}

/**
 * The window measures running, not starting: first OPEN_LOOP_WARM_UP_SECONDS at the
 * rate, unmeasured (a fresh connection plans its statements on first use, V8 compiles
 * the hot paths; in a run without it the first second held the slowest 1% of the
 * window), all of it arrived and taken from the receiver before the window opens.
 */
export async function warmUpAtRate(bench: Bench, url: string, rate: number, drainTimeoutMs: number, label: string): Promise<void> {
  const warmUp = await writeAtRate(url, rate, OPEN_LOOP_WARM_UP_SECONDS, () => {}, WARM_UP_SEQ_OFFSET);
  if (!(await bench.receiver.expect(warmUp.committed, drainTimeoutMs))) {
    bench.log(`  ${label}: the warm-up did not all arrive within the drain bound`);
  }
  await bench.receiver.take();
}

export async function openLoop(
  bench: Bench,
  contender: Contender,
  rate: number,
  seconds: number,
  drainTimeoutMs: number,
): Promise<OpenLoopResult> {
  const clone = await bench.pg.clone(`${contender.name}_open_${rate}`);
  try {
    await contender.prepare(clone.url, bench.receiver.url);
    await bench.receiver.take();
    const child = await spawnChild(contender.file, {
      name: `${contender.name}-open-${rate}`,
      env: childEnv(bench, contender, clone.url),
      execArgv: contender.execArgv,
      cpuProfDir: bench.cpuProfDir,
    });
    await child.go();
    await warmUpAtRate(bench, clone.url, rate, drainTimeoutMs, `${contender.name} @ ${rate}/s`);
    await child.mark();
    const pgBefore = postgresCpuSeconds(bench.pg.pid);

    const backlog: number[] = [];
    const samples: Promise<void>[] = [];
    const written = await writeAtRate(clone.url, rate, seconds, (committed) => {
      samples.push(bench.receiver.count().then((arrived) => void backlog.push(committed - arrived)));
    });
    await Promise.all(samples);
    const backlogAtEnd = written.committed - (await bench.receiver.count());
    const complete = await bench.receiver.expect(written.committed, drainTimeoutMs);
    if (!complete) bench.log(`  ${contender.name} @ ${rate}/s: not all ${written.committed} arrived within the drain bound`);
    if (complete) await whenFinished(clone.url, contender.unfinishedSql);
    const pgCpu = postgresCpuSeconds(bench.pg.pid) - pgBefore;
    const stats = await child.stop();
    const delivery = analyse(await bench.receiver.take(), committedSeqs(written.committedAt));
    const backlogMax = Math.max(backlogAtEnd, ...backlog);
    const firstSends = contender.firstSends ? await contender.firstSends(clone.url) : null;
    return {
      name: contender.name,
      rate,
      seconds,
      committed: written.committed,
      writtenPerSecond: (written.committed * 1000) / (written.endedAt - written.startedAt),
      writerLateP99Ms: written.lateP99Ms,
      dropped: written.dropped,
      delivered: delivery.delivered,
      missing: delivery.missing,
      duplicates: delivery.duplicates,
      latency: latency(written.committedAt, delivery),
      split: firstSends ? latencySplit(written.committedAt, firstSends, delivery) : null,
      backlogAtEnd,
      backlogMax,
      // more than a quarter second of work left over when the writing stopped: the
      // contender fell behind the rate rather than trailing it by its latency
      backlogGrew: backlogAtEnd > Math.max(25, rate / 4),
      drainAfterMs: Math.max(0, delivery.lastArrival - written.endedAt),
      complete,
      ...cost(stats, pgCpu, delivery.delivered),
    };
  } finally {
    await clone.drop();
  }
}

export interface LimitResult extends Cost {
  name: string;
  rounds: number[];
  count: number;
  perSecond: number;
  missing: number;
}

export const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

/** Several rounds of one contender (or limit) as one row: means, the worst memory, all losses. */
export function combine<T extends BurnDownResult | LimitResult>(results: T[]): T {
  const [first] = results;
  const combined = { ...first } as T;
  for (const key of ['perSecond', 'cpuPer1k', 'pgCpuPer1k', 'drainSeconds', 'firstArrivalMs', 'settledSeconds'] as const) {
    if (key in first) {
      (combined as unknown as Record<string, number>)[key] = mean(results.map((r) => (r as unknown as Record<string, number>)[key]));
    }
  }
  combined.peakRssMb = Math.max(...results.map((r) => r.peakRssMb));
  combined.missing = results.reduce((sum, r) => sum + r.missing, 0);
  combined.count = results.reduce((sum, r) => sum + r.count, 0);
  if ('delivered' in combined) {
    (combined as BurnDownResult).delivered = results.reduce((sum, r) => sum + (r as BurnDownResult).delivered, 0);
    (combined as BurnDownResult).complete = results.every((r) => (r as BurnDownResult).complete);
  }
  if ('duplicates' in combined) {
    (combined as BurnDownResult).duplicates = results.reduce((sum, r) => sum + (r as BurnDownResult).duplicates, 0);
  }
  combined.rounds = results.flatMap((r) => r.rounds);
  combined.extra = {};
  for (const r of results) {
    for (const [key, value] of Object.entries(r.extra)) combined.extra[key] = (combined.extra[key] ?? 0) + value;
  }
  return combined;
}
