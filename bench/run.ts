// `npm run bench [-- --quick] [-- --profile]`: bpd-webhooks, graphile-worker and the
// machine's limits, measured in one run on the same Postgres and the same receiver.
// Prints one markdown table per mode (burn-down, open loop) with the ratios.
//   --quick          a run of four to five minutes (fewer changes, shorter windows)
//   --profile        V8 CPU profiles of every child (bench/profiles/) and the top
//                    statements from pg_stat_statements
//   --statements     the top statements alone (pg_stat_statements, track = all), without
//                    the profiles, whose sampling costs the children CPU
//   --concurrency N  deliveries in flight per contender (default: the relay's
//                    RELAY_PER_WEBHOOK_IN_FLIGHT default; the benchmark has one webhook)
//   --only NAME      run one contender only (bpd-webhooks or graphile-worker)
//   --mode MODE      run one mode only (burn-down, open-loop, fleet, noisy-neighbour, or sync)
//   --relays A,B,…   fleet mode: relays on one database (default 1,2,4); with --mode
//                    fleet, as many graphile-worker processes beside them
//   --webhooks N     fleet mode: the changes spread over N webhooks of the company
//                    (default 1: every relay claims the same webhook)
//   --receiver-ms A,B,…  fleet mode: how long the receiver takes to answer, one
//                    table each (default 0,50: the relays and the machine's cores are
//                    the limit, then endpoints that take 50 ms and the relays' request
//                    slots are; the second burns down a third of the changes)
//   --fleet-rounds N fleet mode: rounds of each run, the numbers of relays in
//                    alternating order (default 2: one round swings by ±15 %)
//   --rounds N       burn-down rounds (default 1 with --quick, else 4)
//   --warm N         burn-down: each contender first delivers N changes, then the
//                    backlog is committed at once while it runs (default 0: cold, the
//                    backlog written with the senders stopped)
//   --rates A,B,…    open-loop rates per second (default 250,500,1000,2000); the
//                    noisy-neighbour mode takes the first as the healthy company's
//                    rate (default 200/s)
//   --seconds N      open-loop window (default 4 with --quick, else 20)
//   --mode sync      backfill and ordering instead (bench/sync.ts, docs/backfill.md):
//                    live p99 alone and during a backfill of --contacts N contacts
//                    (default 100,000; 20,000 with --quick), and deliveries/s to an
//                    ordered webhook with 1,000 contacts changing at once
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { bpdContender, RELAY_DEFAULT_CONCURRENCY } from './contenders/bpd.ts';
import { graphileWorkerContender } from './contenders/graphile-worker.ts';
import { sampleBody, startBenchPostgres } from './database.ts';
import { dbLimit, httpLimit } from './limits.ts';
import { burnDown, combine, OPEN_LOOP_WARM_UP_SECONDS, openLoop, type Bench, type BurnDownResult, type LimitResult, type OpenLoopResult } from './modes.ts';
import { burnDownTable, machine, openLoopTable } from './report.ts';
import { combineFleet, FLEET_WARM_UP_PER_RELAY, fleetBurnDown, fleetTable, NOISY_WEBHOOKS, noisyNeighbour, noisyTable, type FleetResult, type NoisyResult } from './fleet.ts';
import { startReceiver } from './receiver.ts';

const { values: options } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    statements: { type: 'boolean', default: false },
    concurrency: { type: 'string', default: String(RELAY_DEFAULT_CONCURRENCY) },
    only: { type: 'string' },
    mode: { type: 'string' },
    rounds: { type: 'string' },
    warm: { type: 'string', default: '0' },
    rates: { type: 'string' },
    seconds: { type: 'string' },
    relays: { type: 'string', default: '1,2,4' },
    webhooks: { type: 'string', default: '1' },
    'receiver-ms': { type: 'string', default: '0,50' },
    'fleet-rounds': { type: 'string', default: '2' },
    contacts: { type: 'string' },
  },
});
const modes = ['burn-down', 'open-loop', 'fleet', 'noisy-neighbour', 'sync'];
if (options.mode && !modes.includes(options.mode)) {
  console.error(`bench: --mode must be one of ${modes.join(', ')}`);
  process.exit(2);
}
const runs = (mode: string) => !options.mode || options.mode === mode;

// backfill and ordering measure one relay against its own database: a script of their
// own, run only when asked for (a full run of it takes several minutes)
if (options.mode === 'sync') {
  const contacts = options.contacts ?? (options.quick ? '20000' : '100000');
  const child = spawn(process.execPath, [fileURLToPath(new URL('./sync.ts', import.meta.url)), '--contacts', contacts], { stdio: 'inherit' });
  const [code] = await once(child, 'exit');
  process.exit(code ?? 1);
}

