// bpd_webhooks_reader (sql/60_access.sql): a login granted it reads what DBAs and
// support read of the fire history in SQL (docs/sql.md, "Reading fire history"), of
// every company, as the owner reads it and at what it costs the owner, and nothing
// else: no signing secret, no write of any kind.
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { migrate } from '../../tools/migrate.ts';
import { memberLoginUrl } from '../helpers/crm-role.ts';
import { createTestDatabase, ownConnection, useTestDatabase } from '../helpers/db.ts';
import { utcDay } from '../helpers/days.ts';
import { section } from '../helpers/docs.ts';
import { factories } from '../helpers/factories.ts';
import { partitionsRead, partitionsScanned, rowsRead, type PlanNode } from '../helpers/plans.ts';

const db = useTestDatabase(test);

const READER = 'bpd_webhooks_reader';
/** The days of history before today, each with firings of contacts 1 to 10 (every fifth failed), for each company. */
const DAYS = 5;
/** The contact whose firings the contact questions ask for: one of both companies each day. */
const CONTACT = 3;
/** The day the docs' examples take for today ("yesterday" is 2026-12-05 there). */
const DOCS_TODAY = Date.UTC(2026, 11, 6);

/** What the reader may execute, and why: the questions, and what they and the views call as their caller. */
const EXECUTABLE = [
  'webhooks.backlog_by_webhook()',
  'webhooks.contact_fire_history(bigint,timestamp with time zone,timestamp with time zone)',
  'webhooks.delivery_attempts_url(webhooks.delivery_attempts)',
  'webhooks.find_message(text,timestamp with time zone)',
  'webhooks.kept_since()',
  'webhooks.retry_schedule(integer)',
  'webhooks.webhooks_history(webhooks.webhooks,timestamp with time zone,timestamp with time zone,text,timestamp with time zone,bigint)',
  'webhooks.webhooks_history_count(webhooks.webhooks,timestamp with time zone,timestamp with time zone,text)',
  'webhooks.webhooks_history_counts(webhooks.webhooks,timestamp with time zone,timestamp with time zone)',
  'webhooks.webhooks_history_oldest_first(webhooks.webhooks,timestamp with time zone,timestamp with time zone,text,timestamp with time zone,bigint)',
  'webhooks_ops.upkeep()',
  'webhooks_private.all_counted_before()',
  'webhooks_private.bounds_as_named(pg_class,date,date)',
  'webhooks_private.count_deliveries(bigint,bigint,timestamp with time zone,timestamp with time zone)',
  'webhooks_private.count_deliveries_of(bigint[],bigint[],timestamp with time zone,timestamp with time zone)',
  'webhooks_private.count_test_sends(bigint,bigint,timestamp with time zone,timestamp with time zone)',
  'webhooks_private.database_setting(text)',
  'webhooks_private.deleted_webhooks()',
  'webhooks_private.fire_history_between(timestamp with time zone,timestamp with time zone,bigint,text)',
  'webhooks_private.held_back(bigint,bigint,bigint)',
  'webhooks_private.history_after(text,text,timestamp with time zone,bigint)',
  'webhooks_private.history_end(timestamp with time zone)',
  'webhooks_private.history_rows(webhooks.webhooks,timestamp with time zone,timestamp with time zone,text,timestamp with time zone,bigint,boolean)',
  'webhooks_private.known_delivery_state(text)',
  'webhooks_private.max_coalesce_window()',
  'webhooks_private.oldest_queued_at(bigint)',
  'webhooks_private.outbox_partitioned()',
  'webhooks_private.outbox_partitions()',
  'webhooks_private.partition_days(text,text)',
  'webhooks_private.payload_bytes_floor()',
  'webhooks_private.refuse_half_row(text,text,text,boolean,boolean)',
  'webhooks_private.requested_time(timestamp with time zone,text)',
  'webhooks_private.requested_times(timestamp with time zone,timestamp with time zone)',
  'webhooks_private.setting_canonical(text,text)',
  'webhooks_private.setting_check(text,text)',
  'webhooks_private.setting_magnitude(text,text)',
  'webhooks_private.setting_rule(text)',
  'webhooks_private.setting_rules()',
  'webhooks_private.utc_day(timestamp with time zone)',
  'webhooks_private.utc_day_start(date)',
];

