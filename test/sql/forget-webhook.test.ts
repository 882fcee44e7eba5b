// A webhook's delete (22_outbox.sql): its queue rows and counts go at once, and its
// kept history, results and attempts when they are few; past that, the rest leave
// every view at once and the tables in batches, one day of one webhook each
// (webhooks.purge_deleted_webhooks(), run by maintenance). Deleting them all in the
// delete's own statement cost about 0.5 s per 100,000 kept deliveries, so a busy
// webhook's delete ran past the API's statement timeout. And none of its rows marks
// a day to be counted again: that cost 50 µs a row.
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { maintain, purgeDeletedWebhooks } from '../../tools/maintain.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';
import { noDayDroppedBeforeEachTest } from '../helpers/days.ts';
import { tableReads } from '../helpers/plans.ts';

const db = useTestDatabase(test);
noDayDroppedBeforeEachTest(test, db);

type Webhook = { id: string; company_id: string };

/**
 * `count` deliveries of `webhook` that failed `daysAgo` days ago, with an attempt each:
 * written through the view, or `straight` into history and results, as a capture
 * writes them (the view refuses a delivery of a webhook that is gone).
 */
async function pastDeliveries(webhook: Webhook, count: number, daysAgo = 3, straight = false) {
  const at = `now() - interval '${daysAgo} days'`;
  await db().pool.query(`select webhooks_private.ensure_day(webhooks_private.utc_day(${at}))`);
  const { rows } = await db().pool.query(straight
    ? `with h as (
         insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
         select $1, $2, 'contact.created', i, '{"type": "contact.created"}', ${at}
         from generate_series(1, $3) i
         returning id, created_at, webhook_id, company_id)
       insert into webhooks.delivery_results (delivery_id, created_at, webhook_id, company_id, state, attempts, last_error, completed_at)
       select h.id, h.created_at, h.webhook_id, h.company_id, 'failed', 1, 'HTTP 500', now() from h
       returning delivery_id as id`
    : `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error,
                                        completed_at, created_at)
       select $1, $2, 'contact.created', i, '{"type": "contact.created"}', 'failed', 1, 'HTTP 500', now(), ${at}
       from generate_series(1, $3) i
       returning id`, [webhook.id, webhook.company_id, count]);
  // (times read back in SQL: a Date in JavaScript keeps milliseconds, not microseconds)
  await db().pool.query(
    `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code)
     select h.id, h.created_at, h.webhook_id, h.company_id, 1, h.created_at, 5, 500
     from webhooks.delivery_history h where h.id = any ($1::bigint[])`, [rows.map((r) => r.id)]);
}

async function countsOf(webhookId: string) {
  const { rows: [counts] } = await db().pool.query(
    `select (select count(*) from webhooks.delivery_day_counts where webhook_id = $1)::int as days,
            (select count(*) from webhooks.delivery_hour_counts where webhook_id = $1)::int as hours,
            (select count(*) from webhooks_private.delivery_days_to_count where webhook_id = $1)::int as to_count,
            (select count(*) from webhooks.daily_counts where webhook_id = $1)::int as daily,
            (select count(*) from webhooks.deliveries where webhook_id = $1)::int as deliveries,
            (select count(*) from webhooks.delivery_history where webhook_id = $1)::int as history,
            (select count(*) from webhooks.delivery_results where webhook_id = $1)::int as results,
            (select count(*) from webhooks.delivery_attempts where webhook_id = $1)::int as attempts`, [webhookId]);
  return counts;
}

async function purgeBatches(maxRows?: number): Promise<Array<number | null>> {
  const batches: Array<number | null> = [];
  do {
    const { rows: [batch] } = await db().pool.query('select webhooks.purge_deleted_webhooks(coalesce($1, 10000)) as n', [maxRows ?? null]);
    batches.push(batch.n);
  } while (batches.at(-1) !== null && batches.length < 20);
  return batches;
}

test.serial("a webhook's delete takes a short history with it at once, leaves none of its counts and marks none of its days to be counted again; a delete after it in the same transaction still marks its day", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const kept = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await pastDeliveries(gone, 20);
  await pastDeliveries(kept, 2);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  t.like(await countsOf(gone.id), { days: 1, to_count: 0, daily: 1, deliveries: 20, history: 20, results: 20, attempts: 20 });

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  await client.query('delete from webhooks.webhooks where id = $1', [gone.id]);
  await client.query('delete from webhooks.deliveries where id = (select min(id) from webhooks.delivery_history where webhook_id = $1)', [kept.id]);
  await client.query('commit');

  t.deepEqual(await countsOf(gone.id), { days: 0, hours: 0, to_count: 0, daily: 0, deliveries: 0, history: 0, results: 0, attempts: 0 });
  // the other webhook's day lost a delivery: it is counted again
  t.like(await countsOf(kept.id), { days: 0, to_count: 1, deliveries: 1, history: 1, results: 1, attempts: 1 });
  // nothing was left to maintenance
  t.deepEqual(await purgeBatches(), [null]);
});

