// The backlog figure of /metrics (webhooks_ops.backlog, sql/58_operations.sql): the
// deliveries due now and how long the longest-waiting of them has been due. Rows in
// flight and retries waiting for a later attempt are not due. And where it is, for the
// operator an alert woke (webhooks.backlog_by_webhook): per webhook, of every company.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { indexUse, tableReads } from '../helpers/plans.ts';

const db = useTestDatabase(test);

test('the backlog counts the due deliveries of every webhook, and the oldest of them', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  // the contact before the webhooks: its capture writes nothing
  const contact = await f.contact(company.id);
  const [a, b, quiet] = await Promise.all([1, 2, 3].map(() => f.webhook({ companyId: company.id, actions: ['contact.created'] })));

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    t.deepEqual((await client.query('select due::int, oldest_due_seconds from webhooks_ops.backlog()')).rows[0],
      { due: 0, oldest_due_seconds: 0 });

    const delivery = (webhookId: string, state: string, nextAttempt: string) => client.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, next_attempt_at,
                                        locked_by, locked_until)
       values ($1, $2, 'contact.created', $3, '{}', $4, case when $4 = 'in_flight' then 1 else 0 end, now() + $5::interval,
               case when $4 = 'in_flight' then 'relay-1' end, case when $4 = 'in_flight' then now() + interval '1 minute' end)`,
      [webhookId, company.id, contact.id, state, nextAttempt]);
    await delivery(a.id, 'pending', '-10 seconds');
    await delivery(a.id, 'pending', '-2 seconds');
    await delivery(a.id, 'in_flight', '-90 seconds');
    await delivery(b.id, 'pending', '-30 seconds');
    await delivery(b.id, 'pending', '1 hour');
    await delivery(quiet.id, 'pending', '5 minutes');

    const { rows: [backlog] } = await client.query('select due::int, oldest_due_seconds from webhooks_ops.backlog()');
    t.deepEqual(backlog, { due: 3, oldest_due_seconds: 30 });
  } finally {
    await client.query('rollback');
  }
});

// A webhook whose circuit breaker is open holds its deliveries until its next probe:
// they wait for their receiver, not for a relay, and a receiver that is down is one
// company's matter (the breaker, then auto_disable_after). Counted, one company's dead
// receiver held WebhookBacklogOld (oldest due over 300 s) and, on a quiet night,
// WebhookRelaysIdleWithBacklog firing for the operator until the webhook was disabled
// days later, relays and every other company's deliveries fine.
// (serial, its rows vacuumed away after it: as the large ones below)
test.serial('the deliveries a webhook\'s open breaker holds are not in the backlog; once a probe is due, they are', async (t) => {
  const f = factories(db().pool);
  const [one, two] = [await f.company(), await f.company()];
  const contact = await f.contact(one.id);
  const dead = await f.webhook({ companyId: one.id, actions: ['contact.created'] });
  const fine = await f.webhook({ companyId: two.id, actions: ['contact.created'] });

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const { rows: [{ cap }] } = await client.query('select webhooks_private.backlog_due_cap() as cap');
    // the dead receiver's webhook: more due than the cap, the oldest an hour ago
    await client.query(
      `insert into webhooks.delivery_queue (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at)
       select 9500000000000 + n, now(), $1::bigint, $2::bigint, 'contact.created'::webhooks.action, $3::bigint, now() - interval '1 hour'
       from generate_series(1, $4::int + 5000) n
       union all
       select 9600000000000, now(), $5::bigint, $6::bigint, 'contact.created'::webhooks.action, $3::bigint, now() - interval '10 seconds'`,
      [dead.id, one.id, contact.id, cap, fine.id, two.id]);
    const breaker = (openUntil: string) => client.query(
      `update webhooks_private.lanes set failures = 6, failing_since = now() - interval '1 hour', open_until = now() + $2::interval
       where webhook_id = $1`, [dead.id, openUntil]);
    const backlog = async () => (await client.query('select due::int, round(oldest_due_seconds)::int as oldest from webhooks_ops.backlog()')).rows[0];

    await breaker('30 seconds');
    t.deepEqual(await backlog(), { due: 1, oldest: 10 }, 'the other company\'s delivery alone');
    await breaker('-1 second');
    t.deepEqual(await backlog(), { due: cap, oldest: 3600 }, 'a probe due: waiting for a relay');
  } finally {
    await withoutItsRows(client);
  }
});

// A webhook at its own limit (its rate_limit's next slot ahead, or as many in flight as
// its own max_in_flight) holds its due deliveries at the pace its company chose: they
// wait for that pace, not for a relay. Counted, one import of 10,000 contacts into a
// webhook paced at 1 a second held WebhookBacklogOld firing for hours, every relay idle
// or busy elsewhere. Once the webhook is below its limit and its deliveries still wait,
// the relays are behind: they count again.
// (serial, its rows vacuumed away after it: as the large ones below)
test.serial('the deliveries of a webhook at its own rate_limit or max_in_flight are not in the backlog; below its limit, they are', async (t) => {
  const f = factories(db().pool);
  const [one, two, three] = [await f.company(), await f.company(), await f.company()];
  const contact = await f.contact(one.id);
  const paced = await f.webhook({ companyId: one.id, actions: ['contact.created'] });
  const capped = await f.webhook({ companyId: two.id, actions: ['contact.created'] });
  const fine = await f.webhook({ companyId: three.id, actions: ['contact.created'] });
  await db().pool.query('update webhooks.webhooks set rate_limit = 1 where id = $1', [paced.id]);
  await db().pool.query('update webhooks.webhooks set max_in_flight = 2 where id = $1', [capped.id]);
  await Promise.all(Array.from({ length: 30 }, () => f.webhook({ companyId: three.id, actions: ['contact.updated'] })));

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const delivery = (webhookId: string, companyId: string, state: string, nextAttempt: string) => client.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, next_attempt_at,
                                        locked_by, locked_until)
       values ($1, $2, 'contact.created', $3, '{}', $4, case when $4 = 'in_flight' then 1 else 0 end, now() + $5::interval,
               case when $4 = 'in_flight' then 'relay-1' end, case when $4 = 'in_flight' then now() + interval '1 minute' end)
       returning id`,
      [webhookId, companyId, contact.id, state, nextAttempt]);
    await delivery(paced.id, one.id, 'pending', '-1 hour');
    await delivery(paced.id, one.id, 'pending', '-30 minutes');
    await delivery(capped.id, two.id, 'pending', '-2 hours');
    await delivery(capped.id, two.id, 'in_flight', '-3 hours');
    const { rows: [second] } = await delivery(capped.id, two.id, 'in_flight', '-3 hours');
    await delivery(fine.id, three.id, 'pending', '-10 seconds');
    const pace = (nextSlot: string) => client.query(
      'update webhooks_private.lanes set paced_until = now() + $2::interval where webhook_id = $1', [paced.id, nextSlot]);
    const backlog = async () => (await client.query('select due::int, round(oldest_due_seconds)::int as oldest from webhooks_ops.backlog()')).rows[0];

    // read at every scrape: the webhooks with limits of their own by their index, not
    // every webhook (30 more without a limit here, the other tests' besides)
    const reads = () => tableReads(client, 'webhooks.webhooks', { indexes: true });
    await pace('500 milliseconds');
    const readsBefore = await reads();
    t.deepEqual(await backlog(), { due: 1, oldest: 10 }, 'the third company\'s delivery alone');
    const read = await reads() - readsBefore;
    t.true(read <= 2 * 2, `webhooks' rows and index entries read: ${read}`);
    await pace('-1 second');
    t.deepEqual(await backlog(), { due: 3, oldest: 3600 }, 'its next slot passed: waiting for a relay');
    await client.query('delete from webhooks.delivery_queue where delivery_id = $1', [second.id]);
    t.deepEqual(await backlog(), { due: 4, oldest: 7200 }, 'below its max_in_flight: waiting for a relay');
  } finally {
    await withoutItsRows(client);
  }
});