/** What the reader may read whole: the views, the tables beneath them, the counted days daily_counts counts again, and the URLs attempts name. */
const READABLE = [
  'webhooks.audit_log', 'webhooks.daily_counts', 'webhooks.deliveries', 'webhooks.delivery_attempts',
  'webhooks.delivery_day_counts', 'webhooks.delivery_history', 'webhooks.delivery_hour_counts', 'webhooks.delivery_queue',
  'webhooks.delivery_results', 'webhooks.fire_history', 'webhooks.settings', 'webhooks.webhooks',
  'webhooks_private.delivery_days_to_count',
  'webhooks_private.webhook_urls',
];

/** Of the lanes, the circuit breaker's columns alone. */
const LANE_COLUMNS = ['company_id', 'failing_since', 'failures', 'open_until', 'webhook_id'];

const ENGINE_SCHEMAS = ['webhooks', 'webhooks_private', 'webhooks_relay', 'webhooks_ops', 'webhooks_partitions'];

interface CompanyScene {
  company: string;
  hook: string;
  /** a firing of yesterday: its message id and its payload's timestamp */
  message: { id: string; stamp: string };
  /** a failed firing of yesterday with an attempt */
  attempted: { id: string; createdAt: string };
}

// Two companies, each a webhook with DAYS days of history, a delivery waiting today, a
// failed one with its attempt, failures counted by its circuit breaker, its days
// rolled up as the API server does.
async function makeScene(): Promise<CompanyScene[]> {
  const f = factories(db().pool);
  const scenes: CompanyScene[] = [];
  for (const name of ['A', 'B']) {
    const company = await f.company(`Reader ${name}`);
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
    await db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at,
                                        last_status_code, last_error, created_at)
       select $1, $2, 'contact.created', c, '{}', case when c % 5 = 0 then 'failed' else 'succeeded' end, 1,
              now(), case when c % 5 = 0 then 500 else 200 end, case when c % 5 = 0 then 'HTTP 500' end,
              $3::timestamptz - d * interval '1 day' + interval '1 hour' + c * interval '1 minute'
       from generate_series(1, $4::int) d, generate_series(1, 10) c`, [hook.id, company.id, utcDay(0).toISOString(), DAYS]);
    await f.contact(company.id);
    const stamped = `to_char(created_at at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
    const { rows: [message] } = await db().pool.query(
      `select message_id as id, ${stamped} as stamp from webhooks.deliveries
       where webhook_id = $1 and contact_id = $2 and created_at >= $3 and created_at < $4`,
      [hook.id, CONTACT, utcDay(-1).toISOString(), utcDay(0).toISOString()]);
    const { rows: [failed] } = await db().pool.query(
      `select id, created_at, ${stamped} as stamp from webhooks.deliveries
       where webhook_id = $1 and state = 'failed' and created_at >= $2 and created_at < $3 order by id limit 1`,
      [hook.id, utcDay(-1).toISOString(), utcDay(0).toISOString()]);
    await db().pool.query(
      `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at,
                                               duration_ms, status_code, error)
       values ($1, $2, $3, $4, 1, $2, 12, 500, 'HTTP 500')`, [failed.id, failed.created_at, hook.id, company.id]);
    await db().pool.query(
      `insert into webhooks_private.lanes (webhook_id, company_id, failures, failing_since) values ($1, $2, 3, now())
       on conflict (webhook_id) do update set failures = excluded.failures, failing_since = excluded.failing_since`,
      [hook.id, company.id]);
    scenes.push({ company: company.id, hook: hook.id, message, attempted: { id: failed.id, createdAt: failed.stamp } });
  }
  await db().pool.query('call webhooks.roll_up_report_counts()');
  await db().pool.query('analyze webhooks.delivery_history, webhooks.delivery_results, webhooks.delivery_queue, webhooks.delivery_attempts, webhooks.delivery_day_counts');
  return scenes;
}
let scene: Promise<CompanyScene[]> | undefined;
const theScene = () => (scene ??= makeScene());