test.serial("past inline_purge_max_rows() the delete takes the oldest of them; the rest leave the views at once and the tables one day of one webhook a batch, oldest day first, webhooks deleted first first; a bad batch size is refused", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const first = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const second = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const kept = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { rows: [{ n: inline }] } = await db().pool.query('select webhooks_private.inline_purge_max_rows() as n');
  await pastDeliveries(first, inline, 5);
  await pastDeliveries(first, 7, 4);
  await pastDeliveries(first, 2, 3);
  await pastDeliveries(second, inline + 3, 3);
  await pastDeliveries(kept, 2, 3);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  await db().pool.query('delete from webhooks.webhooks where id = $1', [first.id]);
  await db().pool.query('delete from webhooks.webhooks where id = $1', [second.id]);

  // what is left is in the tables, and in no view
  t.like(await countsOf(first.id), { days: 0, daily: 0, deliveries: 0, history: 9, results: 9, attempts: 9 });
  t.like(await countsOf(second.id), { days: 0, daily: 0, deliveries: 0, history: 3, results: 3, attempts: 3 });
  const { rows: [oldest] } = await db().pool.query(
    `select count(*)::int as n from webhooks.delivery_history
     where webhook_id = $1 and created_at < now() - interval '4 days 12 hours'`, [first.id]);
  t.is(oldest.n, 0, 'the oldest day went first');

  t.deepEqual(await purgeBatches(5), [5, 2, 2, 0, 3, 0, null]);
  t.like(await countsOf(first.id), { history: 0, results: 0, attempts: 0 });
  t.like(await countsOf(second.id), { history: 0, results: 0, attempts: 0 });
  t.like(await countsOf(kept.id), { days: 1, daily: 1, deliveries: 2, history: 2, attempts: 2 });

  for (const bad of [0, -1]) {
    const error = await t.throwsAsync(db().pool.query('select webhooks.purge_deleted_webhooks($1)', [bad]));
    t.like(error, { code: '22023' });
  }
});

test.serial('maintenance purges deleted webhooks before the retention, so a day past it that held their rows is dropped in the same run', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { rows: [{ n: inline }] } = await db().pool.query('select webhooks_private.inline_purge_max_rows() as n');
  await pastDeliveries(gone, inline + 4, 12);
  await db().pool.query('delete from webhooks.webhooks where id = $1', [gone.id]);
  t.like(await countsOf(gone.id), { history: 4 });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));

  const result = await maintain(db().url);
  t.is(result.deliveriesPurged, 4);
  t.is(result.deletedWebhooksFoundWithRows, 0, 'noted by its delete: nothing written after it');
  const day = new Date(Date.now() - 12 * 86_400_000).toISOString().slice(0, 10);
  t.true(result.daysDropped.includes(day), JSON.stringify(result.daysDropped));
  t.like(await countsOf(gone.id), { history: 0, results: 0, attempts: 0 });
  t.is((await maintain(db().url)).deliveriesPurged, 0);
});

