// Two modes of #11:
//   fleet:           the burn-down with 1, 2, 4 relays on one database: deliveries/s
//                    and the CPU (relays together, Postgres) per 1,000 deliveries;
//                    throughput must not fall as relays are added. graphile-worker
//                    beside it, with as many worker processes.
//   noisy neighbour: the open loop of the benchmark company while another company's
//                    eight webhooks post to a socket that never answers, with a deep
//                    backlog queued for them: the healthy company's p50/p99, beside
//                    the same run without the noisy company. bpd-webhooks alone
//                    (graphile-worker has no companies to be fair between).
import { createServer, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { analyse, committedSeqs, latency, upTo, type Latency } from './analysis.ts';
import { spawnChild, type ChildHandle } from './child.ts';
import { now } from './clock.ts';
import { bpdContender } from './contenders/bpd.ts';
import { postgresCpuSeconds, processCpuSeconds } from './cpu.ts';
import { onDatabase, writeChanges } from './database.ts';
import { childEnv, mean, warmUpAtRate, warmUpSenders, whenFinished, type Bench, type Contender } from './modes.ts';
import { writeAtRate } from './writer.ts';

export interface FleetResult {
  name: string;
  /** relays (graphile-worker: worker processes) on the one database */
  relays: number;
  /** how long the receiver took to answer each request (0: at once) */
  receiverMs: number;
  /** deliveries each relay sent before the measured burn-down */
  warmUpPerRelay: number;
  count: number;
  delivered: number;
  missing: number;
  duplicates: number;
  perSecond: number;
  /** deliveries/s of each round (combineFleet: a row of several rounds) */
  rounds: number[];
  /** the relays' CPU seconds together, per 1,000 deliveries */
  cpuPer1k: number;
  pgCpuPer1k: number;
  /** the receiver's CPU seconds per 1,000 deliveries: it shares the machine's cores */
  receiverCpuPer1k: number;
  /** claims that found nothing, all relays together */
  emptyClaims: number;
  claims: number;
  complete: boolean;
}

async function spawnSenders(bench: Bench, contender: Contender, databaseUrl: string, count: number, label: string): Promise<ChildHandle[]> {
  const children: ChildHandle[] = [];
  for (let i = 1; i <= count; i++) {
    const name = `${label}-${contender.name}-${i}`;
    children.push(await spawnChild(contender.file, {
      name,
      // RELAY_ID: each relay's leases and attempts name it (graphile-worker ignores it)
      env: { ...childEnv(bench, contender, databaseUrl), RELAY_ID: name },
      execArgv: contender.execArgv,
      cpuProfDir: bench.cpuProfDir,
    }));
  }
  return children;
}

/**
 * Deliveries each relay sends before the measured burn-down (see fleetBurnDown). A
 * relay's CPU per send keeps falling for its first 20,000 to 30,000 sends (the Sender
 * alone, 32 in flight: 108–127 µs a send over sends 5,000–25,000, 75–90 after;
 * BENCHMARKS.md). With fewer, four relays sent their share of the backlog still in
 * that dearer stretch, one relay mostly past it: with 8,000 each, four relays' CPU
 * per delivery was 1.6–2× one relay's (0.21–0.27 against 0.13–0.17 s/1k), with 25,000
 * 1.2–1.5× (2026-12-01). A quick run keeps 8,000: its ratios are the rougher for it.
 */
export const FLEET_WARM_UP_PER_RELAY = { full: 25_000, quick: 8_000 } as const;

/**
 * The burn-down with `relays` relays on one backlog, spread over `webhooks` webhooks
 * of the one company (each contact's changes go to one of them). Measured warm: the
 * relays first send options.warmUpPerRelay deliveries each (FLEET_WARM_UP_PER_RELAY),
 * so that every connection has planned its statements (about 20 ms of Postgres time
 * for each of a relay's four connections) and V8 has compiled the relay's hot paths
 * and grown its heap; then the backlog is
 * committed in one transaction, and time and CPU count from that commit. A cold start
 * costs each relay the same whatever the fleet; counted in a short run it would make
 * four relays look slower than one for a reason a fleet running for days never meets.
 */
export async function fleetBurnDown(
  bench: Bench,
  contender: Contender,
  relays: number,
  count: number,
  timeoutMs: number,
  options: { webhooks?: number; warmUpPerRelay: number; receiverMs?: number },
): Promise<FleetResult> {
  const webhooks = options.webhooks ?? 1;
  const receiverMs = options.receiverMs ?? 0;
  const isRelay = contender === bpdContender;
  // the webhooks of bpd-webhooks; graphile-worker's jobs go to one queue whatever
  const shards = isRelay ? webhooks : 1;
  const clone = await bench.pg.clone(`fleet_${isRelay ? 'bpd' : 'peer'}_${relays}`);
  try {
    if (shards > 1) await shardContacts(clone.url, shards);
    await contender.prepare(clone.url, bench.receiver.url);
    if (shards > 1) await shardWebhooks(clone.url, shards);
    const warmUp = options.warmUpPerRelay * relays;
    await writeChanges(clone.url, count + 1, count + warmUp);
    await bench.receiver.take();
    const children = await spawnSenders(bench, contender, clone.url, relays, `fleet-${relays}`);
    await warmUpSenders(bench, clone.url, children, { count: warmUp, unfinishedSql: contender.unfinishedSql, label: `${contender.name} × ${relays}`, timeoutMs, rewarmFrom: count + warmUp + 1 });
    // the warm-up at full speed; the measured burn-down against the receiver's delay
    if (receiverMs > 0) await bench.receiver.answerAfter(receiverMs);
    const arrived = bench.receiver.expect(count, timeoutMs);
    await writeChanges(clone.url, 1, count, { atOnce: true });
    // with --profile: the top statements of the measured burn-down alone
    if (bench.cpuProfDir || bench.pg.statements) {
      await onDatabase(clone.url, (c) => c.query(`select pg_stat_statements_reset(0, (select oid from pg_database where datname = current_database()), 0)`));
    }
    const pgBefore = postgresCpuSeconds(bench.pg.pid);
    const receiverBefore = processCpuSeconds(bench.receiver.pid);
    const startedAt = now();
    const complete = await arrived;
    if (!complete) bench.log(`  ${contender.name} × ${relays}: not all ${count} arrived within ${timeoutMs} ms`);
    // the work ends when every delivery is recorded as done; the senders' stop is not
    // part of it (bench/cpu.ts)
    if (complete) await whenFinished(clone.url, contender.unfinishedSql);
    const pgCpu = postgresCpuSeconds(bench.pg.pid) - pgBefore;
    const receiverCpu = processCpuSeconds(bench.receiver.pid) - receiverBefore;
    const stats = await Promise.all(children.map((child) => child.stop()));
    const delivery = analyse(await bench.receiver.take(), upTo(count));
    const seconds = (delivery.lastArrival - startedAt) / 1000;
    const per1k = (cpu: number) => (cpu * 1000) / delivery.delivered;
    const sum = (key: string) => stats.reduce((total, s) => total + (s.extra[key] ?? 0), 0);
    if (isRelay) {
      const keys = ['claims', 'claimed', 'emptyClaims', 'emptyLanesBusy', 'emptyAtCap', 'refills', 'emptyRefills', 'claimMs', 'settles', 'settled'];
      const relayCpu = stats.reduce((total, s) => total + s.cpuSeconds, 0);
      bench.log(`  round figures × ${relays}: ${(delivery.delivered / seconds).toFixed(0)}/s, relay CPU ${per1k(relayCpu).toFixed(3)} s/1k, Postgres CPU ${per1k(pgCpu).toFixed(3)} s/1k, ` +
        keys.map((key) => `${key} ${sum(key)}`).join(', '));
    }
    return {
      name: contender.name,
      relays,
      receiverMs,
      warmUpPerRelay: options.warmUpPerRelay,
      count,
      delivered: delivery.delivered,
      missing: delivery.missing,
      duplicates: delivery.duplicates,
      perSecond: delivery.delivered / seconds,
      rounds: [delivery.delivered / seconds],
      cpuPer1k: per1k(stats.reduce((total, s) => total + s.cpuSeconds, 0)),
      pgCpuPer1k: per1k(pgCpu),
      receiverCpuPer1k: per1k(receiverCpu),
      claims: sum('claims'),
      emptyClaims: sum('emptyClaims'),
      complete,
    };
  } finally {
    if (receiverMs > 0) await bench.receiver.answerAfter(0);
    await clone.drop();
  }
}

// Contact c belongs to shard c % n (custom.shard, set before any webhook exists, so
// this fires nothing); the benchmark's webhook takes shard 0 and n − 1 copies of it
// the others, by a condition: each change fires exactly one webhook.
async function shardContacts(url: string, n: number): Promise<void> {
  await onDatabase(url, (c) => c.query(`update crm.contacts set custom = custom || jsonb_build_object('shard', id % $1)`, [n]));
}

async function shardWebhooks(url: string, n: number): Promise<void> {
  await onDatabase(url, async (c) => {
    const shard = (k: number) => JSON.stringify({ field: 'custom.shard', op: 'eq', value: k });
    const { rows: [first] } = await c.query(`update webhooks.webhooks set conditions = $1 returning *`, [shard(0)]);
    for (let k = 1; k < n; k++) {
      await c.query(
        `insert into webhooks.webhooks (company_id, name, url, fields, actions, max_in_flight, conditions)
         values ($1, $2, $3, $4, $5, $6, $7)`,
        [first.company_id, `${first.name} ${k}`, first.url, first.fields, first.actions, first.max_in_flight, shard(k)],
      );
    }
  });
}

/**
 * The rounds of each run (one contender, one number of senders, one receiver delay)
 * as one row, in the order first run: rates and CPU per delivery their means, counts
 * of losses and claims their sums. A round alone swings by ±15 % on two shared cores.
 */
export function combineFleet(results: FleetResult[]): FleetResult[] {
  const groups = new Map<string, FleetResult[]>();
  for (const r of results) {
    const key = `${r.name}\u0000${r.relays}\u0000${r.receiverMs}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((rounds) => ({
    ...rounds[0]!,
    delivered: rounds.reduce((sum, r) => sum + r.delivered, 0),
    missing: rounds.reduce((sum, r) => sum + r.missing, 0),
    duplicates: rounds.reduce((sum, r) => sum + r.duplicates, 0),
    perSecond: mean(rounds.map((r) => r.perSecond)),
    rounds: rounds.flatMap((r) => r.rounds),
    cpuPer1k: mean(rounds.map((r) => r.cpuPer1k)),
    pgCpuPer1k: mean(rounds.map((r) => r.pgCpuPer1k)),
    receiverCpuPer1k: mean(rounds.map((r) => r.receiverCpuPer1k)),
    claims: rounds.reduce((sum, r) => sum + r.claims, 0),
    emptyClaims: rounds.reduce((sum, r) => sum + r.emptyClaims, 0),
    complete: rounds.every((r) => r.complete),
  }));
}

/**
 * One table for the runs against one receiver delay (combined rounds: combineFleet):
 * each run compared to its own contender's run with one sender. Claims are the
 * relay's (graphile-worker counts none).
 */
export function fleetTable(results: FleetResult[]): string {
  const lines = [
    '| contender | relays (workers) | deliveries/s | × 1 | CPU s/1k (all of them) | Postgres CPU s/1k | receiver CPU s/1k | claims (empty) | missing | duplicates |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of results) {
    const one = results.find((o) => o.name === r.name && o.relays === 1);
    const claims = r.name === bpdContender.name ? `${r.claims} (${r.emptyClaims})` : '–';
    const each = r.rounds.length > 1 ? ` (${r.rounds.map((x) => x.toFixed(0)).join(', ')})` : '';
    lines.push(
      `| ${r.name} | ${r.relays} | ${r.perSecond.toFixed(0)}${each}${r.complete ? '' : ' (incomplete)'} | ${one ? (r.perSecond / one.perSecond).toFixed(2) : '–'} | ` +
        `${r.cpuPer1k.toFixed(3)} | ${r.pgCpuPer1k.toFixed(3)} | ${r.receiverCpuPer1k.toFixed(3)} | ${claims} | ${r.missing} | ${r.duplicates} |`,
    );
  }
  return lines.join('\n');
}

// ------------------------------------------------------------------ noisy neighbour

export interface NoisyResult {
  label: string;
  rate: number;
  seconds: number;
  committed: number;
  delivered: number;
  missing: number;
  latency: Latency;
  /** requests the silent endpoints were holding when the window ended */
  silentHeld: number;
  noisyBacklog: number;
}

export const NOISY_WEBHOOKS = 8;

/** A socket that accepts connections and never answers, like an endpoint that hangs. */
async function silentSocket(): Promise<{ url: string; open: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.resume(); // read and forget
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    open: () => sockets.size,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Company 2 with NOISY_WEBHOOKS webhooks to `url` and `contacts` contacts' worth of deliveries queued for each. */
async function installNoisyCompany(databaseUrl: string, url: string, contacts: number): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`insert into crm.companies (id, name) values (2, 'Noisy Company')`);
    await client.query(
      `insert into webhooks.webhooks (company_id, name, url, fields, actions)
       select 2, 'Silent ' || n, $1, '{first_name}', '{contact.created}' from generate_series(1, $2::int) n`,
      [url, NOISY_WEBHOOKS],
    );
    await client.query(
      `insert into crm.contacts (company_id, first_name) select 2, 'Noisy ' || n from generate_series(1, $1::int) n`,
      [contacts],
    );
    const { rows } = await client.query(`select count(*)::int as n from webhooks.deliveries where company_id = 2`);
    return rows[0].n;
  } finally {
    await client.end();
  }
}

/**
 * The benchmark company's changes at `rate`/s for `seconds` s with one relay at its
 * defaults; with `noisy`, beside company 2's silent webhooks and their backlog.
 */
export async function noisyNeighbour(bench: Bench, options: { rate: number; seconds: number; noisy: boolean; backlogContacts: number }): Promise<NoisyResult> {
  const label = options.noisy ? 'beside a noisy company' : 'alone';
  const clone = await bench.pg.clone(options.noisy ? 'noisy' : 'quiet');
  const silent = await silentSocket();
  try {
    await bpdContender.prepare(clone.url, bench.receiver.url);
    const noisyBacklog = options.noisy ? await installNoisyCompany(clone.url, silent.url, options.backlogContacts) : 0;
    await bench.receiver.take();
    const [relay] = await spawnSenders(bench, bpdContender, clone.url, 1, `noisy-${options.noisy}`);
    await relay!.go();
    if (options.noisy) {
      // the silent endpoints hold requests before the healthy company's window opens
      const deadline = now() + 10_000;
      while (silent.open() < NOISY_WEBHOOKS && now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // warm, as the open loop is (the silent endpoints keep holding meanwhile)
    await warmUpAtRate(bench, clone.url, options.rate, 30_000, `noisy neighbour, ${label}`);
    const written = await writeAtRate(clone.url, options.rate, options.seconds, () => {});
    const silentHeld = silent.open();
    await bench.receiver.expect(written.committed, 30_000);
    // hanging requests end at once rather than at the relay's request timeout
    await silent.close();
    await relay!.stop(60_000);
    const delivery = analyse(await bench.receiver.take(), committedSeqs(written.committedAt));
    return {
      label,
      rate: options.rate,
      seconds: options.seconds,
      committed: written.committed,
      delivered: delivery.delivered,
      missing: delivery.missing,
      latency: latency(written.committedAt, delivery),
      silentHeld,
      noisyBacklog,
    };
  } finally {
    await silent.close().catch(() => {});
    await clone.drop();
  }
}

export function noisyTable(results: NoisyResult[]): string {
  const lines = [
    '| healthy company | rate/s | committed | p50 ms | p99 ms | max ms | silent requests held | noisy backlog | missing |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of results) {
    lines.push(
      `| ${r.label} | ${r.rate} | ${r.committed} | ${r.latency.p50.toFixed(1)} | ${r.latency.p99.toFixed(1)} | ${r.latency.max.toFixed(1)} | ` +
        `${r.silentHeld} | ${r.noisyBacklog} | ${r.missing} |`,
    );
  }
  return lines.join('\n');
}