/** A login of the test's own, granted bpd_webhooks_reader as a deployment grants it, connected. */
async function readerLogin(t: ExecutionContext, suffix: string): Promise<pg.Client> {
  const login = await memberLoginUrl(t, db(), READER, suffix);
  return await ownConnection(login.url, t);
}

/** The questions docs/sql.md's "Reading fire history" shows, as written. */
function documentedQuestions(): string[] {
  const text = section('docs/sql.md', '## Reading fire history').replace(/\s*\n\s*/g, ' ');
  return [...text.matchAll(/`(select [^`]+)`/g)].map(([, question]) => question!);
}

/** A documented question asked of a company of the scene: its ids for the docs' 7, 9, 42 and …, its days for the docs' days. */
function askedOf(question: string, c: CompanyScene): string {
  const today = utcDay(0).getTime();
  return question
    .replace(/find_message\('msg_…', '[^']*'\)/, `find_message('${c.message.id}', '${c.message.stamp}')`)
    .replace(/find_message\('msg_…'\)/, `find_message('${c.message.id}')`)
    .replace(/contact_fire_history\(42\b/, `contact_fire_history(${CONTACT}`)
    .replace(/delivery_id = … and delivery_created_at = '…'/, `delivery_id = ${c.attempted.id} and delivery_created_at = '${c.attempted.createdAt}'`)
    .replace(/webhook_id = 9\b/, `webhook_id = ${c.hook}`)
    .replace(/company_id = 7\b/g, `company_id = ${c.company}`)
    .replace(/w\.id = …/, `w.id = ${c.hook}`)
    .replace(/\(w, since, until, state\)/, '(w, null, null, null)')
    .replace(/'(\d{4}-\d\d-\d\d)'/g, (_, day: string) => `'${new Date(Date.parse(day) - DOCS_TODAY + today).toISOString().slice(0, 10)}'`);
}

/** Rows in an order of their own, for answers whose order the question leaves open. */
const sorted = (rows: unknown[]) => rows.map((row) => JSON.stringify(row)).sort();

/** A question's plan as it ran: each node with the table, index and index conditions it used, and the rows and partitions each table's scans read. */
async function planOf(client: Pick<pg.ClientBase, 'query'>, sql: string) {
  const { rows: [{ 'QUERY PLAN': [explained] }] } = await client.query(`explain (analyze, format json) ${sql}`);
  const nodes: string[] = [];
  const walk = (node: PlanNode & Record<string, unknown>, depth: number) => {
    nodes.push([' '.repeat(depth) + node['Node Type'], node['Relation Name'], node['Index Name'], node['Index Cond'],
      node['Subplans Removed']].filter((part) => part !== undefined).join(' '));
    for (const child of node.Plans ?? []) walk(child as PlanNode & Record<string, unknown>, depth + 1);
  };
  walk(explained.Plan, 0);
  return {
    nodes,
    read: Object.fromEntries(rowsRead(explained.Plan)),
    partitions: Object.fromEntries([...partitionsRead(explained.Plan)].map(([table, read]) => [table, [...read].sort()])),
  };
}

async function refusal(client: pg.ClientBase, sql: string): Promise<string> {
  await client.query('savepoint refused');
  try {
    await client.query(sql);
    return 'done';
  } catch (error) {
    return `${(error as { code?: string }).code}`;
  } finally {
    await client.query('rollback to savepoint refused');
  }
}

test("every question of docs/sql.md's Reading fire history runs as a reader's login and answers what it answers the owner, for both companies", async (t) => {
  const companies = await theScene();
  const reader = await readerLogin(t, 'reader_docs');
  const questions = documentedQuestions();
  t.true(questions.length >= 10, `${questions.length} questions found`);
  for (const question of questions) {
    const seen = new Set<string>();
    for (const c of companies) {
      const sql = askedOf(question, c);
      t.false(sql.includes('…'), sql);
      const { rows: owners } = await db().pool.query(sql);
      t.true(owners.length > 0, `the owner's answer is empty: ${sql}`);
      const readers = await reader.query(sql).then(({ rows }) => rows, (error: Error) => t.fail(`${sql}\n→ ${error.message}`));
      t.deepEqual(sorted(readers as unknown[]), sorted(owners), sql);
      for (const row of owners) if ('company_id' in row) seen.add(String(row.company_id));
    }
    // (a question of every company, or of a contact, answers rows of both)
    if (/backlog_by_webhook|contact_fire_history/.test(question)) {
      t.deepEqual([...seen].sort(), companies.map((c) => c.company).sort(), question);
    }
  }
});

