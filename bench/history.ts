// `npm run bench:history [-- --deliveries N] [-- --quick]`: what a long history costs
// the outbox (#15; docs/outbox.md). On one embedded Postgres:
//   1. claim and settle p50/p99 on an empty history: rounds of one discovery claim of
//      32 and one settle of those 32 as successes, as the relay's SQL;
//   2. N finished deliveries written into history, results and attempts over the 90
//      days before today (default 10,000,000; --quick 1,000,000), a quarter of them
//      company 1's; bytes per delivery on disk;
//   3. claim and settle p50/p99 again, and the ratio to the empty history;
//   4. the report (webhooks.webhook_report) for the biggest company, as its viewer,
//      once the day counts are rolled up (as maintenance does every hour): 90 days
//      and all time;
//   5. retention dropping the days past 60 days while deliveries are captured at
//      about 1,000/s and claimed and settled: the longest claim (its stall) during
//      the drop, and the drop's own time.
// Figures of one run on this machine; the ratios are what count.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startEmbeddedPostgres } from '../tools/embedded-postgres.ts';
import { maintain } from '../tools/maintain.ts';
import { migrate } from '../tools/migrate.ts';

const { values: options } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    deliveries: { type: 'string' },
    rounds: { type: 'string', default: '400' },
    // stop before the retention step and keep the database until Ctrl-C (to look at it)
    keep: { type: 'boolean', default: false },
  },
});
const DELIVERIES = Number(options.deliveries ?? (options.quick ? 1_000_000 : 10_000_000));
const ROUNDS = Number(options.rounds);
const BATCH = 32;
const COMPANIES = 100;
const WEBHOOKS_PER_COMPANY = 10;
const DAYS = 90;
const LOAD_PER_SECOND = 1_000;

const dataDir = await mkdtemp(join(tmpdir(), 'bpd-bench-history-'));
const server = await startEmbeddedPostgres({ dataDir, fast: true });
const url = server.url();
const client = new pg.Client({ connectionString: url });

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const ms = (value: number) => `${value.toFixed(2)} ms`;

// a payload as capture builds one for contact.updated
const PAYLOAD = (contact: string) => `jsonb_build_object(
  'type', 'contact.updated', 'timestamp', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'data', jsonb_build_object(
    'contact', jsonb_build_object('id', ${contact}, 'email', 'contact' || ${contact} || '@example.com',
                                  'first_name', 'Name ' || ${contact}, 'city', 'City ' || (${contact} % 97)),
    'source', 'import', 'changed_fields', jsonb_build_array('city')))`;

// due deliveries for the claim rounds: spread over every webhook of companies 2..100
async function queueDue(count: number): Promise<void> {
  await client.query(`
    with h as (
      insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload)
      select w.id, w.company_id, 'contact.updated', i, ${PAYLOAD('i')}
      from generate_series(1, ${count}) i
      join webhooks.webhooks w on w.id = (select min(id) from webhooks.webhooks) + ${WEBHOOKS_PER_COMPANY} + i % ${(COMPANIES - 1) * WEBHOOKS_PER_COMPANY}
      returning id, created_at, webhook_id, company_id, action, contact_id
    )
    insert into webhooks.delivery_queue (delivery_id, created_at, webhook_id, company_id, action, contact_id)
    select id, created_at, webhook_id, company_id, action, contact_id from h`);
}

async function claimAndSettleRounds(label: string): Promise<{ claim: number[]; settle: number[] }> {
  // a warm-up of a quarter as many rounds first (caches, plans), not counted
  const warmUp = Math.ceil(ROUNDS / 4);
  await queueDue((ROUNDS + warmUp) * BATCH);
  await client.query('analyze webhooks.delivery_queue');
  const claim: number[] = [];
  const settle: number[] = [];
  for (let round = -warmUp; round < ROUNDS; round++) {
    const t0 = performance.now();
    const { rows } = await client.query(
      `select delivery_id, attempt from webhooks_relay.claim_deliveries('bench-relay', $1, interval '5 minutes', $1)`, [BATCH]);
    const t1 = performance.now();
    const n = rows.length;
    await client.query(
      `select * from webhooks_relay.settle_deliveries('bench-relay', $1::bigint[], $2::int[], array_fill(now(), array[$3::int]),
         array_fill(20, array[$3::int]), array_fill(200, array[$3::int]), array_fill(null::text, array[$3::int]),
         array_fill(null::text, array[$3::int]), array_fill(null::int, array[$3::int]))`,
      [rows.map((r) => r.delivery_id), rows.map((r) => r.attempt), n]);
    const t2 = performance.now();
    if (n === 0) throw new Error(`${label}: round ${round} claimed nothing`);
    if (round < 0) continue;
    claim.push(t1 - t0);
    settle.push(t2 - t1);
  }
  // leave nothing due behind
  await client.query('delete from webhooks.delivery_queue');
  console.log(`${label}: claim of ${BATCH} p50 ${ms(percentile(claim, 50))} p99 ${ms(percentile(claim, 99))}; ` +
    `settle of ${BATCH} p50 ${ms(percentile(settle, 50))} p99 ${ms(percentile(settle, 99))} (${ROUNDS} rounds)`);
  return { claim, settle };
}

