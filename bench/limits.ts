// The machine's limits, each measured in a child process of its own:
//   http: the same ~1 KiB body, signed and POSTed to the receiver by the relay's own
//         sender (relay/deliver.ts, with the relay's settings and V8 flags) at the
//         contenders' concurrency, as fast as it goes; no database.
//   db:   the relay's own claim and settle (webhooks_relay.claim_deliveries and
//         settle_deliveries, through the relay's own modules and settings, claims as
//         large as the relay's) over a pre-filled outbox, every claimed row settled as
//         delivered (204) at once, without any HTTP.
// A contender that delivers through both can at best reach the lower of the two.
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { analyse, upTo } from './analysis.ts';
import { serveChild, spawnChild } from './child.ts';
import { now } from './clock.ts';
import { postgresCpuSeconds } from './cpu.ts';
import { writeChanges } from './database.ts';
import { BENCH_SECRET } from './http.ts';
import { Sender } from '../relay/deliver.ts';
import type { Bench, LimitResult } from './modes.ts';
import { claimDeliveries } from '../relay/queries.ts';
import { claimPool, relayPool } from '../relay/database.ts';
import { relayLogger } from '../relay/log.ts';
import { settleBatchSize, Settler } from '../relay/settle.ts';
import { benchRelaySettings, bpdContender } from './contenders/bpd.ts';
import { within } from './within.ts';

const self = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------- children

async function httpLimitChild(): Promise<void> {
  const url = `${process.env.RECEIVER_ORIGIN!}${process.env.RECEIVER_PATH!}`;
  const concurrency = Number(process.env.CONCURRENCY);
  const total = Number(process.env.COUNT);
  // the body with "seq":0, as the relay would send change 0
  const template = process.env.BODY!;
  // (the sender needs no database; the settings' reader insists on one)
  const sender = new Sender(benchRelaySettings({ ...process.env, DATABASE_URL: 'postgres://unused' }));
  let next = 1;
  let failures = 0;

  async function lane(last: number): Promise<void> {
    while (next <= last) {
      const seq = next++;
      const body = template.replace('"seq":0', `"seq":${seq}`);
      const { outcome } = await sender.send({
        deliveryId: String(seq), messageId: `msg_limit_${seq}`, webhookId: '1', companyId: '1', attempt: 1, url, body,
        secret: BENCH_SECRET, previousSecrets: [], sendAt: null, sendUntil: null,
      });
      if (outcome.kind !== 'response' || outcome.status !== 204) failures++;
    }
  }
  const lanes = (last: number) => Promise.all(Array.from({ length: concurrency }, () => lane(last)));

  await serveChild(async (finished) => ({
    async start() {
      // warm up (connections open, code optimised) before the clock starts, as the
      // contenders are warm after their first deliveries
      const warmUp = Math.min(1000, Math.floor(total / 5));
      await lanes(warmUp);
      const started = now();
      void lanes(total).then(() => finished({ elapsedMs: now() - started, done: total - warmUp, failures }));
    },
    async stop() {
      await sender.close();
    },
  }));
}

async function dbLimitChild(): Promise<void> {
  const settings = benchRelaySettings();
  const total = Number(process.env.COUNT);
  const log = relayLogger(settings.relayId, 'warn');
  const pool = relayPool({ databaseUrl: settings.databaseUrl, role: settings.databaseRole, log, queryTimeoutMs: settings.databaseQueryTimeoutMs });
  // (claims on a connection of their own, as the relay's: relay/database.ts claimPool)
  const claims = claimPool({ databaseUrl: settings.databaseUrl, role: settings.databaseRole, log, queryTimeoutMs: settings.databaseQueryTimeoutMs });
  await Promise.all([pool.query('select 1'), claims.query('select 1')]);
  // settles as large as the relay's (two claims' worth)
  const settler = new Settler({ db: pool, relayId: settings.relayId, log, batchSize: settleBatchSize(settings.batchSize) });
  let claimed = 0;

  async function run(deadline: number): Promise<void> {
    let refill: string[] = [];
    while (claimed < total && now() < deadline) {
      const only = refill.length > 0 ? refill : null;
      const { jobs } = await claimDeliveries(claims, {
        relayId: settings.relayId,
        limit: Math.min(settings.batchSize, settings.maxInFlight),
        leaseMs: settings.leaseMs,
        // claims as large as the relay's for a webhook whose requests end at once: its
        // cap is then its request slots and two batches queued (Slots.queueCap), so a
        // claim takes a whole batch (until 2026-12-04 the cap was the request slots
        // alone: claims of 32 where the relay's were about 195)
        perWebhookCap: settings.perWebhookInFlight + 2 * settings.batchSize,
        capByWebhook: new Map(),
        heldByWebhook: new Map(),
        only,
        slots: settings.maxInFlight,
        heldBytesByWebhook: new Map(),
        companyByWebhook: new Map(),
        byteBudget: settings.maxHeldBytes,
      });
      refill = [...new Set(jobs.map((job) => job.webhookId))];
      if (jobs.length === 0 && only === null) break;
      claimed += jobs.length;
      const attemptedAt = new Date();
      for (const job of jobs) {
        settler.add({
          job,
          attemptedAt,
          durationMs: 0,
          outcome: { kind: 'response', status: 204, bodyExcerpt: '', retryAfterSeconds: null, note: null },
        });
      }
      // let the settle of this batch start before the next claim, as a send would
      await new Promise((resolve) => setImmediate(resolve));
    }
    await settler.drain(30_000);
  }

  await serveChild(async (finished) => ({
    start() {
      const started = now();
      void run(started + 120_000).then(() => finished({ elapsedMs: now() - started, done: claimed, failures: total - claimed }));
    },
    async stop() {
      settler.stop();
      await Promise.all([pool.end(), claims.end()]);
    },
  }));
}