// Whether failures are widespread (webhooks_ops.failing, read at every scrape): the
// enabled webhooks in a run of failed attempts and their companies, from the failing
// lanes alone; a lane's update within a run (one more failure) or a claim's stays HOT.
test.serial('the failing figure counts the webhooks in a run of failures and their companies, from their lanes alone', async (t) => {
  const f = factories(db().pool);
  const [one, two] = [await f.company(), await f.company()];
  const hooks = await Promise.all([one, one, two, ...Array.from({ length: 60 }, () => two)]
    .map((c) => f.webhook({ companyId: c.id, actions: ['contact.created'] })));
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const failing = async () => (await client.query('select webhooks::int, companies::int from webhooks_ops.failing()')).rows[0];
    const before = await failing();
    await client.query(
      `update webhooks_private.lanes set failures = 1, failing_since = now() where webhook_id = any ($1::bigint[])`,
      [[hooks[0].id, hooks[1].id, hooks[2].id, hooks[4].id]]);
    // a disabled webhook's lane keeps its failures until it is enabled again: not failing now
    await client.query('update webhooks.webhooks set enabled = false, disabled_at = now() where id = $1', [hooks[4].id]);
    const reads = () => tableReads(client, 'webhooks_private.lanes', { indexes: true });
    const readsBefore = await reads();
    t.deepEqual(await failing(), { webhooks: before.webhooks + 3, companies: before.companies + 2 });
    const read = await reads() - readsBefore;
    // (an entry each and its row, and the entries other tests' rolled-back failures left
    // until a vacuum: not the 63 lanes of this test's webhooks, nor the others')
    t.true(read <= (before.webhooks + 4) * 2 + 10, `lanes' rows and index entries read: ${read}`);

    const hot = async () => (await client.query(
      `select pg_stat_get_xact_tuples_hot_updated('webhooks_private.lanes'::regclass)::int as n`)).rows[0].n as number;
    const hotBefore = await hot();
    await client.query('update webhooks_private.lanes set failures = failures + 1 where webhook_id = $1', [hooks[0].id]);
    await client.query(`update webhooks_private.lanes set served_at = now(), paced_until = now() + interval '1 second'
                        where webhook_id = $1`, [hooks[3].id]);
    t.is(await hot(), hotBefore + 2, 'one more failure in a run, and a claim\'s update, are HOT');
  } finally {
    await client.query('rollback');
  }
});