test.serial("a change written while a webhook's delete is open leaves a delivery behind; maintenance removes it, and forgets the webhook once no transaction of that time is running", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const kept = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const queued = async (webhookId: string) =>
    (await db().pool.query('select count(*)::int as n from webhooks.delivery_queue where webhook_id = $1', [webhookId])).rows[0].n;
  const noted = async () =>
    (await db().pool.query('select count(*)::int as n from webhooks_private.webhooks_deleted_recently where webhook_id = $1', [gone.id])).rows[0].n;

  // the delete, open; a change written meanwhile sees the webhook still there
  const dba = await db().pool.connect();
  t.teardown(() => dba.release());
  await dba.query('begin');
  await dba.query('delete from webhooks.webhooks where id = $1', [gone.id]);
  await f.contact(company.id);
  await dba.query('commit');
  // its delivery outlived the delete: pending, in a queue no relay serves, and in the
  // deliveries' view; in no total (a deleted webhook's counts went with it)
  t.is(await queued(gone.id), 1);
  t.like(await countsOf(gone.id), { deliveries: 1, history: 1, daily: 0 });
  t.is(await noted(), 1);

  const result = await maintain(db().url);
  t.is(result.deletedWebhooksFoundWithRows, 1);
  t.is(result.deliveriesPurged, 1);
  t.is(await queued(gone.id), 0);
  t.like(await countsOf(gone.id), { deliveries: 0, history: 0, results: 0, attempts: 0 });
  t.like(await countsOf(kept.id), { deliveries: 1, history: 1 });
  t.is(await queued(kept.id), 1);

  // forgotten once every transaction running when maintenance first saw the delete has
  // ended (those of other databases of the server count too: ask until then)
  const deadline = Date.now() + 10_000;
  while ((await noted()) > 0 && Date.now() < deadline) {
    const { rows: [again] } = await db().pool.query('select webhooks.recheck_deleted_webhooks() as n');
    t.is(again.n, 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.is(await noted(), 0);
});

test.serial("a REPEATABLE READ writer whose snapshot predates a webhook's delete can write for it later: the webhook is not forgotten while that snapshot lives, and the delivery is removed", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const noted = async () =>
    (await db().pool.query('select count(*)::int as n from webhooks_private.webhooks_deleted_recently where webhook_id = $1', [gone.id])).rows[0].n;

  // the writer's snapshot, taken before the delete; it has written nothing yet, so it
  // has no transaction id
  const writer = await db().pool.connect();
  t.teardown(async () => {
    await writer.query('rollback');
    writer.release();
  });
  await writer.query('begin isolation level repeatable read');
  await writer.query('select count(*) from crm.contacts');
  await db().pool.query('delete from webhooks.webhooks where id = $1', [gone.id]);
  // maintenance sees the delete, then sees it again with every transaction of that
  // time ended but the writer, which holds only a snapshot
  for (let i = 0; i < 3; i++) await db().pool.query('select webhooks.recheck_deleted_webhooks()');
  t.is(await noted(), 1, 'kept while a snapshot from before the delete lives');

  // the writer's change reads the subscriptions as of its snapshot: a delivery for
  // the deleted webhook
  await writer.query(`insert into crm.contacts (company_id, first_name) values ($1, 'Late')`, [company.id]);
  await writer.query('commit');
  t.like(await countsOf(gone.id), { deliveries: 1 });
  const result = await maintain(db().url);
  t.is(result.deletedWebhooksFoundWithRows, 1);
  t.like(await countsOf(gone.id), { deliveries: 0, history: 0 });
  t.is((await db().pool.query('select count(*)::int as n from webhooks.delivery_queue where webhook_id = $1', [gone.id])).rows[0].n, 0);
});

/**
 * A webhook deleted while `hold` keeps a transaction open in another database of the
 * cluster (the server's own `postgres`): the delete is forgotten all the same, at a
 * recheck or after a few (other databases' work), and the transaction is still open.
 */
async function forgottenBesideOtherDatabase(t: ExecutionContext, hold: (other: pg.Client) => Promise<void>) {
  const f = factories(db().pool);
  const company = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const elsewhere = new URL(db().url);
  elsewhere.pathname = '/postgres';
  const other = new pg.Client({ connectionString: elsewhere.toString() });
  await other.connect();
  t.teardown(() => other.end());
  await hold(other);
  await db().pool.query('delete from webhooks.webhooks where id = $1', [gone.id]);

  await until('the delete is forgotten while the other database\'s transaction is open', async () => {
    await db().pool.query('select webhooks.recheck_deleted_webhooks()');
    const { rows: [{ n }] } = await db().pool.query(
      'select count(*)::int as n from webhooks_private.webhooks_deleted_recently where webhook_id = $1', [gone.id]);
    return n === 0;
  });
  const { rows: [{ open }] } = await other.query(`select now() = statement_timestamp() as open`);
  t.false(open, 'the other transaction is still the one begun before the delete');
}

test.serial("a snapshot held open in another database of the cluster does not keep a webhook's delete noted: nothing there writes here", async (t) => {
  await forgottenBesideOtherDatabase(t, async (other) => {
    await other.query('begin isolation level repeatable read');
    await other.query('select count(*) from pg_catalog.pg_class');
  });
});

test.serial("a transaction holding an id, left open in another database of the cluster, does not keep a webhook's delete noted", async (t) => {
  await forgottenBesideOtherDatabase(t, async (other) => {
    await other.query('begin');
    await other.query('select pg_current_xact_id()');   // an id, older than the delete's
  });
});

