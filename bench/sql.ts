// `npm run bench:sql`: what the relay's SQL costs Postgres per delivery, statement by
// statement, with nothing else running. The burn-down's backlog (bench/database.ts:
// the bench's template, its webhook and 30,000 changes of about 1 KiB each) is drained
// over one connection by the relay's own claim and settle (relay/queries.ts), claims
// as large as the relay's, each settled before the next claim, no HTTP. Prints:
//   - the backend's CPU per delivery (user and system, from /proc);
//   - the statements by time (pg_stat_statements, nested ones included: lane_claim's
//     within the claim's): execution and planning per delivery. A statement's time
//     counts its nested ones' but not their executor start-up, which pg_stat_statements
//     does not time; the backend's CPU outside the top-level statements is shown apart;
//   - what turning the stored payloads (jsonb) into the text the relay sends costs per
//     delivery, measured on the same rows.
// A benchmark, not a test. Knobs: --count N (30000), --batch N (the relay's
// RELAY_BATCH_SIZE default), --rounds N (2: the figures are each round's), --fields
// a,b,… (the contact fields the webhook sends: the bench's ten by default, a body of
// about 1 KiB; `--fields email` makes payloads of about 200 bytes).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { claimDeliveries, settleDeliveries, type DeliveryJob } from '../relay/queries.ts';
import { relaySettings } from '../relay/settings.ts';
import { installWebhook } from './contenders/bpd.ts';
import { onDatabase, startBenchPostgres, WEBHOOK_FIELDS, writeChanges } from './database.ts';

const { values: options } = parseArgs({
  options: {
    count: { type: 'string', default: '30000' },
    batch: { type: 'string', default: String(relaySettings({ DATABASE_URL: 'postgres://unused' }).batchSize) },
    rounds: { type: 'string', default: '2' },
    fields: { type: 'string', default: WEBHOOK_FIELDS.join(',') },
  },
});
const COUNT = Number(options.count);
const BATCH = Number(options.batch);
const FIELDS = options.fields.split(',');
const RELAY_ID = 'bench-sql';

/** User and system CPU of one process, in ms (USER_HZ = 100). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** A claim as the relay asks it when it holds nothing: every webhook, the whole batch. */
const claim = (db: pg.Client) =>
  claimDeliveries(db, {
    relayId: RELAY_ID,
    limit: BATCH,
    leaseMs: 60_000,
    perWebhookCap: BATCH,
    capByWebhook: new Map(),
    heldByWebhook: new Map(),
    only: null,
    slots: BATCH * 2,
    heldBytesByWebhook: new Map(),
    companyByWebhook: new Map(),
    byteBudget: null,
  });

/** Every job a success, as a receiver answering 204 at once would make it. */
async function settle(db: pg.Client, jobs: DeliveryJob[]): Promise<void> {
  const attemptedAt = new Date();
  const settled = await settleDeliveries(db, RELAY_ID, jobs.map((job) => ({
    deliveryId: job.deliveryId, attempt: job.attempt, attemptedAt, durationMs: 1, statusCode: 204,
    error: null, responseBody: null, retryAfterSeconds: null, url: null,
  })));
  if (settled.size !== jobs.length) throw new Error(`settled ${settled.size} of ${jobs.length}`);
}

const microseconds = (ms: number, deliveries: number) => ((ms * 1000) / deliveries).toFixed(1);

const bench = await startBenchPostgres({ statements: true });
try {
  console.log(`bench:sql: ${COUNT} deliveries, claims of up to ${BATCH}, the webhook's fields ${FIELDS.join(', ')}, one connection, no HTTP`);
  for (let round = 1; round <= Number(options.rounds); round++) {
    const clone = await bench.clone('sql');
    try {
      await installWebhook(clone.url, 'http://127.0.0.1:9/unused', FIELDS);
      await writeChanges(clone.url, 1, COUNT);
      await onDatabase(clone.url, (c) => c.query('select pg_stat_statements_reset()'));
      const relay = new pg.Client({ connectionString: clone.url, options: '-c synchronous_commit=off -c role=bpd_webhooks_relay' });
      await relay.connect();
      const backend = (relay as unknown as { processID: number }).processID;
      const cpuBefore = cpuMs(backend);
      let delivered = 0;
      let claims = 0;
      for (;;) {
        const { jobs } = await claim(relay);
        claims++;
        if (jobs.length === 0) break;
        await settle(relay, jobs);
        delivered += jobs.length;
      }
      const backendMs = cpuMs(backend) - cpuBefore;
      await relay.end();
      console.log(`\nround ${round}: ${delivered} delivered in ${claims} claims; the backend's CPU: ` +
        `**${microseconds(backendMs, delivered)} µs a delivery**`);
      console.log(await statementTable(clone.url, delivered, backendMs));
      console.log(`- turning the payloads into text: ${(await payloadText(clone.url, delivered)).toFixed(1)} µs a delivery ` +
        '(`payload::text` of the delivered rows against reading them alone)');
    } finally {
      await clone.drop();
    }
  }
} finally {
  await bench.stop();
}

/** The relay's statements by time, per delivery, and the part no statement accounts for. */
async function statementTable(url: string, delivered: number, backendMs: number): Promise<string> {
  return onDatabase(url, async (c) => {
    const { rows } = await c.query(
      `select s.toplevel, s.calls, s.total_exec_time as exec_ms, s.total_plan_time as plan_ms,
              regexp_replace(left(s.query, 90), '\\s+', ' ', 'g') as query
       from pg_stat_statements s
       where s.dbid = (select oid from pg_database where datname = current_database())
         and s.query not like '%pg_stat_statements%'
       order by s.total_exec_time desc`,
    );
    const top = rows.filter((r) => r.toplevel);
    const nested = rows.filter((r) => !r.toplevel);
    const sum = (list: typeof rows, key: 'exec_ms' | 'plan_ms') => list.reduce((total, r) => total + r[key], 0);
    const line = (cells: unknown[]) => `| ${cells.join(' | ')} |`;
    return [
      line(['level', 'calls', 'execution µs a delivery', 'planning µs a delivery', 'statement']),
      line(['---', '---:', '---:', '---:', '---']),
      ...rows.filter((r) => r.exec_ms + r.plan_ms >= 0.01 * sum(top, 'exec_ms')).map((r) => line([
        r.toplevel ? 'top' : 'nested', r.calls, microseconds(r.exec_ms, delivered), microseconds(r.plan_ms, delivered),
        `\`${String(r.query).replaceAll('|', '\\|')}\``])),
      line(['', '', `**${microseconds(backendMs - sum(top, 'exec_ms') - sum(top, 'plan_ms'), delivered)}**`, '',
        'the backend\'s CPU outside the top-level statements\' execution: parameters, rows sent, commits']),
    ].join('\n');
  });
}

/** µs per delivery that `payload::text` adds to reading the delivered rows, best of three. */
async function payloadText(url: string, delivered: number): Promise<number> {
  return onDatabase(url, async (c) => {
    const timed = async (expression: string) => {
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const { rows } = await c.query(
          `explain (analyze, timing off, format json) select ${expression} from webhooks.delivery_history h`);
        const ms = rows[0]['QUERY PLAN'][0]['Execution Time'];
        best = Math.min(best, ms);
      }
      return best;
    };
    return ((await timed('sum(length(h.payload::text))')) - (await timed('count(h.payload)'))) * 1000 / delivered;
  });
}