test('where the backlog is: one row per webhook with deliveries on their way, of every company, the longest-waiting first; only for its owner', async (t) => {
  const f = factories(db().pool);
  const [one, two] = [await f.company(), await f.company()];
  const contact = await f.contact(one.id);
  const stuck = await f.webhook({ companyId: one.id, actions: ['contact.created'], name: 'Stuck' });
  const busy = await f.webhook({ companyId: two.id, actions: ['contact.created'], name: 'Busy' });
  const later = await f.webhook({ companyId: two.id, actions: ['contact.created'], name: 'Later' });
  await f.webhook({ companyId: two.id, actions: ['contact.created'], name: 'Idle' });

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const delivery = (webhook: { id: string; company_id: string }, state: string, nextAttempt: string) => client.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, next_attempt_at,
                                        locked_by, locked_until)
       values ($1, $2, 'contact.created', $3, '{}', $4, case when $4 = 'in_flight' then 1 else 0 end, now() + $5::interval,
               case when $4 = 'in_flight' then 'relay-1' end, case when $4 = 'in_flight' then now() + interval '1 minute' end)`,
      [webhook.id, webhook.company_id, contact.id, state, nextAttempt]);
    await delivery(stuck, 'pending', '-1 hour');
    await delivery(stuck, 'pending', '-10 seconds');
    await delivery(stuck, 'pending', '2 hours');
    await delivery(busy, 'in_flight', '-5 seconds');
    await delivery(busy, 'in_flight', '-5 seconds');
    await delivery(busy, 'pending', '-1 minute');
    await delivery(later, 'pending', '1 day');
    // the breaker of the stuck one is open
    await client.query(
      `select webhooks_private.lane_results(array_fill($1::bigint, array[6]), array_fill(now() - interval '1 hour', array[6]),
                                            array_fill(500, array[6]), array_fill(null::text, array[6]))`, [stuck.id]);

    const { rows } = await client.query(
      `select company_id::text, webhook_id::text, name, enabled, due::int, later::int, in_flight::int,
              round(extract(epoch from now() - oldest_due_at))::int as waited_s, failures_in_a_row, paused_until > now() as paused
       from webhooks.backlog_by_webhook()`);
    t.deepEqual(rows, [
      { company_id: one.id, webhook_id: stuck.id, name: 'Stuck', enabled: true, due: 2, later: 1, in_flight: 0, waited_s: 3600,
        failures_in_a_row: 6, paused: true },
      { company_id: two.id, webhook_id: busy.id, name: 'Busy', enabled: true, due: 1, later: 0, in_flight: 2, waited_s: 60,
        failures_in_a_row: 0, paused: null },
      { company_id: two.id, webhook_id: later.id, name: 'Later', enabled: true, due: 0, later: 1, in_flight: 0, waited_s: null,
        failures_in_a_row: 0, paused: null },
    ]);
  } finally {
    await client.query('rollback');
  }
  // it crosses companies: the API's roles may not call it
  const viewer = await db().pool.connect();
  t.teardown(() => viewer.release());
  await viewer.query('begin');
  await viewer.query('set local role webhook_viewer');
  const refused = await t.throwsAsync(viewer.query('select * from webhooks.backlog_by_webhook()'));
  t.is((refused as { code?: string }).code, '42501');
  await viewer.query('rollback');
});

// Why a webhook's due deliveries wait, in webhooks.backlog_by_webhook(): the backlog
// figure leaves out those held by the webhook's open breaker or at a limit its company
// set, and the row of such a webhook says which (waits_on), with its own rate_limit and
// max_in_flight; a webhook whose due deliveries count in the figure waits on the relays.
// Until 2026-12-07 its row showed a due count the figure did not, and not why.
test('where the backlog is: each webhook\'s row says what its due deliveries wait on, the figure\'s way', async (t) => {
  const f = factories(db().pool);
  const [one, two, three, four] = [await f.company(), await f.company(), await f.company(), await f.company()];
  const contact = await f.contact(one.id);
  const broken = await f.webhook({ companyId: one.id, actions: ['contact.created'] });
  const paced = await f.webhook({ companyId: two.id, actions: ['contact.created'] });
  const capped = await f.webhook({ companyId: three.id, actions: ['contact.created'] });
  const fine = await f.webhook({ companyId: four.id, actions: ['contact.created'] });
  const later = await f.webhook({ companyId: four.id, actions: ['contact.created'] });
  await db().pool.query('update webhooks.webhooks set rate_limit = 1 where id = $1', [paced.id]);
  await db().pool.query('update webhooks.webhooks set max_in_flight = 2, rate_limit = 50 where id = $1', [capped.id]);

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const delivery = (webhook: { id: string; company_id: string }, state: string, nextAttempt: string) => client.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, next_attempt_at,
                                        locked_by, locked_until)
       values ($1, $2, 'contact.created', $3, '{}', $4, case when $4 = 'in_flight' then 1 else 0 end, now() + $5::interval,
               case when $4 = 'in_flight' then 'relay-1' end, case when $4 = 'in_flight' then now() + interval '1 minute' end)
       returning id`,
      [webhook.id, webhook.company_id, contact.id, state, nextAttempt]);
    await delivery(broken, 'pending', '-1 hour');
    await delivery(paced, 'pending', '-50 minutes');
    await delivery(capped, 'pending', '-40 minutes');
    await delivery(capped, 'in_flight', '-3 hours');
    const { rows: [second] } = await delivery(capped, 'in_flight', '-3 hours');
    await delivery(fine, 'pending', '-30 minutes');
    await delivery(later, 'pending', '1 day');
    await client.query(
      `select webhooks_private.lane_results(array_fill($1::bigint, array[6]), array_fill(now() - interval '1 hour', array[6]),
                                            array_fill(500, array[6]), array_fill(null::text, array[6]))`, [broken.id]);
    await client.query(`update webhooks_private.lanes set paced_until = now() + interval '1 minute' where webhook_id = $1`, [paced.id]);

    const ours = [broken.id, paced.id, capped.id, fine.id, later.id];
    const rows = async () => (await client.query(
      `select webhook_id::text, due::int, in_flight::int, rate_limit, max_in_flight, waits_on
       from webhooks.backlog_by_webhook() where webhook_id = any ($1::bigint[])`, [ours])).rows;
    t.deepEqual(await rows(), [
      { webhook_id: broken.id, due: 1, in_flight: 0, rate_limit: null, max_in_flight: null, waits_on: 'breaker' },
      { webhook_id: paced.id, due: 1, in_flight: 0, rate_limit: 1, max_in_flight: null, waits_on: 'rate_limit' },
      { webhook_id: capped.id, due: 1, in_flight: 2, rate_limit: 50, max_in_flight: 2, waits_on: 'max_in_flight' },
      { webhook_id: fine.id, due: 1, in_flight: 0, rate_limit: null, max_in_flight: null, waits_on: 'relay' },
      { webhook_id: later.id, due: 0, in_flight: 0, rate_limit: null, max_in_flight: null, waits_on: null },
    ]);
    // the rows that wait on a relay are those the figure counts (one statement: one snapshot)
    const { rows: [both] } = await client.query(
      `select (select due::int from webhooks_ops.backlog()) as figure,
              (select coalesce(sum(due), 0)::int from webhooks.backlog_by_webhook() where waits_on = 'relay') as listed`);
    t.is(both.listed, both.figure, 'the due of the webhooks waiting on a relay are the figure\'s');

    // the next slot passed, and one in flight back: they wait on a relay again
    await client.query(`update webhooks_private.lanes set paced_until = now() - interval '1 second' where webhook_id = $1`, [paced.id]);
    await client.query('delete from webhooks.delivery_queue where delivery_id = $1', [second.id]);
    t.deepEqual((await rows()).map((r) => r.waits_on), ['breaker', 'relay', 'relay', 'relay', null]);
  } finally {
    await client.query('rollback');
  }
});