const chosen = options.quick
  ? { rounds: 1, burnDownCount: 5_000, limitCount: 5_000, rates: [250, 500, 1000, 2000], seconds: 4, drainMs: 10_000 }
  : { rounds: 4, burnDownCount: 30_000, limitCount: 30_000, rates: [250, 500, 1000, 2000], seconds: 20, drainMs: 30_000 };
const plan = {
  ...chosen,
  rates: options.rates ? options.rates.split(',').map(Number) : chosen.rates,
  seconds: options.seconds ? Number(options.seconds) : chosen.seconds,
};
/** each fleet relay's warm-up (bench/fleet.ts) */
const warmUpPerRelay = options.quick ? FLEET_WARM_UP_PER_RELAY.quick : FLEET_WARM_UP_PER_RELAY.full;

// a hard bound on the whole run, whatever happens
const wholeRunBound = setTimeout(() => {
  console.error('bench: gave up after the whole-run bound');
  process.exit(3);
}, (options.quick ? 8 : 25) * (options.mode === 'fleet' ? 2.5 : 1) * 60_000);
wholeRunBound.unref();

const log = (line: string) => console.error(line);
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;

const cpuProfDir = options.profile ? fileURLToPath(new URL('./profiles/', import.meta.url)) : undefined;
if (cpuProfDir) await mkdir(cpuProfDir, { recursive: true });

log(`bench: ${machine()}`);
const postgres = await startBenchPostgres({ statements: options.profile || options.statements });
const receiver = await startReceiver();
const bench: Bench = { pg: postgres, receiver, concurrency: Number(options.concurrency), cpuProfDir, log };
const contenders = [bpdContender, graphileWorkerContender].filter((c) => !options.only || c.name === options.only);

const rounds = runs('burn-down') ? Number(options.rounds ?? plan.rounds) : 0;
const limits: LimitResult[] = [];
const burnDowns: BurnDownResult[] = [];
const openLoops: OpenLoopResult[] = [];
const fleets: FleetResult[] = [];
const noisy: NoisyResult[] = [];
try {
  const body = await sampleBody(postgres.server.url('bench_template'));
  const httpRounds: LimitResult[] = [];
  const dbRounds: LimitResult[] = [];
  const contenderRounds = new Map<string, BurnDownResult[]>(contenders.map((c) => [c.name, []]));
  // rounds in alternating order (A B, then B A), so that neither side always runs
  // first or last on a machine whose load drifts; four of them in a full run: this
  // machine runs at half speed for stretches of a minute or more (BENCHMARKS.md), and
  // two rounds could leave one contender in such a stretch both times
  for (let round = 0; round < rounds; round++) {
    log(`[${elapsed()}] round ${round + 1}: limit: HTTP only, ${plan.limitCount} POSTs`);
    httpRounds.push(await httpLimit(bench, plan.limitCount, body));
    log(`[${elapsed()}] round ${round + 1}: limit: database only, ${plan.limitCount} claims and settles`);
    dbRounds.push(await dbLimit(bench, plan.limitCount));
    for (const contender of round % 2 === 0 ? contenders : [...contenders].reverse()) {
      log(`[${elapsed()}] round ${round + 1}: burn-down: ${contender.name}, ${plan.burnDownCount} changes`);
      contenderRounds.get(contender.name)!.push(await burnDown(bench, contender, plan.burnDownCount, 120_000, Number(options.warm)));
    }
  }
  if (rounds > 0) {
    limits.push(combine(httpRounds), combine(dbRounds));
    for (const results of contenderRounds.values()) burnDowns.push(combine(results));
  }

  for (const [index, rate] of (runs('open-loop') ? plan.rates : []).entries()) {
    for (const contender of index % 2 === 0 ? contenders : [...contenders].reverse()) {
      log(`[${elapsed()}] open loop: ${contender.name} at ${rate}/s for ${plan.seconds}s`);
      openLoops.push(await openLoop(bench, contender, rate, plan.seconds, plan.drainMs));
    }
  }

  // #11: relays on one database; asked for alone (--mode fleet), graphile-worker with
  // as many worker processes too, each number of senders running both in alternating
  // order (its trigger writes the backlogs and warm-ups at about 1.5 ms a change: too
  // slow for the run of every mode)
  const fleetContenders = options.mode === 'fleet' ? contenders : contenders.filter((c) => c === bpdContender);
  if (runs('fleet')) {
    for (const receiverMs of options['receiver-ms'].split(',').map(Number)) {
      // a slow receiver: fewer changes, and the quick warm-up (the cores are not the limit)
      const count = receiverMs > 0 ? Math.round(plan.burnDownCount / 3) : plan.burnDownCount;
      const warmUp = receiverMs > 0 ? FLEET_WARM_UP_PER_RELAY.quick : warmUpPerRelay;
      const relayCounts = options.relays.split(',').map(Number);
      for (let round = 0; round < Number(options['fleet-rounds']); round++) {
        for (const [index, relays] of (round % 2 === 0 ? relayCounts : [...relayCounts].reverse()).entries()) {
          for (const contender of index % 2 === 0 ? fleetContenders : [...fleetContenders].reverse()) {
            log(`[${elapsed()}] fleet, round ${round + 1}: ${contender.name} × ${relays}, ${count} changes to ${options.webhooks} webhook(s), the receiver answering after ${receiverMs} ms`);
            fleets.push(await fleetBurnDown(bench, contender, relays, count, 120_000, { webhooks: Number(options.webhooks), warmUpPerRelay: warmUp, receiverMs }));
          }
        }
      }
    }
  }
  if (runs('noisy-neighbour') && options.only !== 'graphile-worker') {
    // the first of --rates if given: the healthy company's changes per second
    const rate = options.rates ? plan.rates[0]! : 200;
    for (const isNoisy of [false, true]) {
      log(`[${elapsed()}] noisy neighbour: ${isNoisy ? 'beside' : 'without'} a company of silent webhooks, ${rate}/s for ${plan.seconds}s`);
      noisy.push(await noisyNeighbour(bench, { rate, seconds: plan.seconds, noisy: isNoisy, backlogContacts: options.quick ? 300 : 1000 }));
    }
  }
} finally {
  await receiver.stop();
  await postgres.stop();
}

