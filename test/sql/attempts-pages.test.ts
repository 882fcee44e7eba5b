// A page of one delivery's attempts reads about a page of them, however many the
// delivery has (a receiver failing for days, replays by hand): asked after the last
// attempt of the page before (webhooks.delivery_attempts_latest_first, sql/55_report.sql),
// where an offset, as the connection deliveryAttemptsByDeliveryId pages, reads every
// attempt before the page. Its own file: its statistics would change the plans of other
// tests of one database; its tests share its data, made once and only read.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { asTheApi, partitionsRead, roundingSlack, rowsRead } from '../helpers/plans.ts';

const db = useTestDatabase(test);

const ATTEMPTS = 5000;
const PAGE = 100;

// A page of the attempts as the Reports page asks for it (deliveryAttemptsLatestFirst),
// latest first.
const COLUMNS = 'array[a.id::text, a.attempt::text, a.status_code::text]';
const KEYSET_PAGE = `
  select array(select ${COLUMNS}
               from webhooks.delivery_attempts_latest_first($1, $2, $3) a
               limit ${PAGE})`;
// and as deliveryAttemptsByDeliveryId of deliveryById pages them: by offset
const OFFSET_PAGE = `
  select array(select ${COLUMNS}
               from webhooks.delivery_attempts a where a.delivery_id = d.id
               order by a.attempt desc, a.id desc offset $2 limit ${PAGE})
  from webhooks.deliveries d where d.id = $1`;

// One delivery failing for days: 5,000 attempts, two of them number 2,500 (a lease
// that ran out gives its number back). Beside it, a few attempts of deliveries of
// other days, so that other days' partitions have rows too.
async function makeAttempts(): Promise<{ companyId: string; deliveryId: string }> {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { rows: [failing] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at,
                                      last_status_code, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'failed', $3, now(), 500, now() - interval '3 days')
     returning id::text, created_at::text`, [hook.id, company.id, ATTEMPTS]);
  const others = (await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at,
                                      last_status_code, created_at)
     select $1, $2, 'contact.created', d, '{}', 'failed', 20, now(), 500, now() - d * interval '1 day'
     from generate_series(1, 5) d returning id, created_at::text`, [hook.id, company.id])).rows;
  await db().pool.query(
    `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at,
                                             duration_ms, status_code)
     select $1, $2::timestamptz, $3, $4, n, $2::timestamptz + n * interval '1 minute', 10, 500 + n % 4
     from (select least(n, $5::int - 1) as n from generate_series(1, $5::int) n) numbered`,
    [failing.id, failing.created_at, hook.id, company.id, ATTEMPTS]);
  // (the last one made number 4,999 twice: renumber one of them 2,500)
  await db().pool.query(
    `update webhooks.delivery_attempts set attempt = 2500
     where delivery_id = $1 and delivery_created_at = $2
       and id = (select max(id) from webhooks.delivery_attempts where delivery_id = $1 and delivery_created_at = $2)`,
    [failing.id, failing.created_at]);
  for (const other of others) {
    await db().pool.query(
      `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at,
                                               duration_ms, status_code)
       select $1, $2::timestamptz, $3, $4, n, $2::timestamptz + n * interval '1 minute', 10, 500 from generate_series(1, 20) n`,
      [other.id, other.created_at, hook.id, company.id]);
  }
  await db().pool.query('analyze webhooks.delivery_history, webhooks.delivery_results, webhooks.delivery_queue, webhooks.delivery_attempts');
  return { companyId: company.id, deliveryId: failing.id };
}
let attempts: ReturnType<typeof makeAttempts> | undefined;
const theAttempts = () => (attempts ??= makeAttempts());

/** An execute statement's rows (the first column of each), the attempts its plan read and the attempts' partitions. */
async function run(client: pg.PoolClient, execute: string) {
  const { rows: [{ 'QUERY PLAN': [plan] }] } = await client.query(`explain (analyze, format json) ${execute}`);
  const { rows: [{ array: rows }] } = await client.query(execute);
  return {
    rows: rows as string[][],
    read: rowsRead(plan.Plan).get('delivery_attempts') ?? 0,
    slack: roundingSlack(plan.Plan).get('delivery_attempts') ?? 0,
    partitions: partitionsRead(plan.Plan).get('delivery_attempts')?.size ?? 0,
  };
}