test('a backlog past the cap is counted up to it and read no further; the oldest due is still exact', async (t) => {
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const { rows: [{ cap }] } = await client.query('select webhooks_private.backlog_due_cap() as cap');
    // one webhook with more due than the cap, three with one due each (the oldest among
    // them), one with a retry later (the queue has no foreign key to the webhooks)
    await client.query(
      `insert into webhooks.delivery_queue (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at)
       select 1000000000000 + n, now(), 1000000000, 1000000000, 'contact.created'::webhooks.action, n, now() - interval '1 minute'
       from generate_series(1, $1::int + 5000) n
       union all
       select 2000000000000 + n, now(), 1000000000 + n, 1000000000 + n, 'contact.created'::webhooks.action, n,
              now() - make_interval(mins => 10 * n) + case when n = 4 then interval '1 day' else interval '0' end
       from generate_series(1, 4) n`, [cap]);
    const { result: { rows: [backlog] }, used } = await indexUse(client, 'webhooks.delivery_queue',
      () => client.query('select due::int, round(oldest_due_seconds)::int as oldest from webhooks_ops.backlog()'));
    t.deepEqual(backlog, { due: cap, oldest: 30 * 60 }, 'as many as the cap: at least that many are due');
    t.true(used <= cap + 20, `queue index entries read: ${used}`);
  } finally {
    await client.query('rollback');
  }
});