test("the views, a webhook's history, the audit trail, the settings, the retry schedule and the upkeep: every company's rows, as the owner reads them", async (t) => {
  const companies = await theScene();
  const ids = companies.map((c) => c.company);
  const reader = await readerLogin(t, 'reader_views');
  const reads = [
    `select * from webhooks.fire_history where company_id = any ($1)`,
    `select id, company_id, payload, state, attempts, last_error, held_back from webhooks.deliveries where company_id = any ($1)`,
    `select * from webhooks.delivery_attempts where company_id = any ($1)`,
    `select * from webhooks.daily_counts where company_id = any ($1)`,
    `select * from webhooks.audit_log where company_id = any ($1)`,
    `select * from webhooks.webhooks where company_id = any ($1)`,
    `select w.company_id, h.* from webhooks.webhooks w, webhooks.webhooks_history(w) h where w.company_id = any ($1)`,
    `select w.company_id, h.* from webhooks.webhooks w, webhooks.webhooks_history_oldest_first(w, state => 'failed') h where w.company_id = any ($1)`,
    `select w.company_id, webhooks.webhooks_history_count(w, state => 'failed') as failed from webhooks.webhooks w where w.company_id = any ($1)`,
  ];
  for (const sql of reads) {
    const { rows: owners } = await db().pool.query(sql, [ids]);
    const readers = await reader.query(sql, [ids]).then(({ rows }) => rows, (error: Error) => t.fail(`${sql}\n→ ${error.message}`));
    t.deepEqual(sorted(readers as unknown[]), sorted(owners), sql);
    t.deepEqual([...new Set(owners.map((row) => String(row.company_id)))].sort(), [...ids].sort(), sql);
  }
  for (const sql of ['select * from webhooks.settings', 'select * from webhooks.retry_schedule()', 'select webhooks.kept_since()',
    'select * from webhooks_ops.upkeep()']) {
    const { rows: owners } = await db().pool.query(sql);
    const readers = await reader.query(sql).then(({ rows }) => rows, (error: Error) => t.fail(`${sql}\n→ ${error.message}`));
    t.true(owners.length > 0, sql);
    t.deepEqual(readers, owners, sql);
  }
});