// N finished deliveries over the DAYS days before today: one statement per day
async function fillHistory(): Promise<void> {
  const perDay = Math.ceil(DELIVERIES / DAYS);
  await client.query(`select webhooks_private.ensure_day((now() at time zone 'utc')::date - d) from generate_series(1, ${DAYS}) d`);
  const started = performance.now();
  for (let day = DAYS; day >= 1; day--) {
    const lo = (DAYS - day) * perDay + 1;
    const hi = Math.min(DELIVERIES, lo + perDay - 1);
    if (lo > hi) break;
    await client.query(`
      with h as (
        insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
        select c.base + (c.company - 1) * ${WEBHOOKS_PER_COMPANY} + (i / 7) % ${WEBHOOKS_PER_COMPANY}, c.company,
               'contact.updated', i, ${PAYLOAD('i')},
               ((now() at time zone 'utc')::date - ${day})::timestamp at time zone 'utc'
                 + (i - ${lo}) * (interval '1 day' / ${perDay})
        from generate_series(${lo}, ${hi}) i
        cross join lateral (select (select min(id) from webhooks.webhooks) as base,
                                   case when i % 4 = 0 then 1 else 2 + i % ${COMPANIES - 1} end as company) c
        returning id, created_at, webhook_id, company_id
      ),
      r as (
        insert into webhooks.delivery_results
          (delivery_id, created_at, webhook_id, company_id, state, attempts, last_attempt_at, last_status_code, last_error, completed_at)
        select id, created_at, webhook_id, company_id, 'failed', 1, created_at + interval '1 second', 500, 'HTTP 500',
               created_at + interval '1 second'
        from h
        -- one in 50 failed; a success has no result row, as a settle writes it
        where id % 50 = 0
      )
      insert into webhooks.delivery_attempts
        (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code, relay_id)
      select id, created_at, webhook_id, company_id, 1, created_at + interval '1 second', 120,
             case when id % 50 = 0 then 500 else 200 end, 'bench-relay'
      from h`);
    if (day % 10 === 0) {
      const done = hi;
      const seconds = (performance.now() - started) / 1000;
      console.log(`  history: ${done.toLocaleString('en')} of ${DELIVERIES.toLocaleString('en')} (${seconds.toFixed(0)} s)`);
    }
  }
  await client.query('vacuum analyze webhooks.delivery_history, webhooks.delivery_results, webhooks.delivery_attempts');
  console.log(`history of ${DELIVERIES.toLocaleString('en')} written in ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

async function bytesPerDelivery(): Promise<void> {
  const { rows: [size] } = await client.query(`
    select (select count(*) from webhooks.delivery_history)::bigint as deliveries,
           sum(pg_total_relation_size(i.inhrelid)) filter (where i.inhparent = 'webhooks.delivery_history'::regclass)::bigint as history,
           sum(pg_total_relation_size(i.inhrelid)) filter (where i.inhparent = 'webhooks.delivery_results'::regclass)::bigint as results,
           sum(pg_total_relation_size(i.inhrelid)) filter (where i.inhparent = 'webhooks.delivery_attempts'::regclass)::bigint as attempts
    from pg_inherits i`);
  const per = (bytes: string) => (Number(bytes) / Number(size.deliveries)).toFixed(0);
  console.log(`bytes per finished delivery on disk (tables, TOAST and indexes): history ${per(size.history)}, ` +
    `results ${per(size.results)}, attempts ${per(size.attempts)}; ` +
    `all ${((Number(size.history) + Number(size.results) + Number(size.attempts)) / Number(size.deliveries)).toFixed(0)} ` +
    `(${(Number(size.history) + Number(size.results) + Number(size.attempts)) / 2 ** 30 > 1 ? ((Number(size.history) + Number(size.results) + Number(size.attempts)) / 2 ** 30).toFixed(1) + ' GiB' : ''})`);
}

async function reportOfBiggestCompany(): Promise<void> {
  for (const [label, since] of [['90 days', `now() - interval '90 days'`], ['all time', 'null']] as const) {
    const times: number[] = [];
    for (let i = 0; i < 7; i++) {
      await client.query('begin');
      await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', '1', true)`);
      const t0 = performance.now();
      const { rows } = await client.query(`select * from webhooks.webhook_report(${since}, null)`);
      times.push(performance.now() - t0);
      await client.query('commit');
      if (rows.length !== WEBHOOKS_PER_COMPANY) throw new Error(`report: ${rows.length} webhooks`);
    }
    console.log(`report of the biggest company (${(DELIVERIES / 4).toLocaleString('en')} deliveries), ${label}: ` +
      `median ${ms(percentile(times, 50))}, slowest ${ms(Math.max(...times))} (7 runs)`);
  }
}