// A large test's rows rolled back, and their index entries vacuumed away: an index
// scan reads (and counts) the entries of rows rolled back until it or vacuum removes
// them, and the next test would count them as its own.
async function withoutItsRows(client: { query(sql: string): Promise<unknown> }): Promise<void> {
  await client.query('rollback');
  await db().pool.query('vacuum (index_cleanup on) webhooks.delivery_queue');
}

// (serial: alone, so that no other test's rows, seen or not, are in the index it reads,
// nor its rows in theirs)
test.serial('10,000 companies with one due delivery each: the oldest due costs no index entry more than the count reads', async (t) => {
  const COMPANIES = 10_000;
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    // each company's webhook with one delivery due, the longest-waiting in the middle,
    // and ten more webhooks with a retry later only (the queue has no foreign key to
    // the webhooks)
    await client.query(
      `insert into webhooks.delivery_queue (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at)
       select 3000000000000 + n, now(), 3000000000 + n, 3000000000 + n, 'contact.created'::webhooks.action, n,
              now() - case when n = $1::int / 2 then interval '1 hour' else interval '1 minute' end
       from generate_series(1, $1::int) n
       union all
       select 4000000000000 + n, now(), 3000000000 + $1::int + n, 3000000000 + $1::int + n, 'contact.created'::webhooks.action, n,
              now() + interval '1 hour'
       from generate_series(1, 10) n`, [COMPANIES]);
    const wholeScans = async () => (await client.query(
      `select pg_stat_get_xact_numscans('webhooks.delivery_queue'::regclass)::int as n`)).rows[0].n as number;
    const scansBefore = await wholeScans();
    const { result: { rows: [backlog] }, used } = await indexUse(client, 'webhooks.delivery_queue',
      () => client.query('select due::int, round(oldest_due_seconds)::int as oldest from webhooks_ops.backlog()'));
    t.deepEqual(backlog, { due: COMPANIES, oldest: 3600 });
    t.is(await wholeScans(), scansBefore, 'the queue is read by its index, not scanned whole');
    // the due rows counted, and the first entry of each webhook with a retry later only
    t.true(used <= COMPANIES + 10 + 5, `queue index entries read: ${used}`);
  } finally {
    await withoutItsRows(client);
  }
});