test("the reader's questions are planned as the owner's, and those that read only the days they name still do", async (t) => {
  const companies = await theScene();
  const reader = await readerLogin(t, 'reader_plans');
  const [c] = companies;
  const questions = [
    ...documentedQuestions().map((question) => askedOf(question, c!)),
    // (the docs' other ways of writing two of them)
    `select delivery_id, message_id, attempts, last_status_code, last_error from webhooks.fire_history
     where webhook_id = ${c!.hook} and state = 'failed' and created_at >= current_date - 1 and created_at < current_date`,
    `select * from webhooks.fire_history where contact_id = ${CONTACT}
     and created_at >= '${utcDay(-3).toISOString()}' and created_at < '${utcDay(-1).toISOString()}'`,
  ];
  // (the same scans, by the same indexes and conditions, reading the same partitions
  // and rows: what a scan's filter tests first may differ, as row-level security has
  // a cheap leakproof condition tested before the others)
  for (const sql of questions) {
    const asOwner = await planOf(db().pool, sql);
    const asReader = await planOf(reader, sql);
    t.deepEqual(asReader, asOwner, sql);
  }

  // what the functions read, which EXPLAIN does not show: the same partitions as the owner's
  const owner = await db().pool.connect();
  t.teardown(() => owner.release());
  const scanned = async (client: pg.ClientBase, table: string, sql: string) => {
    await client.query('begin');
    try {
      const { result, scanned } = await partitionsScanned(client, table, () => client.query(sql));
      return { rows: result.rows, scanned };
    } finally {
      await client.query('rollback');
    }
  };
  const functions: Array<[string, string, number]> = [
    // (question, table, the most partitions it may read: the days it names)
    [`select * from webhooks.find_message('${c!.message.id}', '${c!.message.stamp}')`, 'webhooks.delivery_history', 2],
    [`select * from webhooks.find_message('${c!.message.id}', '${c!.message.stamp}')`, 'webhooks.delivery_results', 2],
    [`select * from webhooks.find_message('${c!.message.id}')`, 'webhooks.delivery_history', 3],
    [`select * from webhooks.contact_fire_history(${CONTACT}, '${utcDay(-3).toISOString()}', '${utcDay(-1).toISOString()}')`,
      'webhooks.delivery_history', 2],
    [`select * from webhooks.contact_fire_history(${CONTACT}, '${utcDay(-3).toISOString()}', '${utcDay(-1).toISOString()}')`,
      'webhooks.delivery_results', 2],
  ];
  for (const [sql, table, most] of functions) {
    const asOwner = await scanned(owner, table, sql);
    const asReader = await scanned(reader, table, sql);
    t.true(asReader.rows.length > 0, sql);
    t.deepEqual(sorted(asReader.rows), sorted(asOwner.rows), sql);
    t.deepEqual(asReader.scanned, asOwner.scanned, `${table} for ${sql}`);
    t.true(asReader.scanned.length <= most, `${table} for ${sql}: ${asReader.scanned.join(', ')}`);
  }
});

test('the reader reads no signing secret and nothing else of webhooks_private but the counted days, the attempts\' URLs and the breakers', async (t) => {
  const companies = await theScene();
  const reader = await readerLogin(t, 'reader_secrets');
  const hook = companies[0]!.hook;
  await reader.query('begin');
  t.teardown(() => reader.query('rollback'));
  for (const sql of [
    'select * from webhooks_private.webhook_secrets',
    'select secret from webhooks_private.webhook_secrets',
    'select * from webhooks_private.rotated_secrets',
    'select * from webhooks_private.subscriptions',
    'select * from webhooks_private.lanes',
    `select webhooks_private.issued_secret(${hook})`,
    `select webhooks_private.issued_secret_setting(${hook})`,
    `select * from webhooks.rotate_webhook_secret(${hook})`,
    `select * from webhooks_relay.claim_deliveries('reader', 10, '1 minute', 10)`,
  ]) {
    t.is(await refusal(reader, sql), '42501', sql);
  }

  // (and no role of the API's or the relay's may become it)
  const { rows: members } = await db().pool.query(
    `select r.rolname from pg_roles r where pg_has_role(r.oid, $1, 'member') and r.rolname <> $1 and r.rolname = any ($2)`,
    [READER, ['webhook_authenticator', 'webhook_admin', 'webhook_viewer', 'bpd_webhooks_relay']]);
  t.deepEqual(members, []);

  const { rows: executable } = await db().pool.query(
    `select p.oid::regprocedure::text as routine
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = any ($1) and has_schema_privilege($2, n.oid, 'usage') and has_function_privilege($2, p.oid, 'execute')
     order by 1`, [ENGINE_SCHEMAS, READER]);
  t.deepEqual(executable.map((row) => row.routine).sort(), [...EXECUTABLE].sort());
  const { rows: readable } = await db().pool.query(
    `select c.oid::regclass::text as relation
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = any ($1) and has_table_privilege($2, c.oid, 'select')
     order by 1`, [ENGINE_SCHEMAS, READER]);
  t.deepEqual(readable.map((row) => row.relation).sort(), [...READABLE].sort());
  const { rows: columns } = await db().pool.query(
    `select c.oid::regclass::text as relation, array_agg(a.attname::text order by a.attname) as columns
     from pg_class c join pg_namespace n on n.oid = c.relnamespace join pg_attribute a on a.attrelid = c.oid
     where n.nspname = any ($1) and a.attnum > 0 and not a.attisdropped and not has_table_privilege($2, c.oid, 'select')
       and has_column_privilege($2, c.oid, a.attnum, 'select')
     group by 1 order by 1`, [ENGINE_SCHEMAS, READER]);
  t.deepEqual(columns, [{ relation: 'webhooks_private.lanes', columns: LANE_COLUMNS }]);
  // (and the breakers' question of the docs reads them)
  const { rows: failing } = await reader.query(
    `select w.id, l.failures from webhooks_private.lanes l join webhooks.webhooks w on w.id = l.webhook_id where l.webhook_id = $1`, [hook]);
  t.deepEqual(failing, [{ id: hook, failures: 3 }]);
});