console.log(`## Run of ${machine()}`);
console.log(`\nConcurrency ${bench.concurrency} per contender; Postgres 17 (embedded, default durability); ${options.quick ? 'quick run' : 'full run'} in ${elapsed()}.`);
const burnDownHow = Number(options.warm) > 0
  ? `committed at once while the senders run, each warmed by ${options.warm} deliveries first`
  : 'written with the senders stopped';
if (rounds > 0) console.log(`\n### Burn-down: ${plan.burnDownCount} changes ${burnDownHow}${rounds > 1 ? ` (mean of ${rounds} rounds)` : ''}\n`);
if (rounds > 0) console.log(burnDownTable(burnDowns, limits));
if (openLoops.length > 0) console.log(`\n### Open loop: changes at a fixed rate for ${plan.seconds} s, latency from commit to arrival (after ${OPEN_LOOP_WARM_UP_SECONDS} s at the rate, not measured)\n`);
if (openLoops.length > 0) console.log(openLoopTable(openLoops));
const fleetRows = combineFleet(fleets);
for (const receiverMs of [...new Set(fleetRows.map((r) => r.receiverMs))]) {
  const group = fleetRows.filter((r) => r.receiverMs === receiverMs).sort((a, b) => a.name.localeCompare(b.name) || a.relays - b.relays);
  const answering = receiverMs > 0 ? `, the receiver answering each request after ${receiverMs} ms` : '';
  const rounds = group[0].rounds.length > 1 ? ` (mean of ${group[0].rounds.length} rounds, the numbers of relays in alternating order)` : '';
  console.log(`\n### Fleet: the burn-down of ${group[0].count} changes to ${options.webhooks} webhook(s) with several relays (graphile-worker: worker processes) on one database${answering}, each warmed by ${group[0].warmUpPerRelay} deliveries first${rounds}\n`);
  console.log(fleetTable(group));
}
if (noisy.length > 0) {
  console.log(`\n### Noisy neighbour: the benchmark company's changes while another company's ${NOISY_WEBHOOKS} webhooks hang, one relay at its defaults (after ${OPEN_LOOP_WARM_UP_SECONDS} s at the rate, not measured)\n`);
  console.log(noisyTable(noisy));
}
for (const report of postgres.statementReports) {
  console.log(`\n### Top statements in ${report.database} (pg_stat_statements)\n\n${report.table}`);
}
const results = [...burnDowns, ...openLoops, ...fleets, ...noisy.map((r) => ({ ...r, complete: true }))];
const missing = results.filter((r) => r.complete).reduce((sum, r) => sum + r.missing, 0);
const late = results.filter((r) => !r.complete).reduce((sum, r) => sum + r.missing, 0);
if (late > 0) console.log(`\n**${late} deliveries had not arrived when a time bound ran out** (still queued, see the tables).`);
if (missing > 0) {
  console.log(`\n**${missing} deliveries missing.**`);
  process.exitCode = 1;
}