// (serial, as the one above)
test.serial('a queue longer than the cap with fewer due: the webhooks after the cap\'s entries are counted by their ranges, exactly', async (t) => {
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const { rows: [{ cap }] } = await client.query('select webhooks_private.backlog_due_cap() as cap');
    // one webhook with more retries waiting for later than the cap, ten due before them
    // and, after it, three webhooks with ten due each, the oldest of all among them
    await client.query(
      `insert into webhooks.delivery_queue (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at)
       select 5000000000000 + n, now(), 5000000000, 5000000000, 'contact.created'::webhooks.action, n,
              case when n <= 10 then now() - interval '1 minute' else now() + interval '1 hour' end
       from generate_series(1, $1::int + 100) n
       union all
       select 6000000000000 + n, now(), 5000000000 + n % 3 + 1, 5000000000 + n % 3 + 1, 'contact.created'::webhooks.action, n,
              now() - case when n = 7 then interval '2 hours' else interval '5 minutes' end
       from generate_series(1, 30) n`, [cap]);
    const { result: { rows: [backlog] }, used } = await indexUse(client, 'webhooks.delivery_queue',
      () => client.query('select due::int, round(oldest_due_seconds)::int as oldest from webhooks_ops.backlog()'));
    t.deepEqual(backlog, { due: 40, oldest: 7200 });
    // the cap's entries, the first webhook's due ones again, the others' first entries and ranges
    t.true(used <= cap + 10 + 3 + 30 + 5, `queue index entries read: ${used}`);
  } finally {
    await withoutItsRows(client);
  }
});

