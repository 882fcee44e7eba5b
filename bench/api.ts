// `npm run bench:api`: how fast the admin API answers the Reports page with
// 1,000,000 delivery rows in the table.
//
// Data: 100 companies × 10 webhooks; 1,000,000 deliveries over the last 90 days, a
// quarter of them (250,000) of company 1, the "big" one, the rest spread evenly over
// the 99 others (~7,600 each); states 90 % succeeded, 8 % failed, and 2 % pending if of
// the last day, failed if older (bench/api-data.ts). Beside them, a company of 100
// webhooks (as many as a company may have) with 100,000 deliveries over the 90 days.
// And 1,000 quiet companies of 10 webhooks each: 7 in 10 never fired, the rest a few
// times 60 to 80 days ago (what the roll-up visits only once a day).
// Written by one INSERT … SELECT generate_series, then put in the shape the relay
// leaves (an attempt per finished delivery, a result row per failure only:
// bench/api-data.ts), then VACUUM ANALYZE (as autovacuum
// would do for a real table) so the report can count from the index alone.
//
// Then the report is measured once before the daily counts are rolled up (every
// delivery counted from the outbox), the roll-up is timed (the first, the next with
// nothing new, and the first of a new day, which visits every webhook again), and
// the rest measured with the counts in place, as the API server keeps them.
//
// Measured, each as the median and 95th percentile of RUNS requests after a warm-up:
//   SQL    the report query alone, in a transaction with the request's role and
//          claims (what the database does: row-level security included); for history
//          only HTTP is shown, as PostGraphile's own query is what matters there
//   HTTP   the same through the running API: a real POST /graphql with a bearer token
//          (JWT check, GraphQL planning, JSON), one request at a time
// for: the report of a typical and of the big company over 30 and 90 days, and one
// page (25 rows) of a webhook's history, first page and a page deep inside.
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { AS_THE_RELAY_LEAVES_THEM, deliveriesFill } from './api-data.ts';
import { signToken } from '../api/auth.ts';
import { authenticatorUrl } from '../api/authenticator.ts';
import { MAX_OFFSET } from '../api/limits.ts';
import { startApi } from '../api/server.ts';
import { freePort, startEmbeddedPostgres } from '../tools/embedded-postgres.ts';
import { migrate } from '../tools/migrate.ts';

const quick = process.argv.includes('--quick');
const RUNS = quick ? 20 : 100;
const WARMUP = 10;
const DELIVERIES = quick ? 200_000 : 1_000_000;
const COMPANIES = 100;
const WEBHOOKS_PER_COMPANY = 10;
const TARGET_MS = 50;
// the company of as many webhooks as a company may have (webhooks.max_webhooks_per_company)
const WIDE_COMPANY = COMPANIES + 1;
const WIDE_WEBHOOKS = 100;
const WIDE_DELIVERIES = quick ? 30_000 : 100_000;
// companies whose webhooks are quiet, numbered from QUIET_FIRST
const QUIET_COMPANIES = quick ? 200 : 1_000;
const QUIET_FIRST = 1_001;

const dataDir = await mkdtemp(join(tmpdir(), 'bpd-bench-api-'));
const server = await startEmbeddedPostgres({ dataDir, fast: true });
const url = server.url();
const pool = new pg.Pool({ connectionString: url, max: 2 });
pool.on('error', () => {}); // idle connections hear the server stop at the end
let api: Awaited<ReturnType<typeof startApi>> | undefined;