// ---------------------------------------------------------------- parent side

export async function httpLimit(bench: Bench, count: number, body: string): Promise<LimitResult> {
  await bench.receiver.take();
  const child = await spawnChild(self, {
    name: 'limit-http',
    env: {
      LIMIT: 'http',
      RECEIVER_ORIGIN: bench.receiver.origin,
      RECEIVER_PATH: new URL(bench.receiver.url).pathname,
      CONCURRENCY: String(bench.concurrency),
      COUNT: String(count),
      BODY: body,
    },
    // the relay's V8 flags, as the database-only limit has them: the two halves of the
    // relay measured as the relay runs them (its small young generation collects
    // garbage more often than V8's default)
    execArgv: bpdContender.execArgv,
    cpuProfDir: bench.cpuProfDir,
  });
  await child.go();
  const done = await within(child.done, 120_000, 'the HTTP limit');
  const stats = await child.stop();
  const delivery = analyse(await bench.receiver.take(), upTo(count));
  return {
    name: 'limit: HTTP only',
    rounds: [(done.done * 1000) / done.elapsedMs],
    count: delivery.delivered,
    perSecond: (done.done * 1000) / done.elapsedMs,
    missing: delivery.missing,
    cpuPer1k: (stats.cpuSeconds * 1000) / count,
    pgCpuPer1k: 0,
    peakRssMb: stats.peakRssMb,
    extra: stats.extra,
  };
}

export async function dbLimit(bench: Bench, count: number): Promise<LimitResult> {
  const clone = await bench.pg.clone('limit_db');
  try {
    await bpdContender.prepare(clone.url, bench.receiver.url);
    await writeChanges(clone.url, 1, count);
    const child = await spawnChild(self, {
      name: 'limit-db',
      env: { LIMIT: 'db', DATABASE_URL: clone.url, CONCURRENCY: String(bench.concurrency), COUNT: String(count) },
      execArgv: bpdContender.execArgv,
      cpuProfDir: bench.cpuProfDir,
    });
    const pgBefore = postgresCpuSeconds(bench.pg.pid);
    await child.go();
    const done = await within(child.done, 130_000, 'the database limit');
    const pgCpu = postgresCpuSeconds(bench.pg.pid) - pgBefore;
    const stats = await child.stop();
    const { rows } = await onClone(clone.url, "select count(*)::int as n from webhooks.deliveries where state = 'succeeded'");
    return {
      name: 'limit: database only',
      rounds: [(done.done * 1000) / done.elapsedMs],
      count: rows[0].n,
      perSecond: (done.done * 1000) / done.elapsedMs,
      missing: count - rows[0].n,
      cpuPer1k: (stats.cpuSeconds * 1000) / count,
      pgCpuPer1k: (pgCpu * 1000) / count,
      peakRssMb: stats.peakRssMb,
      extra: stats.extra,
    };
  } finally {
    await clone.drop();
  }
}

async function onClone(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

if (process.env.BENCH_CHILD === self) {
  if (process.env.LIMIT === 'http') await httpLimitChild();
  else if (process.env.LIMIT === 'db') await dbLimitChild();
  else throw new Error(`unknown LIMIT ${process.env.LIMIT}`);
}