// (serial, as the ones above)
// One tenant's backlog past the cap, in a webhook that comes first in the index, beside
// 2,000 companies with one delivery due each: the scan of the cap's entries read that
// one webhook's rows alone, and the oldest due then took one index probe (a descent
// of the index) for each of the 2,000 other webhooks: 2,003 scans of the queue's
// indexes at every scrape, where without that tenant it reads them all in one. The
// index is read in chunks now, each from the webhook after the last one's, stepping
// over the rest of a webhook whose rows run past a chunk: one tenant's backlog costs
// the others' figure a chunk and its count, not a probe each.
test.serial('one tenant\'s backlog past the cap does not cost a probe for every other webhook with work', async (t) => {
  const COMPANIES = 2_000;
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const { rows: [{ cap }] } = await client.query('select webhooks_private.backlog_due_cap() as cap');
    await client.query(
      `insert into webhooks.delivery_queue (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at)
       select 7000000000000 + n, now(), 7000000000, 7000000000, 'contact.created'::webhooks.action, n, now() - interval '1 minute'
       from generate_series(1, $1::int + 5000) n
       union all
       select 8000000000000 + n, now(), 7000000000 + n, 7000000000 + n, 'contact.created'::webhooks.action, n,
              now() - case when n = $2::int / 2 then interval '1 hour' else interval '1 minute' end
       from generate_series(1, $2::int) n`, [cap, COMPANIES]);
    const { result: { result: { rows: [backlog] }, used: entries }, used: scans } = await indexUse(client, 'webhooks.delivery_queue',
      () => indexUse(client, 'webhooks.delivery_queue',
        () => client.query('select due::int, round(oldest_due_seconds)::int as oldest from webhooks_ops.backlog()')),
      'scans');
    t.deepEqual(backlog, { due: cap, oldest: 3600 });
    t.log(`queue index scans: ${scans}, entries: ${entries}`);
    t.true(scans < COMPANIES / 10, `queue index scans: ${scans}`);
    t.true(entries <= 2 * cap + COMPANIES, `queue index entries read: ${entries}`);
  } finally {
    await withoutItsRows(client);
  }
});

// (serial, as the ones above)
// Webhooks of many rows each past the cap: the chunks do not read all their rows, whose
// first entries a probe each finds for less (backlog_probe_rows).
test.serial('2,000 webhooks with 40 rows waiting each: the webhooks past the cap\'s entries cost a probe each, not their rows', async (t) => {
  const WEBHOOKS = 2_000;
  const EACH = 40;
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    const { rows: [{ cap }] } = await client.query('select webhooks_private.backlog_due_cap() as cap');
    // half of each webhook's rows due, the longest-waiting in the last webhook
    await client.query(
      `insert into webhooks.delivery_queue (delivery_id, created_at, webhook_id, company_id, action, contact_id, next_attempt_at)
       select 9000000000000 + w * 100 + n, now(), 9000000000 + w, 9000000000 + w, 'contact.created'::webhooks.action, n,
              case when n % 2 = 0 then now() + interval '1 hour'
                   when w = $1::int and n = 1 then now() - interval '2 hours'
                   else now() - interval '1 minute' end
       from generate_series(1, $1::int) w, generate_series(1, $2::int) n`, [WEBHOOKS, EACH]);
    const { result: { rows: [backlog] }, used } = await indexUse(client, 'webhooks.delivery_queue',
      () => client.query('select due::int, round(oldest_due_seconds)::int as oldest from webhooks_ops.backlog()'));
    t.deepEqual(backlog, { due: cap, oldest: 7200 });
    t.log(`queue index entries read: ${used} of ${WEBHOOKS * EACH}`);
    // the first chunk (the cap's entries), the due rows after it counted up to the cap,
    // and a probe for each webhook after it: 31,520 of the 80,000
    t.true(used <= 2 * cap + WEBHOOKS, `queue index entries read: ${used}`);
  } finally {
    await withoutItsRows(client);
  }
});