try {
  await migrate(url);
  const loadStarted = performance.now();
  await pool.query(`
    insert into crm.companies (id, name) select c, 'Company ' || c from generate_series(1, ${COMPANIES}) c;
    insert into webhooks.webhooks (company_id, name, url, fields, actions, created_at)
    select c, 'Hook ' || n, 'https://receiver.example.com/' || c || '/' || n, '{first_name,email}',
           '{contact.created,contact.updated}', now() - interval '120 days' + n * interval '1 hour'
    from generate_series(1, ${COMPANIES}) c, generate_series(1, ${WEBHOOKS_PER_COMPANY}) n;`);
  await pool.query(deliveriesFill(DELIVERIES, WEBHOOKS_PER_COMPANY));
  // and a company with as many webhooks as a company may have, each firing alike:
  // the report counts every webhook's rest from the rows (50_report_counts.sql)
  await pool.query(`
    insert into crm.companies (id, name) values (${WIDE_COMPANY}, 'Wide');
    insert into webhooks.webhooks (company_id, name, url, fields, actions, created_at)
    select ${WIDE_COMPANY}, 'Hook ' || n, 'https://receiver.example.com/wide/' || n, '{first_name,email}',
           '{contact.created}', now() - interval '120 days'
    from generate_series(1, ${WIDE_WEBHOOKS}) n;
    insert into webhooks.deliveries
      (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, last_status_code, created_at)
    select w.id, w.company_id, 'contact.created', i, '{"type": "contact.created"}',
           case when i % 10 = 0 then 'failed' else 'succeeded' end, 1, t.at + interval '1 second',
           case when i % 10 = 0 then 500 else 200 end, t.at
    from generate_series(1, ${WIDE_DELIVERIES}) i
    cross join lateral (select now() - (i::float8 / ${WIDE_DELIVERIES}) * interval '90 days' as at) t
    join webhooks.webhooks w on w.company_id = ${WIDE_COMPANY} and w.name = 'Hook ' || (1 + i % ${WIDE_WEBHOOKS});`);
  await pool.query(`
    insert into crm.companies (id, name)
    select ${QUIET_FIRST} + g, 'Quiet ' || g from generate_series(0, ${QUIET_COMPANIES - 1}) g;
    insert into webhooks.webhooks (company_id, name, url, fields, actions, created_at)
    select ${QUIET_FIRST} + g, 'Hook ' || n, 'https://receiver.example.com/quiet/' || g || '/' || n, '{first_name,email}',
           '{contact.created}', now() - interval '120 days'
    from generate_series(0, ${QUIET_COMPANIES - 1}) g, generate_series(1, ${WEBHOOKS_PER_COMPANY}) n;
    insert into webhooks.deliveries
      (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, last_status_code, created_at)
    select w.id, w.company_id, 'contact.created', 1, '{"type": "contact.created"}', 'succeeded', 1,
           t.at + interval '1 second', 200, t.at
    from webhooks.webhooks w
    cross join lateral generate_series(now() - interval '80 days', now() - interval '60 days', interval '2 days') t(at)
    where w.company_id >= ${QUIET_FIRST} and w.id % 10 < 3;`);
  await pool.query(AS_THE_RELAY_LEAVES_THEM);
  await pool.query('vacuum analyze webhooks.delivery_history, webhooks.delivery_queue, webhooks.delivery_results, webhooks.delivery_attempts, webhooks.webhooks');
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  const { rows: [counts] } = await pool.query(
    `select count(*)::int as total, count(*) filter (where company_id = 1)::int as big, count(*) filter (where company_id = 2)::int as typical
     from webhooks.deliveries`);

  const jwtSecret = 'bench-secret-of-enough-length-for-hs256';
  api = await startApi({
    databaseUrl: await authenticatorUrl(url, 'bench-authenticator'),
    jwtSecret,
    port: await freePort(),
    poolSize: 2,
    // rolled up below, once, where it can be timed
    reportCountsEveryMs: 0,
  });

  const REPORT = `query($since: Datetime, $until: Datetime) { webhookReport(since: $since, until: $until) {
    nodes { webhookId name url actions createdAt enabled timesFired timesSucceeded timesFailed timesPending } } }`;
  const HISTORY = `query($id: BigInt!, $after: Cursor, $afterCreatedAt: Datetime, $afterId: BigInt, $offset: Int) {
    webhookById(id: $id) { history(first: 25, after: $after, afterCreatedAt: $afterCreatedAt, afterId: $afterId, offset: $offset) {
    pageInfo { hasNextPage endCursor } nodes { id state attempts lastStatusCode lastError createdAt payload } } } }`;

  const ago = (days: number) => new Date(Date.now() - days * 86_400_000).toISOString();
  const hookOf = async (company: number) =>
    (await pool.query('select min(id)::text as id from webhooks.webhooks where company_id = $1', [company])).rows[0].id as string;
  const tokens = new Map<number, string>();
  const tokenOf = async (company: number) => {
    if (!tokens.has(company)) tokens.set(company, await signToken(jwtSecret, { companyId: company, role: 'webhook_viewer' }));
    return tokens.get(company)!;
  };

  async function http(company: number, query: string, variables: Record<string, unknown>) {
    const response = await fetch(`${api!.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${await tokenOf(company)}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await response.json()) as { data?: any; errors?: unknown };
    if (body.errors) throw new Error(JSON.stringify(body.errors));
    return body.data;
  }

  const sqlClient = await pool.connect();
  async function sql(company: number, text: string, params: unknown[]) {
    await sqlClient.query('begin');
    try {
      await sqlClient.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [String(company)]);
      return (await sqlClient.query(text, params)).rows;
    } finally {
      await sqlClient.query('commit');
    }
  }

  async function timed(work: () => Promise<unknown>): Promise<{ p50: number; p95: number }> {
    for (let i = 0; i < WARMUP; i++) await work();
    const samples: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const started = performance.now();
      await work();
      samples.push(performance.now() - started);
    }
    samples.sort((a, b) => a - b);
    return { p50: samples[Math.floor(samples.length / 2)], p95: samples[Math.ceil(samples.length * 0.95) - 1] };
  }

  // a cursor deep in the big company's first webhook's history: 40 pages in
  const deepHook = await hookOf(1);
  let deepCursor: string | null = null;
  for (let i = 0; i < 40; i++) {
    deepCursor = (await http(1, HISTORY, { id: deepHook, after: deepCursor })).webhookById.history.pageInfo.endCursor;
  }

  const reportSql = 'select * from webhooks.webhook_report($1, $2)';
  const cases: Array<{ name: string; rows: string; sql?: () => Promise<unknown>; http: () => Promise<unknown> }> = [];
  for (const [label, company] of [['typical company', 2], ['big company', 1], [`company of ${WIDE_WEBHOOKS} webhooks`, WIDE_COMPANY]] as const) {
    for (const days of [30, 90]) {
      const since = ago(days);
      const inRange = (await pool.query('select count(*)::int as n from webhooks.deliveries where company_id = $1 and created_at >= $2', [company, since])).rows[0].n;
      cases.push({
        name: `report, ${label}, ${days} days`,
        rows: `${inRange.toLocaleString('en')} in range`,
        sql: () => sql(company, reportSql, [since, null]),
        http: () => http(company, REPORT, { since }),
      });
    }
  }
  const typicalHook = await hookOf(2);
  cases.push({
    name: 'history, first page of 25',
    rows: 'big company\'s webhook',
    http: () => http(1, HISTORY, { id: deepHook }),
  });
  cases.push({
    name: 'history, page 41 of 25 (cursor)',
    rows: 'big company\'s webhook',
    http: () => http(1, HISTORY, { id: deepHook, after: deepCursor }),
  });
  // the middle of its history: the page after the row half way down, and the same page by an offset
  const { rows: [middle] } = await pool.query(
    'select (count(*) / 2)::int as offset from webhooks.delivery_history where webhook_id = $1', [deepHook]);
  const { rows: [halfWay] } = await pool.query(
    `select id::text, to_char(created_at at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as created_at
     from webhooks.delivery_history where webhook_id = $1 order by created_at desc, id desc offset $2 limit 1`,
    [deepHook, middle.offset - 1]);
  cases.push({
    name: `history, page of 25 after row ${Number(middle.offset).toLocaleString('en')} (afterCreatedAt, afterId)`,
    rows: 'big company\'s webhook',
    http: () => http(1, HISTORY, { id: deepHook, afterCreatedAt: halfWay.created_at, afterId: halfWay.id }),
  });
  // an offset is refused past MAX_OFFSET: the deepest one allowed, if the middle is deeper
  const offset = Math.min(Number(middle.offset), MAX_OFFSET);
  cases.push({
    name: `history, page of 25 after row ${offset.toLocaleString('en')} (offset)`,
    rows: 'big company\'s webhook',
    http: () => http(1, HISTORY, { id: deepHook, offset }),
  });
  cases.push({
    name: 'history, first page of 25',
    rows: 'typical company\'s webhook',
    http: () => http(2, HISTORY, { id: typicalHook }),
  });

  const results: string[] = [];
  // first without daily counts (every delivery counted from the outbox), then roll up
  const bigSince = ago(90);
  const unrolled = await timed(() => sql(1, reportSql, [bigSince, null]));
  const unrolledHttp = await timed(() => http(1, REPORT, { since: bigSince }));
  results.push(`| report, big company, 90 days, before any roll-up (all counted from the outbox) | all of its ${counts.big.toLocaleString('en')} | ${unrolled.p50.toFixed(1)} / ${unrolled.p95.toFixed(1)} | ${unrolledHttp.p50.toFixed(1)} / ${unrolledHttp.p95.toFixed(1)} | |`);
  const rollUp = async () => {
    const started = performance.now();
    const { rows: [row] } = await pool.query('call webhooks.roll_up_report_counts()');
    return { ms: performance.now() - started, days: row.days as number, visited: row.visited as number };
  };
  const firstRollUp = await rollUp();
  const dayRows = (await pool.query('select count(*)::int as n from webhooks.delivery_day_counts')).rows[0].n as number;
  const nothingNew = await rollUp();
  // the first roll-up of a new day (as if the last to go through every webhook had
  // been a day earlier): it visits the webhooks with deliveries since
  await pool.query('update webhooks_private.report_counts_rolled_up set counted_before = counted_before - 1');
  const newDay = await rollUp();

  for (const c of cases) {
    const viaSql = c.sql ? await timed(c.sql) : undefined;
    const viaHttp = await timed(c.http);
    results.push(`| ${c.name} | ${c.rows} | ${viaSql ? `${viaSql.p50.toFixed(1)} / ${viaSql.p95.toFixed(1)}` : '–'} | ${viaHttp.p50.toFixed(1)} / ${viaHttp.p95.toFixed(1)} | ${c.name.startsWith('report') ? (viaHttp.p50 < TARGET_MS ? 'yes' : 'NO') : ''} |`);
  }
  sqlClient.release();

  console.log(`bench:api: ${counts.total.toLocaleString('en')} deliveries (big company ${counts.big.toLocaleString('en')}, typical ${counts.typical.toLocaleString('en')}), ` +
    `${COMPANIES * WEBHOOKS_PER_COMPANY} webhooks and ${WIDE_WEBHOOKS} more of one company, which has ${WIDE_DELIVERIES.toLocaleString('en')} of the deliveries, ` +
    `and ${(QUIET_COMPANIES * WEBHOOKS_PER_COMPANY).toLocaleString('en')} quiet webhooks; loaded in ${loadSeconds.toFixed(1)} s; ${RUNS} runs each after ${WARMUP} warm-up; ` +
    `${cpus().length} CPUs, Postgres without fsync.`);
  const webhooks = (await pool.query('select count(*)::int as n from webhooks.webhooks')).rows[0].n as number;
  console.log(`first roll-up of the daily counts: ${firstRollUp.days.toLocaleString('en')} webhook-days in ${(firstRollUp.ms / 1000).toFixed(1)} s ` +
    `(${dayRows.toLocaleString('en')} rows: days with deliveries), ` +
    `${firstRollUp.visited.toLocaleString('en')} webhooks visited; the next, nothing new: ${nothingNew.ms.toFixed(0)} ms, ` +
    `${nothingNew.visited.toLocaleString('en')} of the ${webhooks.toLocaleString('en')} webhooks visited; ` +
    `the first of a new day: ${newDay.ms.toFixed(0)} ms, ${newDay.visited.toLocaleString('en')} visited.`);
  console.log('');
  console.log(`| request | deliveries | SQL p50 / p95 ms | HTTP p50 / p95 ms | HTTP p50 under ${TARGET_MS} ms |`);
  console.log('| --- | --- | --- | --- | --- |');
  for (const line of results) console.log(line);
} finally {
  await api?.stop();
  await pool.end();
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
}