test("a page deep in a delivery's attempts, asked after the last attempt of the page before, reads about a page of them, not every attempt before it", async (t) => {
  const { companyId, deliveryId } = await theAttempts();
  const client = await asTheApi(t, db().pool, companyId, { keyset_page: KEYSET_PAGE, offset_page: OFFSET_PAGE });
  const keyset = (row?: string[]) =>
    run(client, `execute keyset_page(${deliveryId}, ${row ? row[1] : 'null'}, ${row ? row[0] : 'null'})`);
  const offset = (skip: number) => run(client, `execute offset_page(${deliveryId}, ${skip})`);
  // every attempt, latest first, as a page shows them
  const { rows: [{ array: every }] } = await client.query(OFFSET_PAGE.replace(` offset $2 limit ${PAGE}`, ''), [deliveryId]);
  t.is(every.length, ATTEMPTS);
  const ids = (rows: string[][]) => rows.map((row) => row[0]);

  const first = await keyset();
  t.deepEqual(ids(first.rows), ids(every.slice(0, PAGE)));
  t.true(first.read <= PAGE + 1 + first.slack, `attempts read for the first page: ${first.read}`);
  // the delivery's own day's partition, of the six that have attempts
  t.is(first.partitions, 1);

  // the page after the 4,000th attempt shown, by the row and by an offset: the same
  // attempts, at a page's cost and at the cost of all before it
  const deep = await keyset(every[3999]);
  const byOffset = await offset(4000);
  t.deepEqual(ids(deep.rows), ids(every.slice(4000, 4000 + PAGE)));
  t.deepEqual(ids(byOffset.rows), ids(deep.rows));
  t.true(deep.read <= PAGE + 1 + deep.slack, `attempts read for the page after attempt 4,000: ${deep.read}`);
  t.true(byOffset.read >= 4000 + PAGE, `attempts read for it by an offset: ${byOffset.read}`);
  t.log(`attempts read for the page after attempt 4,000 of ${ATTEMPTS}: ${deep.read} after the row, ${byOffset.read} by an offset`);
  t.is(deep.partitions, 1);

  // after an attempt whose number another attempt shares (the tie is broken by id)
  const tied = every.findIndex((row: string[], i: number) => row[1] === every[i + 1]?.[1]);
  t.is(every[tied][1], '2500');
  const afterTie = await keyset(every[tied]);
  t.deepEqual(ids(afterTie.rows), ids(every.slice(tied + 1, tied + 1 + PAGE)));

  // after a number past the delivery's latest: the latest page, having walked no
  // number it never reached
  const past = await run(client, `execute keyset_page(${deliveryId}, 2147483647, 1)`);
  t.deepEqual(ids(past.rows), ids(first.rows));
  t.true(past.read <= PAGE + 1 + past.slack, `attempts read after attempt 2,147,483,647: ${past.read}`);

  // the last page, and after the first attempt nothing
  const last = await keyset(every[ATTEMPTS - PAGE / 2 - 1]);
  t.deepEqual(ids(last.rows), ids(every.slice(-PAGE / 2)));
  t.deepEqual((await keyset(every.at(-1))).rows, []);
});

test("half of the attempt a page starts after is refused by name, the column naming the half missing", async (t) => {
  const { companyId, deliveryId } = await theAttempts();
  const client = await asTheApi(t, db().pool, companyId, { keyset_page: KEYSET_PAGE });
  await client.query('savepoint half');
  const noId = await t.throwsAsync(client.query(`execute keyset_page(${deliveryId}, 10, null)`));
  t.like(noId, { code: '22023', constraint: 'history_after_row', column: 'after_id' });
  await client.query('rollback to savepoint half');
  const noAttempt = await t.throwsAsync(client.query(`execute keyset_page(${deliveryId}, null, 10)`));
  t.like(noAttempt, { code: '22023', constraint: 'history_after_row', column: 'after_attempt' });
});

/**
 * The attempts a statement read, by the transaction's statistics: a function whose
 * body is a statement of its own (not inlined) shows nothing of it in its caller's plan.
 */
async function countRead(client: pg.PoolClient, execute: string): Promise<{ count: string; read: number }> {
  const attemptsRead = async () => Number((await client.query(
    `select coalesce(sum(idx_tup_fetch + seq_tup_read), 0) as n from pg_stat_xact_user_tables where relname like 'delivery_attempts%'`)).rows[0].n);
  const before = await attemptsRead();
  const { rows: [{ count }] } = await client.query(execute);
  return { count: String(count), read: (await attemptsRead()) - before };
}

test("a delivery's count of attempts, asked with its first page, reads at most one past the count's cap, and says it went past", async (t) => {
  const { companyId, deliveryId } = await theAttempts();
  const { rows: [{ cap }] } = await db().pool.query('select webhooks.delivery_attempts_counted_up_to() as cap');
  t.is(cap, 1000);
  const client = await asTheApi(t, db().pool, companyId, {
    capped: 'select webhooks.delivery_attempts_count($1) as count',
    every: 'select count(*) as count from webhooks.delivery_attempts a where a.delivery_id = $1',
  });
  const capped = await countRead(client, `execute capped(${deliveryId})`);
  t.is(capped.count, String(cap + 1), 'past the cap: one more than it');
  t.true(capped.read > 0 && capped.read <= cap + 2, `attempts read for the capped count: ${capped.read}`);
  const every = await countRead(client, `execute every(${deliveryId})`);
  t.is(every.count, String(ATTEMPTS));
  t.true(every.read >= ATTEMPTS, `attempts read counting them all: ${every.read}`);
  t.log(`attempts read to count a delivery's ${ATTEMPTS} attempts: ${capped.read} capped at ${cap}, ${every.read} counting them all`);
  // a delivery of fewer: its count as it is; not yours, or not there: 0
  const { rows: [other] } = await db().pool.query(
    'select delivery_id::text as id from webhooks.delivery_attempts where delivery_id <> $1 limit 1', [deliveryId]);
  t.is((await countRead(client, `execute capped(${other.id})`)).count, '20');
  t.is((await countRead(client, 'execute capped(-1)')).count, '0');
});