// retention of 60 days under load: captures at LOAD_PER_SECOND through the one enqueue,
// a relay's claims and settles, and maintain() dropping the days past it
async function retentionUnderLoad(): Promise<void> {
  const { rows: [{ name }] } = await client.query('select current_database() as name');
  await client.query(`alter database ${name} set webhooks.retention = '60 days'`);
  await client.query('call webhooks.roll_up_report_counts()');
  const producer = new pg.Client({ connectionString: url });
  const consumer = new pg.Client({ connectionString: url });
  await producer.connect();
  await consumer.connect();
  let running = true;
  let captured = 0;
  const claims: Array<{ at: number; ms: number }> = [];
  const produce = (async () => {
    const started = performance.now();
    while (running) {
      // 100 deliveries every 100 ms, each through webhooks_private.enqueue
      await producer.query(`
        select webhooks_private.enqueue(w.id, w.company_id, 'contact.updated', i, ${PAYLOAD('i')}, null)
        from generate_series(1, 100) i
        join webhooks.webhooks w on w.id = (select min(id) from webhooks.webhooks) + ${WEBHOOKS_PER_COMPANY} + i % 100`);
      captured += 100;
      const wait = started + (captured / LOAD_PER_SECOND) * 1000 - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  })();
  const consume = (async () => {
    while (running) {
      const t0 = performance.now();
      const { rows } = await consumer.query(
        `select delivery_id, attempt from webhooks_relay.claim_deliveries('bench-load', $1, interval '5 minutes', $1)`, [BATCH * 4]);
      claims.push({ at: t0, ms: performance.now() - t0 });
      if (rows.length > 0) {
        await consumer.query(
          `select * from webhooks_relay.settle_deliveries('bench-load', $1::bigint[], $2::int[], array_fill(now(), array[$3::int]),
             array_fill(20, array[$3::int]), array_fill(200, array[$3::int]), array_fill(null::text, array[$3::int]),
             array_fill(null::text, array[$3::int]), array_fill(null::int, array[$3::int]))`,
          [rows.map((r) => r.delivery_id), rows.map((r) => r.attempt), rows.length]);
      } else {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  })();
  // the load for a few seconds first, then the drop
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  const before = claims.length;
  const dropStarted = performance.now();
  const result = await maintain(url);
  const dropEnded = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  running = false;
  await Promise.all([produce, consume]);
  await producer.end();
  await consumer.end();
  const during = claims.filter((c) => c.at + c.ms >= dropStarted && c.at <= dropEnded).map((c) => c.ms);
  const outside = claims.slice(0, before).map((c) => c.ms);
  console.log(`retention under ${LOAD_PER_SECOND}/s: ${result.daysDropped.length} days dropped in ` +
    `${((dropEnded - dropStarted) / 1000).toFixed(1)} s; claims during the drop: ${during.length}, longest ${ms(Math.max(...during))}, ` +
    `p99 ${ms(percentile(during, 99))}; before it: p99 ${ms(percentile(outside, 99))}, longest ${ms(Math.max(...outside))}; ` +
    `${captured.toLocaleString('en')} captured in all`);
}

try {
  await migrate(url);
  await client.connect();
  console.log(`bench:history: ${DELIVERIES.toLocaleString('en')} finished deliveries, ${COMPANIES} companies × ${WEBHOOKS_PER_COMPANY} webhooks, ` +
    `${ROUNDS} rounds of claim ${BATCH} + settle ${BATCH}`);
  await client.query(`
    insert into crm.companies (id, name) select c, 'Company ' || c from generate_series(1, ${COMPANIES}) c;
    insert into webhooks.webhooks (company_id, name, url, fields, actions)
    select c, 'Hook ' || n, 'https://receiver.example.com/' || c || '/' || n, '{first_name,email,city}', '{contact.updated}'
    from generate_series(1, ${COMPANIES}) c, generate_series(1, ${WEBHOOKS_PER_COMPANY}) n
    order by c, n;`);
  const empty = await claimAndSettleRounds('empty history');
  await fillHistory();
  await bytesPerDelivery();
  const full = await claimAndSettleRounds(`${DELIVERIES.toLocaleString('en')} in history`);
  console.log(`ratio to the empty history: claim p99 ${(percentile(full.claim, 99) / percentile(empty.claim, 99)).toFixed(2)}×, ` +
    `settle p99 ${(percentile(full.settle, 99) / percentile(empty.settle, 99)).toFixed(2)}×`);
  // the report as it reads in steady state: the hourly roll-up of day counts done
  // (the first one counts every webhook's days of the whole history)
  const rollUpStarted = performance.now();
  const { rows: [{ days }] } = await client.query('call webhooks.roll_up_report_counts()');
  console.log(`first roll-up of the day counts: ${Number(days).toLocaleString('en')} webhook days in ${((performance.now() - rollUpStarted) / 1000).toFixed(1)} s`);
  await reportOfBiggestCompany();
  if (options.keep) {
    console.log(`kept until Ctrl-C: ${url}`);
    await new Promise((resolve) => process.once('SIGINT', resolve));
  } else {
    await retentionUnderLoad();
  }
} finally {
  await client.end().catch(() => {});
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
}