test('every write is refused the reader with 42501: the tables and views, replay, backfill, the admin functions, maintenance, every routine not granted', async (t) => {
  const companies = await theScene();
  const reader = await readerLogin(t, 'reader_writes');
  const [{ hook, company, attempted }] = companies as [CompanyScene];
  const { rows: [{ n: writable }] } = await db().pool.query(
    `select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = any ($1) and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
       and (has_table_privilege($2, c.oid, 'insert, update, delete, truncate, references, trigger')
            or has_any_column_privilege($2, c.oid, 'insert, update, references')
            or (c.relkind = 'S' and has_sequence_privilege($2, c.oid, 'usage, update')))`, [ENGINE_SCHEMAS, READER]);
  t.is(writable, 0);

  await reader.query('begin');
  t.teardown(() => reader.query('rollback'));
  const writes = [
    `insert into webhooks.webhooks (company_id, name, url, fields, actions) values (${company}, 'r', 'https://r.example.com/', '{first_name}', '{contact.created}')`,
    `update webhooks.webhooks set enabled = false where id = ${hook}`,
    `delete from webhooks.webhooks where id = ${hook}`,
    `update webhooks.deliveries set state = 'pending', next_attempt_at = now(), completed_at = null where id = ${attempted.id}`,
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload) values (${hook}, ${company}, 'contact.created', 1, '{}')`,
    `delete from webhooks.deliveries where id = ${attempted.id}`,
    `update webhooks.delivery_history set payload = '{}' where id = ${attempted.id}`,
    `delete from webhooks.delivery_queue where webhook_id = ${hook}`,
    `insert into webhooks.audit_log (company_id, webhook_id, actor, action) values (${company}, ${hook}, 'r', 'webhook.updated')`,
    `delete from webhooks.audit_log where company_id = ${company}`,
    `update webhooks.delivery_day_counts set fired = 0 where webhook_id = ${hook}`,
    `truncate webhooks.delivery_attempts`,
    `update webhooks_private.lanes set failures = 0 where webhook_id = ${hook}`,
    `insert into webhooks.backfills (webhook_id, company_id) values (${hook}, ${company})`,
  ];
  for (const sql of writes) t.is(await refusal(reader, sql), '42501', sql);

  // every routine of the engine's schemas not granted, called with nulls: refused before it runs
  const { rows: routines } = await db().pool.query<{ signature: string; call: string }>(
    `select p.oid::regprocedure::text as signature,
            format('%s %I.%I(%s)', case p.prokind when 'p' then 'call' else 'select' end, n.nspname, p.proname,
                   -- (a function's each a subquery: a constant null would let the planner answer
                   -- a strict function's call itself, null, without asking whether it may be
                   -- called; a procedure's constants, as CALL takes no subquery; a polymorphic
                   -- argument as text)
                   (select string_agg(case when p.provariadic <> 0 and a.k = cardinality(t.types) then 'variadic ' else '' end
                                      || format(case p.prokind when 'p' then 'null::%s' else '(select null::%s)' end,
                                                case when format_type(a.type, null) like 'any%array' then 'text[]'
                                                     when format_type(a.type, null) like 'any%' then 'text'
                                                     else format_type(a.type, null) end), ', ' order by a.k)
                    from (select case when p.prokind = 'p' and p.proallargtypes is not null then p.proallargtypes
                                      else p.proargtypes::oid[] end as types) t,
                         unnest(t.types) with ordinality a(type, k))) as call
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = any ($1) and not (p.oid::regprocedure::text = any ($2))
     order by 1`, [ENGINE_SCHEMAS, EXECUTABLE]);
  const names = routines.map((routine) => routine.signature);
  for (const named of ['webhooks.replay_delivery(bigint)', 'webhooks.backfill(bigint)', 'webhooks.cancel_backfill(bigint)',
    'webhooks.delete_webhook(bigint)', 'webhooks.send_test_webhook(bigint)', 'webhooks.create_partitions(integer)',
    'webhooks.forget_day(date)', 'webhooks.purge_deleted_webhooks(integer)', 'webhooks_private.issued_secret(bigint)']) {
    t.true(names.includes(named), named);
  }
  t.true(names.some((name) => name.startsWith('webhooks.replay_failed(')));
  t.true(names.some((name) => name.startsWith('webhooks.create_webhook(')));
  t.true(names.some((name) => name.startsWith('webhooks.update_webhook(')));
  t.true(names.some((name) => name.startsWith('webhooks.roll_up_report_counts(')));
  const done: string[] = [];
  for (const routine of routines) {
    const outcome = await refusal(reader, routine.call);
    if (outcome !== '42501') done.push(`${routine.call}: ${outcome}`);
  }
  t.deepEqual(done, []);
  t.true(routines.length > 300, `${routines.length} routines called`);
});

test('migrate makes the role, and a second migrate leaves it and its grants and policies as they were', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const grants = async () => (await database.pool.query(
    `select (select to_jsonb(r) from (select rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication
                                      from pg_roles where rolname = $1) r) as role,
            (select jsonb_agg(x order by x) from (
               select format('%s %s', c.oid::regclass, a.privilege_type) as x
               from pg_class c, aclexplode(c.relacl) a where a.grantee = $1::regrole
               union all
               select format('%s.%s %s', c.oid::regclass, col.attname, a.privilege_type)
               from pg_class c join pg_attribute col on col.attrelid = c.oid, aclexplode(col.attacl) a where a.grantee = $1::regrole
               union all
               select format('%s %s', p.oid::regprocedure, a.privilege_type)
               from pg_proc p, aclexplode(p.proacl) a where a.grantee = $1::regrole
               union all
               select format('schema %s %s', s.nspname, a.privilege_type)
               from pg_namespace s, aclexplode(s.nspacl) a where a.grantee = $1::regrole
               union all
               select format('policy %s on %s for %s using %s', p.polname, p.polrelid::regclass, p.polcmd, pg_get_expr(p.polqual, p.polrelid))
               from pg_policy p where $1::regrole = any (p.polroles)) g) as grants`, [READER])).rows[0];
  const before = await grants();
  t.deepEqual(before.role, { rolcanlogin: false, rolsuper: false, rolbypassrls: false, rolcreaterole: false, rolcreatedb: false, rolreplication: false });
  t.true(before.grants.length > EXECUTABLE.length + READABLE.length, `${before.grants.length} grants`);
  await migrate(database.url);
  t.deepEqual(await grants(), before);
  await migrate(database.url);
  t.deepEqual(await grants(), before);
});
