// A page of the report (webhooks.webhook_report without its counts, as the Reports
// page reads a company's webhooks, a page at a time) reads about a page of the
// company's webhooks, however many it has. Before, each page listed and sorted every
// webhook of the company and PostGraphile's cursor skipped an offset of them (10–20
// ms a page at 1,200 webhooks: reading all of them took a time that grew with their
// square). Its own file: its webhooks and statistics would change the plans of other
// tests of one database.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { asTheApi, tableReads } from '../helpers/plans.ts';

const db = useTestDatabase(test);

const WEBHOOKS = 1_200;
const PAGE = 100;

// A page as PostGraphile asks it of webhookReport(withCounts: false): the function's
// rows, numbered, a row more than the page to know whether another follows.
const FIRST_PAGE = `select r.webhook_id::text as id, r.created_at::text as created_at, (row_number() over (partition by 1))::text as n
                    from webhooks.webhook_report(with_counts => $1::boolean) r limit ${PAGE + 1}`;
// the page after one, asked after its last row (afterCreatedAt, afterId)
const NEXT_PAGE = `select r.webhook_id::text as id, r.created_at::text as created_at, (row_number() over (partition by 1))::text as n
                   from webhooks.webhook_report(with_counts => $1::boolean, after_created_at => $2::timestamptz,
                                                after_id => $3::bigint) r limit ${PAGE + 1}`;

/** An execute statement's rows and the webhooks it read (its functions' reads too). */
async function run(client: pg.PoolClient, execute: string): Promise<{ read: number; rows: Array<{ id: string; created_at: string }> }> {
  const before = await tableReads(client, 'webhooks.webhooks');
  const { rows } = await client.query(execute);
  return { read: (await tableReads(client, 'webhooks.webhooks')) - before, rows };
}

/** Every page of the report, each asked after the last row of the one before: the webhooks, and what each page read. */
async function everyPage(client: pg.PoolClient): Promise<{ ids: string[]; reads: number[] }> {
  const first = await run(client, 'execute first_page(false)');
  const seen = first.rows.slice(0, PAGE);
  const reads = [first.read];
  for (let more = first.rows.length > PAGE; more;) {
    const last = seen.at(-1)!;
    const page = await run(client, `execute next_page(false, '${last.created_at}', ${last.id})`);
    reads.push(page.read);
    seen.push(...page.rows.slice(0, PAGE));
    more = page.rows.length > PAGE;
  }
  return { ids: seen.map((row) => row.id), reads };
}

test('each page of a company of 1,200 webhooks reads about a page of them, as the API plans it, whatever the statistics say; the pages, after one another, give every webhook once, newest first', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  // statistics from before the company's webhooks: 500 companies of one webhook each,
  // as a fleet of small companies, before one of them grew
  await db().pool.query(
    `with made as (insert into crm.companies (name) select 'Small ' || n from generate_series(1, 500) n returning id)
     insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select id, 'Small', 'https://receiver.example.com/small', '{first_name}', '{contact.created}' from made`);
  await db().pool.query('analyze webhooks.webhooks');
  const writer = await db().pool.connect();
  try {
    await writer.query(`set webhooks.max_webhooks_per_company = '${WEBHOOKS}'`);
    // a few at each instant: the order breaks the tie by id
    for (const [companyId, count] of [[company.id, WEBHOOKS], [other.id, 300]] as const) {
      await writer.query(
        `insert into webhooks.webhooks (company_id, name, url, fields, actions, created_at)
         select $1, 'Hook ' || n, 'https://receiver.example.com/' || n, '{first_name}', '{contact.created}',
                now() - (n / 3) * interval '1 minute'
         from generate_series(1, $2::int) n`, [companyId, count]);
    }
  } finally {
    writer.release();
  }
  const { rows: every } = await db().pool.query(
    'select w.id::text as id from webhooks.webhooks w where w.company_id = $1 order by w.created_at desc, w.id desc', [company.id]);
  t.is(every.length, WEBHOOKS);
  const statements = { first_page: FIRST_PAGE, next_page: NEXT_PAGE };

  // with the statistics of before (the planner expects a webhook or two a company,
  // which a sort costs nothing), and with those of now
  for (const when of ['stale statistics', 'after analyze']) {
    if (when === 'after analyze') await db().pool.query('analyze webhooks.webhooks');
    const client = await asTheApi(t, db().pool, company.id, statements);
    const { ids, reads } = await everyPage(client);
    t.is(reads.length, WEBHOOKS / PAGE, when);
    t.true(reads.every((read) => read <= PAGE + 1 + 2), `${when}: webhooks read a page: ${reads.join(', ')} (${WEBHOOKS} in all)`);
    t.deepEqual(ids, every.map((row) => row.id), when);

    // one webhook's line, as its history page asks it (with its counts): that webhook
    // alone, by its key, not a walk of the company's webhooks to it
    const oldest = every.at(-1)!.id;
    await client.query(`prepare one_line as select r.webhook_id::text as id, r.created_at::text as created_at
                        from webhooks.webhook_report(webhook_id => $1::bigint) r limit ${PAGE + 1}`);
    const line = await run(client, `execute one_line(${oldest})`);
    t.deepEqual(line.rows.map((row) => row.id), [oldest], when);
    t.true(line.read <= 2, `${when}: webhooks read for one webhook's line: ${line.read}`);
  }
});

test('a page of the report reads the statuses and users its webhooks filter on, not every one of the company', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const NAMED = 300;
  await db().pool.query(`insert into crm.statuses (company_id, name) select $1, 'Status ' || n from generate_series(1, $2::int) n`,
    [company.id, NAMED]);
  await db().pool.query(`insert into crm.users (company_id, name, email) select $1, 'User ' || n, 'u' || n || '@example.com'
                         from generate_series(1, $2::int) n`, [company.id, NAMED]);
  const [status, user] = [await f.status(company.id, 'Hot lead'), await f.user(company.id, 'Dana')];
  const byStatus = await f.webhook({ companyId: company.id, actions: ['contact.status_added'], statusId: status.id });
  const byUser = await f.webhook({ companyId: company.id, actions: ['contact.user_assigned'], userId: user.id });
  const plain = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const PAGE_NAMES = `select r.webhook_id::text as id, r.status_name, r.user_name
                      from webhooks.webhook_report(with_counts => $1::boolean) r limit ${PAGE + 1}`;
  const client = await asTheApi(t, db().pool, company.id, { page_names: PAGE_NAMES });
  // (by oid: the API's role may not name the CRM's schema)
  const { rows: [crm] } = await db().pool.query(
    `select 'crm.statuses'::regclass::oid::text as statuses, 'crm.users'::regclass::oid::text as users`);
  // (with the entries of their indexes: a lookup by key counts its row there)
  const reads = async () => ({
    statuses: await tableReads(client, crm.statuses, { indexes: true }),
    users: await tableReads(client, crm.users, { indexes: true }),
  });

  for (const withCounts of [false, true]) {
    const before = await reads();
    const { rows } = await client.query(`execute page_names(${withCounts})`);
    const after = await reads();
    t.deepEqual(rows, [
      { id: plain.id, status_name: null, user_name: null },
      { id: byUser.id, status_name: null, user_name: 'Dana' },
      { id: byStatus.id, status_name: 'Hot lead', user_name: null },
    ]);
    // one of each, by its key (the company has 301 of each)
    t.deepEqual({ statuses: after.statuses - before.statuses, users: after.users - before.users }, { statuses: 1, users: 1 },
      `with counts: ${withCounts}`);
  }
});