test.serial('maintenance pauses after each batch of a purge as long as the batch took, so the purge keeps the database busy half the time at most', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { rows: [{ n: inline }] } = await db().pool.query('select webhooks_private.inline_purge_max_rows() as n');
  await pastDeliveries(gone, inline, 6);
  await pastDeliveries(gone, 5, 5);
  await pastDeliveries(gone, 6, 4);
  await db().pool.query('delete from webhooks.webhooks where id = $1', [gone.id]);

  // each batch timed as the database answers it, and each pause recorded
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const events: Array<{ batch: number } | { pause: number }> = [];
  const timed = {
    query: async (text: string) => {
      const started = performance.now();
      const result = await client.query(text);
      events.push({ batch: performance.now() - started });
      return result;
    },
  } as unknown as Pick<import('pg').Client, 'query'>;
  const purged = await purgeDeletedWebhooks(timed, async (ms) => { events.push({ pause: ms }); });
  t.is(purged, 11);
  // batches of 5 and 6, the webhook's note cleared (0), then nothing left (no pause)
  t.is(events.length, 7);
  for (let i = 0; i < 6; i += 2) {
    const { batch } = events[i] as { batch: number };
    const { pause } = events[i + 1] as { pause: number };
    t.true(pause >= batch, `pause ${pause} ms after a batch of ${batch} ms`);
  }
  t.true('batch' in events[6]);
});

test.serial('rows of a webhook gone without a note (a capture that committed just after its delete) do not hold their day past the retention', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query('delete from webhooks.webhooks where id = $1', [gone.id]);
  // as that capture writes them: straight into the tables, after the delete
  await pastDeliveries(gone, 3, 14, true);
  t.deepEqual(await purgeBatches(), [null]);
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));

  const result = await maintain(db().url);
  const day = new Date(Date.now() - 14 * 86_400_000).toISOString().slice(0, 10);
  t.true(result.daysDropped.includes(day), JSON.stringify(result.daysDropped));
  t.like(await countsOf(gone.id), { history: 0, results: 0, attempts: 0 });
});

// A webhook's delete (an admin's request) and maintenance's look at it afterwards find
// its queue rows by its key, in flight or not: they once read every company's queue
// rows, whatever their number (the queue's indexes by webhook each hold one of the
// two kinds, and "webhook_id = $1" alone can use neither).
test.serial("a webhook's delete and its recheck read its own queue rows, not every company's", async (t) => {
  const BACKLOG = 3_000;
  const f = factories(db().pool);
  await f.backlog(BACKLOG);
  const tenant = await f.company();
  const webhook = await f.webhook({ companyId: tenant.id, actions: ['contact.created'] });
  await db().pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, 3) n`, [tenant.id]);
  // and more kept deliveries than its delete takes: the rest are maintenance's to purge
  await pastDeliveries(webhook, 1_005);
  // one of them in flight
  await db().pool.query(
    `update webhooks.delivery_queue set locked_by = 'relay-a', locked_until = now() + interval '1 minute'
     where delivery_id = (select min(delivery_id) from webhooks.delivery_queue where webhook_id = $1)`, [webhook.id]);
  await db().pool.query('analyze webhooks.delivery_queue');
  const client = new pg.Client({ connectionString: db().url });
  await client.connect();
  t.teardown(() => client.end());
  const queueRowsRead = async (statement: string, values: unknown[] = []) => {
    const read = () => tableReads(client, 'webhooks.delivery_queue');
    await client.query('begin');
    const before = await read();
    await client.query(statement, values);
    const rows = (await read()) - before;
    await client.query('commit');
    return rows;
  };
  const deleted = await queueRowsRead('delete from webhooks.webhooks where id = $1', [webhook.id]);
  const { rows: [left] } = await db().pool.query(
    'select count(*)::int as n from webhooks.delivery_queue where webhook_id = $1', [webhook.id]);
  t.is(left.n, 0, 'its queue rows went with it, the one in flight too');
  t.true(deleted < 100, `the delete read ${deleted} rows of the queue (${BACKLOG} of another company's)`);
  const rechecked = await queueRowsRead('select webhooks.recheck_deleted_webhooks()');
  t.true(rechecked < 100, `the recheck read ${rechecked} rows of the queue (${BACKLOG} of another company's)`);
  const purged = await queueRowsRead('select webhooks.purge_deleted_webhooks()');
  t.true(purged < 100, `a purge batch read ${purged} rows of the queue (${BACKLOG} of another company's)`);
  const { rows: [noted] } = await db().pool.query(
    'select count(*)::int as n from webhooks_private.webhooks_to_purge where webhook_id = $1', [webhook.id]);
  t.is(noted.n, 1, 'noted for its purge');
});
