// `npm run bench:api-plans`: the query plans of the admin API's list queries for one
// company, with the API's planner settings, on the data of `npm run bench:api`
// (1,000,000 deliveries, a quarter of them of company 1, ~7,600 of each of 99 others)
// as the relay leaves them (an attempt per finished delivery, a result row per
// failure: bench/api-data.ts), and a company with no rows at all. Each query runs as a
// viewer of that company (row-level security on), as PostGraphile sends it in shape:
// a page of 101 rows (100 and "is there more"), and a total count.
//
// A plan is index-driven when it reads the company's rows (or its webhook's) from an
// index range rather than scanning and filtering the table: the time then follows
// the page, not the table. `--without-company-indexes` drops history's company index
// of migrations/0016_outbox.sql (as 0014_company_indexes made it) first, to show what
// it changes (attempts have theirs in their key since 0024_attempts_keyed_by_company).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { AS_THE_RELAY_LEAVES_THEM, deliveriesFill } from './api-data.ts';
import { API_PLANNER_SETTINGS } from '../api/preset.ts';
import { startEmbeddedPostgres } from '../tools/embedded-postgres.ts';
import { migrate } from '../tools/migrate.ts';

const quick = process.argv.includes('--quick');
const withoutIndexes = process.argv.includes('--without-company-indexes');
const DELIVERIES = quick ? 200_000 : 1_000_000;
const COMPANIES = 100;
const WEBHOOKS_PER_COMPANY = 10;

const dataDir = await mkdtemp(join(tmpdir(), 'bpd-bench-plans-'));
const server = await startEmbeddedPostgres({ dataDir, fast: true });
const url = server.url();
const client = new pg.Client({ connectionString: url });

try {
  await migrate(url);
  await client.connect();
  const loadStarted = performance.now();
  // the companies and webhooks of bench:api, and company 101 with one webhook and nothing sent
  await client.query(`
    insert into crm.companies (id, name) select c, 'Company ' || c from generate_series(1, ${COMPANIES + 1}) c;
    insert into webhooks.webhooks (company_id, name, url, fields, actions, created_at)
    select c, 'Hook ' || n, 'https://receiver.example.com/' || c || '/' || n, '{first_name,email}',
           '{contact.created,contact.updated}', now() - interval '120 days' + n * interval '1 hour'
    from generate_series(1, ${COMPANIES}) c, generate_series(1, ${WEBHOOKS_PER_COMPANY}) n;
    insert into webhooks.webhooks (company_id, name, url, fields, actions)
    values (${COMPANIES + 1}, 'Hook 1', 'https://receiver.example.com/empty', '{first_name}', '{contact.created}');`);
  await client.query(deliveriesFill(DELIVERIES, WEBHOOKS_PER_COMPANY));
  await client.query(AS_THE_RELAY_LEAVES_THEM);
  if (withoutIndexes) {
    await client.query('drop index webhooks.delivery_history_company_idx');
  }
  await client.query('vacuum analyze webhooks.delivery_history, webhooks.delivery_queue, webhooks.delivery_results, webhooks.delivery_attempts, webhooks.webhooks');
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  const { rows: [counts] } = await client.query(
    `select (select count(*) from webhooks.deliveries)::int as deliveries, (select count(*) from webhooks.delivery_attempts)::int as attempts`);

  const hookOf = async (company: number) =>
    (await client.query('select min(id)::int as id from webhooks.webhooks where company_id = $1', [company])).rows[0].id as number;
  const deliveryOf = async (company: number) =>
    (await client.query('select max(id)::int as id from webhooks.deliveries where company_id = $1', [company])).rows[0]?.id as number | null;

  const QUERIES: Array<{ name: string; sql: (ids: { hook: number; delivery: number | null }) => string }> = [
    { name: 'allDeliveries, first page', sql: () => 'select id, state, created_at from webhooks.deliveries order by id limit 101' },
    // (the API offers no totalCount of deliveries or attempts since 2026-12-06; a DBA's count)
    { name: 'allDeliveries, totalCount', sql: () => 'select count(*) from webhooks.deliveries' },
    { name: 'allDeliveryAttempts, first page', sql: () => 'select id, status_code from webhooks.delivery_attempts order by id limit 101' },
    { name: 'allDeliveryAttempts, totalCount', sql: () => 'select count(*) from webhooks.delivery_attempts' },
    // (its default order: api/preset.ts, RELATION_ORDERS)
    { name: 'deliveriesByWebhookId, first page', sql: ({ hook }) => `select id, state from webhooks.deliveries where webhook_id = ${hook} order by created_at, id limit 101` },
    { name: 'history (webhook, newest first), first page', sql: ({ hook }) =>
      `select id, state from webhooks.deliveries where webhook_id = ${hook} order by created_at desc, id desc limit 26` },
    { name: 'deliveryAttemptsByDeliveryId', sql: ({ delivery }) =>
      `select id, attempt from webhooks.delivery_attempts where delivery_id = ${delivery ?? 0} order by attempt limit 101` },
    { name: 'allWebhooks, first page', sql: () => 'select id, name from webhooks.webhooks order by id limit 101' },
  ];

  console.log(`bench:api-plans: ${counts.deliveries.toLocaleString('en')} deliveries, ${counts.attempts.toLocaleString('en')} attempts, ` +
    `loaded in ${loadSeconds.toFixed(0)} s; company indexes ${withoutIndexes ? 'DROPPED' : 'in place'}.`);
  for (const [label, company] of [['big company (1)', 1], ['typical company (2)', 2], ['company with no deliveries (101)', COMPANIES + 1]] as const) {
    const ids = { hook: await hookOf(company), delivery: await deliveryOf(company) };
    console.log(`\n## ${label}\n`);
    console.log('| query | plan (top nodes) | ms |');
    console.log('| --- | --- | --- |');
    for (const query of QUERIES) {
      await client.query('begin');
      await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [String(company)]);
      // and the planner settings the API gives each request
      for (const [name, value] of Object.entries(API_PLANNER_SETTINGS)) await client.query('select set_config($1, $2, true)', [name, value]);
      // the plan a fresh connection would pick (no generic-plan surprises): run twice, report the second
      await client.query(`explain analyze ${query.sql(ids)}`);
      const { rows } = await client.query(`explain (analyze, costs off, timing off, summary on) ${query.sql(ids)}`);
      await client.query('rollback');
      const lines = rows.map((r) => r['QUERY PLAN'] as string);
      const nodes = lines.filter((line) => /(Scan|Sort|Aggregate|Limit|Nested Loop|Hash)/.test(line))
        .map((line) => line.trim().replace(/^->\s*/, '').replace(/\s*\(actual.*$/, ''))
        .slice(0, 4).join(' → ');
      const ms = /Execution Time: ([\d.]+) ms/.exec(lines.join('\n'))?.[1];
      console.log(`| ${query.name} | ${nodes} | ${ms} |`);
    }
  }
} finally {
  await client.end().catch(() => {});
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
}
