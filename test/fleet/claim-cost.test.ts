// A claim reads what it takes, not the backlog: with thousands of deliveries due to
// one webhook, a claim of ten reads the entries it leases and those of the rows in
// flight (fewer than the fleet-wide cap), never a tenth of the backlog, whatever the
// statistics said when the connection planned its statements.
// (Its question "has this webhook anything due?" was once planned as a hash join
// that read every due row of the queue on every claim: 18,400 of them in a backlog of
// 20,000, three milliseconds a claim.)
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { createTestDatabase } from '../helpers/db.ts';
import { factories, webhooksInBulk } from '../helpers/factories.ts';
import { indexUse, rowsRead, type PlanNode } from '../helpers/plans.ts';

const BACKLOG = 3_000;
const BOUND = BACKLOG / 10;
const CLAIM = `select delivery_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10, '{}'::bigint[], '{}'::integer[], null::bigint[])`;

for (const statistics of ['taken before the backlog', 'taken with the backlog'] as const) {
  test(`a claim of 10 from a backlog of ${BACKLOG} reads fewer than ${BOUND} index entries (statistics ${statistics})`, async (t) => {
    const database = await createTestDatabase();
    t.teardown(() => database.drop());
    const f = factories(database.pool);
    const company = await f.company();
    await f.webhook({ companyId: company.id, actions: ['contact.created'] });
    await f.webhook({ companyId: company.id, actions: ['contact.deleted'] }); // a second lane, nothing due
    if (statistics === 'taken before the backlog') await database.pool.query('analyze webhooks.delivery_queue');
    await database.pool.query(
      `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, $2::int) n`,
      [company.id, BACKLOG],
    );
    if (statistics === 'taken with the backlog') await database.pool.query('analyze webhooks.delivery_queue');

    // a relay's connection: its statements planned now, once
    const relay = new pg.Client({ connectionString: database.url });
    await relay.connect();
    t.teardown(() => relay.end());
    for (let round = 1; round <= 3; round++) {
      await relay.query('begin');
      const { result: claimed, used: reads } = await indexUse(relay, 'webhooks.delivery_queue', () => relay.query(CLAIM));
      await relay.query('commit');
      t.is(claimed.rows.length, 10);
      t.true(reads < BOUND, `claim ${round} read ${reads} index entries of the queue for 10 deliveries`);
    }
  });
}

// An ordered webhook's deliveries of one contact go one at a time: while one is on its
// way, its later ones are held back. A claim puts off those it finds so, a bounded
// number at a time (put_off_held_back, sql/28_lanes.sql), and once they are out of
// sight the claims read next to nothing of them. Stepped over on every claim, 5,000
// updates of one contact behind its delivery in flight cost every claim 15,000 index
// entries and 50 ms, whatever company it was for; stepped over no further than
// ordered_scan_rows(), 768 to 1,029 entries a claim for as long as that delivery took,
// and the webhook's other contacts waited behind them (test/relay/ordered.test.ts).
test('a claim puts an ordered webhook\'s held-back backlog of one contact out of sight at a bounded cost', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const tenant = await f.company();
  const ordered = await f.webhook({ companyId: tenant.id, actions: ['contact.updated'] });
  await database.pool.query('update webhooks.webhooks set ordered = true where id = $1', [ordered.id]);
  const contact = await f.contact(tenant.id);
  await database.pool.query(
    `do $$ begin for i in 1..5000 loop update crm.contacts set first_name = 'Update ' || i where id = ${Number(contact.id)}; end loop; end $$`);
  const other = await f.company();
  const healthy = await f.webhook({ companyId: other.id, actions: ['contact.created'] });
  await f.contact(other.id);
  await database.pool.query('analyze webhooks.delivery_queue');

  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const claim = `select delivery_id, webhook_id from webhooks_relay.claim_deliveries('relay-a', 100, interval '1 minute', 32,
                   '{}'::bigint[], '{}'::integer[], null::bigint[], 512)`;
  // the first claim leases the contact's first update and the other company's delivery
  const { rows: first } = await relay.query(claim);
  t.deepEqual(first.map((r) => r.webhook_id).sort(), [healthy.id, ordered.id].sort());
  // each claim puts off at most 32 × 8 + 1,024 of them (put_off_rows), reading a
  // few entries for each, and those of the old versions of the ones put off before
  // it until they are cleaned up: 4,900 to 10,000 entries in each of the first three
  // claims run alone, up to 17,700 beside the whole suite (whose sessions keep the
  // old versions longer), then 1 to 3,700
  const putOff = async () => (await database.pool.query(
    `select count(*)::int as n from webhooks.delivery_queue where webhook_id = $1 and held_due is not null`, [ordered.id])).rows[0].n;
  let before = await putOff();
  let lastClaimAt: Date | undefined;
  for (let round = 1; round <= 6; round++) {
    lastClaimAt = (await relay.query('select clock_timestamp() as at')).rows[0].at;
    const { result, used } = await indexUse(relay, 'webhooks.delivery_queue', () => relay.query(claim));
    t.deepEqual(result.rows, [], 'the rest of the contact\'s updates are held back');
    t.true(used < 40_000, `claim ${round} read ${used} index entries of the queue`);
    const now = await putOff();
    t.true(now - before <= 32 * 8 + 1_024, `claim ${round} put off ${now - before}`);
    before = now;
  }
  // (due as the last claim ran, not as of now: a row put off before its contact's
  // first was in flight waits held_back_recheck(), a second, and a loaded run took
  // longer than that to ask)
  const { rows: [after] } = await database.pool.query(
    `select count(*) filter (where held_due is not null)::int as put_off,
            count(*) filter (where next_attempt_at <= $2 and locked_by is null)::int as due
     from webhooks.delivery_queue where webhook_id = $1`, [ordered.id, lastClaimAt]);
  t.deepEqual(after, { put_off: 4_999, due: 0 }, 'all but the one in flight, due when its lease ends');
});

// An ordered webhook with many contacts waiting: a claim asks of each delivery it looks
// at whether an earlier one of its contact is waiting (webhooks_private.held_back),
// one short range of the contact index. Planned with the statistics of a queue
// analysed before the burst, that question walked the webhook's whole range of due
// rows instead, for each of the 256 deliveries looked at: 4,904 entries each, 1.25
// million and 113 ms a claim, and bench:sync's ordered webhook ran at a fifth of the
// plain one's rate (441 against 2,390 deliveries/s).
test('a claim of an ordered webhook with 1,000 contacts waiting reads a few entries for each delivery it looks at', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  await database.pool.query('update webhooks.webhooks set ordered = true where id = $1', [hook.id]);
  await database.pool.query('analyze webhooks.delivery_queue');
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, 1000) n`, [company.id]);
  for (let round = 1; round <= 5; round++) {
    await database.pool.query(`update crm.contacts set city = 'Round ${round}' where company_id = $1`, [company.id]);
  }
  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const claim = `select delivery_id, webhook_id from webhooks_relay.claim_deliveries('relay-a', 100, interval '1 minute', 32,
                   '{}'::bigint[], '{}'::integer[], null::bigint[], 512)`;
  for (let round = 1; round <= 3; round++) {
    const { result, used } = await indexUse(relay, 'webhooks.delivery_queue', () => relay.query(claim));
    t.is(result.rows.length, 32, 'the first deliveries of 32 contacts');
    // 256 looked at, a few entries each (the first eight of them asked about twice,
    // put_off_held_back finding none of them held back): 265 to 521
    t.true(used < 10_000, `claim ${round} read ${used} index entries of the queue`);
  }
});

// A refill asks about its own webhooks only: the walk over every webhook with
// deliveries waiting (webhooks_private.waiting_webhooks) is discovery's, and a refill
// that ran it would read an index entry for each of them.
test('a refill of one webhook reads its own range, not one entry for every webhook with deliveries waiting', async (t) => {
  const WEBHOOKS = 200;
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const hooks = [];
  // (four companies: one may have 100 webhooks, webhooks.max_webhooks_per_company)
  for (let c = 0; c < 4; c++) {
    const company = await f.company();
    for (let i = 0; i < WEBHOOKS / 4; i++) hooks.push(await f.webhook({ companyId: company.id, actions: ['contact.created'] }));
    // one delivery waiting for each webhook
    await f.contact(company.id);
  }
  await database.pool.query('analyze webhooks.delivery_queue');

  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const refill = `select delivery_id, webhook_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
                    '{}'::bigint[], '{}'::integer[], array[$1::bigint])`;
  for (const hook of hooks.slice(0, 3)) {
    await relay.query('begin');
    const { result: claimed, used: reads } = await indexUse(relay, 'webhooks.delivery_queue', () => relay.query(refill, [hook.id]));
    await relay.query('commit');
    t.deepEqual(claimed.rows.map((row) => row.webhook_id), [hook.id]);
    t.true(reads < WEBHOOKS / 4, `a refill read ${reads} index entries of the queue`);
  }
});

// Claims and settles find the lanes they need by their keys, however many webhooks
// there are. With sorts priced out (claim_deliveries), a discovery's generic plan once
// read every lane in company order and compared each with every webhook found
// (999,000 comparisons a claim over 1,000 busy webhooks: 40 ms, and 295 ms over
// 3,000), every claim merged the lanes' whole key index with the few it had served,
// and a settle with a failure read every lane to lock the few it changes.
const BUSY = 300;
const IDLE = 900;
const DISCOVERY = `select delivery_id, attempt from webhooks_relay.claim_deliveries('relay-a', 32, interval '1 minute', 32,
                     '{}'::bigint[], '{}'::integer[], null::bigint[], 256)`;

/**
 * Companies of 100 webhooks (webhooks.max_webhooks_per_company), IDLE without
 * deliveries, then BUSY with one waiting each (the newest: a walk of the lanes in key
 * order to them reads every idle lane first).
 */
async function manyLanes(t: any, { busy = BUSY, backlog = 0, idleOrdered = false } = {}) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  for (let made = 0; made < busy + IDLE; made += 100) {
    const company = await f.company();
    await database.pool.query(
      `insert into webhooks.webhooks (company_id, name, url, fields, actions, ordered)
       select $1, 'Hook ' || n, 'https://receiver.example.com/' || n, '{first_name}', '{contact.created}', $2
       from generate_series(1, 100) n`, [company.id, idleOrdered && made < IDLE]);
    if (made >= IDLE) {
      await database.pool.query(
        `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
         select w.id, w.company_id, 'contact.created', 1, '{}' from webhooks.webhooks w where w.company_id = $1`, [company.id]);
    }
  }
  // and a backlog of the newest webhook
  await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
     select w.id, w.company_id, 'contact.created', i, '{}'
     from (select * from webhooks.webhooks order by id desc limit 1) w, generate_series(1, $1::int) i`, [backlog]);
  await database.pool.query('analyze webhooks.delivery_queue, webhooks_private.lanes, webhooks.webhooks');
  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  // index entries of the lanes read by one statement
  const laneReads = async <T>(statement: string, values: unknown[] = []) => {
    const { result, used } = await indexUse(relay, 'webhooks_private.lanes', () => relay.query(statement, values));
    return { rows: result.rows as T[], reads: used };
  };
  return { relay, laneReads, database };
}

test('a discovery reads the lanes of the webhooks with deliveries waiting, each by its key, not every lane', async (t) => {
  const { relay, laneReads } = await manyLanes(t);
  for (let round = 1; round <= 3; round++) {
    await relay.query('begin');
    const { rows, reads } = await laneReads(DISCOVERY);
    await relay.query('rollback');
    t.true(rows.length > 20, `discovery ${round} leased ${rows.length}`);
    t.true(reads < BUSY + IDLE / 3, `discovery ${round} read ${reads} index entries of the lanes (${BUSY} busy, ${IDLE} idle)`);
  }
});

test('a refill of one webhook reads its own lane, however many lanes there are', async (t) => {
  // (the queue's rows all one webhook's, a backlog: planned for a claim of many rows of
  // one webhook, the lanes' update once walked their key index from the first lane to
  // the claim's)
  const { relay, laneReads } = await manyLanes(t, { busy: 0, backlog: 2_000 });
  const { rows: [busy] } = await relay.query('select max(webhook_id)::text as id from webhooks.delivery_queue');
  for (let round = 1; round <= 3; round++) {
    await relay.query('begin');
    const { rows, reads } = await laneReads<{ webhook_id: string }>(
      `select webhook_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
         '{}'::bigint[], '{}'::integer[], array[$1::bigint])`, [busy.id]);
    await relay.query('rollback');
    t.deepEqual([...new Set(rows.map((row) => row.webhook_id))], [busy.id]);
    t.is(rows.length, 10);
    t.true(reads < 10, `refill ${round} read ${reads} index entries of the lanes (${IDLE} lanes)`);
  }
});

// A claim shares the relay's slots by company, and so needs the company of every
// webhook the relay holds: the relay says it beside what it holds. Looked up by the
// claim, a refill while the relay held 448 webhooks read 452 lane index entries and
// about 1,376 buffers (2026-12-06).
test('a refill beside 448 webhooks held reads its own lane, not one for each webhook held (the relay names their companies)', async (t) => {
  const HELD = 448;
  const { relay, laneReads } = await manyLanes(t, { busy: 0, backlog: 2_000 });
  const { rows: [busy] } = await relay.query('select max(webhook_id)::text as id from webhooks.delivery_queue');
  const { rows: held } = await relay.query<{ id: string; company_id: string }>(
    'select id::text, company_id::text from webhooks.webhooks where id <> $1 order by id limit $2', [busy.id, HELD]);
  const refill = (companies: string[] | null) => laneReads<{ webhook_id: string }>(
    `select webhook_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10,
       $1::bigint[], $2::integer[], array[$3::bigint], 256, null, null, null, null${companies ? ', $4::bigint[]' : ''})`,
    [held.map((h) => h.id), held.map(() => 1), busy.id, ...(companies ? [companies] : [])]);
  for (let round = 1; round <= 3; round++) {
    await relay.query('begin');
    const { rows, reads } = await refill(held.map((h) => h.company_id));
    await relay.query('rollback');
    t.deepEqual([...new Set(rows.map((row) => row.webhook_id))], [busy.id]);
    t.is(rows.length, 10);
    t.true(reads < 10, `refill ${round} read ${reads} index entries of the lanes beside ${HELD} webhooks held`);
  }
  // a relay of the previous release names no companies: its claim looks them up
  await relay.query('begin');
  const { rows, reads } = await refill(null);
  await relay.query('rollback');
  t.is(rows.length, 10);
  t.true(reads >= HELD, `without the companies, a refill read ${reads} index entries of the lanes`);
});

test('a settle with failures locks the lanes of its webhooks by their keys, not every lane', async (t) => {
  const { relay, laneReads } = await manyLanes(t);
  for (let round = 1; round <= 3; round++) {
    const { rows: claimed } = await relay.query(DISCOVERY);
    const ids = claimed.map((row) => row.delivery_id);
    await relay.query('begin');
    const { rows: settled, reads } = await laneReads(
      `select * from webhooks_relay.settle_deliveries('relay-a', $1::bigint[], $2::integer[], $3::timestamptz[], $4::integer[],
                                                       $5::integer[], $6::text[], $7::text[], $8::integer[])`,
      [ids, claimed.map((row) => row.attempt), ids.map(() => new Date().toISOString()), ids.map(() => 5), ids.map(() => 500),
       ids.map(() => null), ids.map(() => null), ids.map(() => null)]);
    await relay.query('commit');
    t.is(settled.length, ids.length);
    t.true(reads < 4 * ids.length, `settle ${round} of ${ids.length} failures read ${reads} index entries of the lanes`);
  }
});

// A claim and a settle read the webhooks they serve, by their keys: they once read
// the ids of every company's ordered webhooks (whose deliveries go one at a time),
// each time, and compared every claimed row with each; and a claim planned for many
// rows of one webhook merged the webhooks' whole key index with its few.
test('a claim and a settle read their own webhooks, not every ordered webhook nor every webhook', async (t) => {
  const { relay, database } = await manyLanes(t, { busy: 0, backlog: 200, idleOrdered: true });
  const { rows: [ordered] } = await database.pool.query('select count(*)::int as n from webhooks.webhooks where ordered');
  t.is(ordered.n, IDLE);
  for (let round = 1; round <= 3; round++) {
    await relay.query('begin');
    const { result: ids, used: reads } = await indexUse(relay, 'webhooks.webhooks', async () => {
      const { rows: claimed } = await relay.query(DISCOVERY);
      const ids = claimed.map((row) => row.delivery_id);
      await relay.query(
        `select * from webhooks_relay.settle_deliveries('relay-a', $1::bigint[], $2::integer[], $3::timestamptz[], $4::integer[],
                                                         $5::integer[], $6::text[], $7::text[], $8::integer[])`,
        [ids, claimed.map((row) => row.attempt), ids.map(() => new Date().toISOString()), ids.map(() => 5), ids.map(() => 200),
         ids.map(() => null), ids.map(() => null), ids.map(() => null)]);
      return ids;
    });
    await relay.query('commit');
    t.is(ids.length, 32);
    t.true(reads < 50, `claim and settle ${round} read ${reads} index entries of the webhooks (${IDLE} ordered)`);
  }
});

// A claim reads its messages from the day's history partition by their whole key.
// A day's partition filled by a burst has no statistics yet: asked by id alone ("id =
// any"), the planner guessed that a batch of about 200 ids matched most of the day,
// and had parallel workers walk the day's company index for them (4 ms for a claim of
// 193; in a benchmark of larger batches Postgres CPU per delivery went from 0.029 to
// 0.045–0.062 s/1k). Counted here: the scans of each index of the history.
async function historyIndexScans(db: pg.Client): Promise<Map<string, number>> {
  const { rows } = await db.query(
    `select c.relname as name, pg_stat_get_xact_numscans(i.indexrelid)::int as scans
     from pg_index i
     join pg_class c on c.oid = i.indexrelid
     where i.indrelid in (select p.inhrelid from pg_inherits p where p.inhparent = 'webhooks.delivery_history'::regclass)`);
  return new Map(rows.map((row) => [row.name as string, row.scans as number]));
}

test('a claim reads its messages by their key from a day of history without statistics, whatever the batch', async (t) => {
  const DAY = 30_000;
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name, last_name, email, street, city, state, postal_code, custom)
     select $1, 'First ' || n, 'Last ' || n, 'c' || n || '@example.com', n || ' Main St', 'Springfield', 'VA', '22150',
            jsonb_build_object('seq', 0, 'note', repeat('x', 560))
     from generate_series(1, 1000) n`, [company.id]);
  await database.pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions, max_in_flight)
     values ($1, 'Bulk', 'https://receiver.example.com/bulk', '{first_name,last_name,email,street,city,state,postal_code,custom}',
             '{contact.updated}', 1000)`, [company.id]);
  // a burst of updates: a day of history written before anything analyses it
  for (let from = 1; from <= DAY; from += 1000) {
    await database.pool.query(
      `update crm.contacts c set custom = jsonb_set(c.custom, '{seq}', to_jsonb(s.seq))
       from (select seq, row_number() over () as n from generate_series($2::int, $2::int + 999) seq) s
       where c.company_id = $1 and c.id = (select min(id) from crm.contacts where company_id = $1) + s.n - 1`,
      [company.id, from]);
  }
  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  for (const batch of [100, 150, 193, 250, 300]) {
    await relay.query('begin');
    const before = await historyIndexScans(relay);
    const { rows } = await relay.query(
      `select delivery_id, body from webhooks_relay.claim_deliveries('relay-a', $1, interval '1 minute', 1000,
         '{}'::bigint[], '{}'::integer[], null::bigint[], 2000)`, [batch]);
    const after = await historyIndexScans(relay);
    await relay.query('rollback');
    t.is(rows.length, batch);
    t.true(rows.every((row) => JSON.parse(row.body).data.contact.custom.note.length === 560));
    const scanned = [...after].filter(([name, scans]) => scans > (before.get(name) ?? 0)).map(([name]) => name);
    t.true(scanned.length > 0 && scanned.every((name) => name.endsWith('_pkey')),
      `a claim of ${batch} read the history through ${scanned.join(', ')}`);
  }
});

// The hand-back after a lost claim answer (release_unheld_leases) reads the leases in
// flight, never the backlog's pending rows: it runs before the relay's next claim.
test(`the hand-back of unheld leases reads the leases in flight, not a backlog of ${BACKLOG}`, async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // statistics of an empty queue: a sequential scan looks cheapest
  await database.pool.query('analyze webhooks.delivery_queue');
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, $2::int) n`,
    [company.id, BACKLOG],
  );
  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const { rows: claimed } = await relay.query(CLAIM);
  t.is(claimed.length, 10);

  const seqScans = async () => (await relay.query(
    `select pg_stat_get_xact_numscans('webhooks.delivery_queue'::regclass)::int as n`)).rows[0].n as number;
  await relay.query('begin');
  const scansBefore = await seqScans();
  const { result, used } = await indexUse(relay, 'webhooks.delivery_queue', () => relay.query(
    `select webhooks_relay.release_unheld_leases('relay-a', $1::bigint[]) as released`, [claimed.slice(0, 4).map((r) => r.delivery_id)]));
  t.is(await seqScans() - scansBefore, 0, 'no sequential scan of the queue');
  await relay.query('commit');
  t.is(result.rows[0].released, 6, 'the six it did not hold');
  t.true(used < BOUND, `it read ${used} index entries of the queue`);
});

// A discovery over many companies with work ranks a window of their lanes, not all of
// them: with every webhook with deliveries due found first and ranked after, a claim
// of 32 over 1,000 companies with one delivery due each read 1,063 index entries of
// the queue, as many of the lanes and of the webhooks (over 10,000 companies, 10,000
// of each and 91,000 buffers a claim); a window, about 350 of each. The
// window moves on with each discovery of a connection, so every company comes into
// one: the discoveries that lease everything are as many as before.
test('a discovery over 1,000 companies with a delivery due each reads a window of them, and comes round to every one', async (t) => {
  const COMPANIES = 1_000;
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(
    `insert into crm.companies (name) select 'Company ' || n from generate_series(1, $1::int) n`, [COMPANIES]);
  await database.pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select c.id, 'Hook', 'https://receiver.example.com/' || c.id, '{first_name}', '{contact.created}' from crm.companies c`);
  await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
     select w.id, w.company_id, 'contact.created', 1, '{}' from webhooks.webhooks w`);
  await database.pool.query('analyze webhooks.delivery_queue, webhooks_private.lanes, webhooks.webhooks');
  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const served = new Set<string>();
  let claims = 0;
  for (;;) {
    const { result, used } = await indexUse(relay, 'webhooks.delivery_queue', () => relay.query(
      `select webhook_id from webhooks_relay.claim_deliveries('relay-a', 32, interval '1 minute', 32,
         '{}'::bigint[], '{}'::integer[], null::bigint[], 512)`));
    if (result.rows.length === 0) break;
    claims++;
    for (const row of result.rows) served.add(row.webhook_id);
    // (the first windows: later ones walk over the index entries of the rows leased
    // before, until they are cleaned up)
    if (claims <= 3) t.true(used < COMPANIES / 2, `discovery ${claims} read ${used} index entries of the queue`);
  }
  t.is(served.size, COMPANIES, 'every company\'s delivery leased');
  t.is(claims, Math.ceil(COMPANIES / 32));
});

// A company whose webhooks are many fills a window of lanes walked in webhook order:
// beside one of 2,000 webhooks with work, another company's webhook came into a
// discovery's window (256 lanes at a claim of 32) once in eight discoveries, and its
// deliveries waited for them (test/fleet/many-webhooks.test.ts: a p99 of 1.5 s). A
// discovery walks the companies one after the other, a batch of each company's
// webhooks at most (discovery_company_lanes): the other company's lane is in every
// window, and the discovery reads a batch of the company's lanes, not a window (with a
// window of 256 and a lane of each company beside it, 328-387 index entries of the
// queue and 352-355 of the lanes; walked by company, 101-131 and 129-131).
test('a discovery beside a company of 2,000 webhooks with work leases another company\'s delivery every time, reading a batch of its lanes', async (t) => {
  const HOSTILE = 2_000;
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const hostile = await f.company();
  await webhooksInBulk(database.pool, hostile.id, HOSTILE, { name: 'Hostile' });
  await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
     select w.id, w.company_id, 'contact.deleted', i, '{}' from webhooks.webhooks w, generate_series(1, 3) i
     where w.company_id = $1`, [hostile.id]);
  const healthy = await f.company();
  const hook = await f.webhook({ companyId: healthy.id, actions: ['contact.created'] });
  await database.pool.query('analyze webhooks.delivery_queue, webhooks_private.lanes, webhooks.webhooks');

  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const reads: string[] = [];
  for (let round = 1; round <= 8; round++) {
    const contact = await f.contact(healthy.id);
    // (in a transaction: the counts are the transaction's)
    await relay.query('begin');
    const { result: { result, used }, used: laneReads } = await indexUse(relay, 'webhooks_private.lanes',
      () => indexUse(relay, 'webhooks.delivery_queue', () => relay.query(
        `select webhook_id from webhooks_relay.claim_deliveries('relay-a', 32, interval '1 minute', 32,
           '{}'::bigint[], '{}'::integer[], null::bigint[], 512)`)));
    await relay.query('commit');
    const leased = result.rows.filter((row) => row.webhook_id === hook.id);
    t.is(leased.length, 1, `discovery ${round} leased ${leased.length} of the other company's deliveries (contact ${contact.id})`);
    t.true(result.rows.length > 16, `discovery ${round} leased ${result.rows.length}`);
    t.true(used < 256, `discovery ${round} read ${used} index entries of the queue`);
    t.true(laneReads < 256, `discovery ${round} read ${laneReads} index entries of the lanes`);
    reads.push(`${used}/${laneReads}`);
  }
  t.log(`index entries of the queue/of the lanes read by each discovery: ${reads.join(', ')}`);
});

// A discovery walks the queue's index by company one probe a webhook with deliveries
// waiting, whatever its backlog, as the walk in webhook order did: a company's few
// webhooks (the usual case) cost what they did before the walk by company.
test('a discovery reads one entry of the queue\'s index by company for each webhook with deliveries waiting', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  for (let i = 0; i < 3; i++) await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, 100) n`, [company.id]);
  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const companyIndexEntries = async () => (await relay.query(
    `select pg_stat_get_xact_tuples_returned('webhooks.delivery_queue_company_due_idx'::regclass)::int as n`)).rows[0].n as number;
  for (let round = 1; round <= 3; round++) {
    await relay.query('begin');
    const before = await companyIndexEntries();
    const { rows } = await relay.query(
      `select webhook_id from webhooks_relay.claim_deliveries('relay-a', 32, interval '1 minute', 32,
         '{}'::bigint[], '{}'::integer[], null::bigint[], 512)`);
    const entries = await companyIndexEntries() - before;
    // (rolled back: the entries of rows leased stay in the index until a vacuum, and a
    // later walk steps over them)
    await relay.query('rollback');
    t.is(new Set(rows.map((row) => row.webhook_id)).size, 3, `discovery ${round} served the three webhooks`);
    t.is(entries, 3, `discovery ${round} read ${entries} entries of the index by company`);
  }
});

// The walk stops at a window of lanes that may send; lanes that may not (their rows
// retrying later, their breaker open, paced ahead) it walked past without end: 2,000
// webhooks of one company whose every delivery waits for a retry (endpoints that
// fail) cost every discovery of every relay a probe each, 2,000 and more index
// entries of the queue; walking no further than twice its window, 517-532. They count
// towards their company's batch (discovery_company_lanes) now: a discovery walks a
// batch of them, 34-44 entries, the next discovery the next batch, and every other
// company's lanes meanwhile.
test('a discovery beside 2,000 webhooks whose deliveries all wait for a retry reads a batch of them, not all', async (t) => {
  const HOSTILE = 2_000;
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const hostile = await f.company();
  await webhooksInBulk(database.pool, hostile.id, HOSTILE, { name: 'Hostile' });
  await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, next_attempt_at)
     select w.id, w.company_id, 'contact.deleted', 1, '{}', now() + interval '1 hour' from webhooks.webhooks w
     where w.company_id = $1`, [hostile.id]);
  const healthy = await f.company();
  const hook = await f.webhook({ companyId: healthy.id, actions: ['contact.created'] });
  await database.pool.query('analyze webhooks.delivery_queue, webhooks_private.lanes, webhooks.webhooks');

  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const reads: number[] = [];
  for (let round = 1; round <= 4; round++) {
    await f.contact(healthy.id);
    await relay.query('begin');
    const { result, used } = await indexUse(relay, 'webhooks.delivery_queue', () => relay.query(
      `select webhook_id from webhooks_relay.claim_deliveries('relay-a', 32, interval '1 minute', 32,
         '{}'::bigint[], '{}'::integer[], null::bigint[], 512)`));
    await relay.query('commit');
    t.deepEqual(result.rows.map((row) => row.webhook_id), [hook.id], `discovery ${round}`);
    t.true(used < 128, `discovery ${round} read ${used} index entries of the queue`);
    reads.push(used);
  }
  t.log(`index entries of the queue read by each discovery: ${reads.join(', ')}`);
});

// A discovery ranks a window of lanes: at the relay's default claim of 200, walked
// in webhook order alone, 1,600 lanes of one company of 2,000 webhooks with a backlog
// each, though a claim serves 200 lanes at most: every discovery read 1,900 to 3,000
// index entries of the queue and 2,200 of the lanes, 19,000 buffers, 60-90 ms. Walked
// company by company, no more lanes of each than a claim serves (discovery_company_lanes),
// a discovery reads about 760 and 800 (the lanes: walked, locked, counted and marked
// served, about 200 each), 6,500 buffers, and the company's next lanes come into the
// next discoveries. Moving the company's place past the lanes served read the lanes
// it had served again (901, until 2026-12-06): the claim knows them.
test('a discovery beside a company of 2,000 webhooks with a backlog each reads a claim\'s worth of its lanes, and goes round them', async (t) => {
  const HOSTILE = 2_000;
  const CLAIM = 200;
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const hostile = await f.company();
  await webhooksInBulk(database.pool, hostile.id, HOSTILE, { name: 'Hostile' });
  await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
     select w.id, w.company_id, 'contact.deleted', i, '{}' from webhooks.webhooks w, generate_series(1, 5) i
     where w.company_id = $1`, [hostile.id]);
  const healthy = await f.company();
  const hook = await f.webhook({ companyId: healthy.id, actions: ['contact.created'] });
  await database.pool.query('analyze webhooks.delivery_queue, webhooks_private.lanes, webhooks.webhooks');

  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const reads: string[] = [];
  const served = new Set<string>();
  for (let round = 1; round <= 12; round++) {
    await f.contact(healthy.id);
    await relay.query('begin');
    const started = performance.now();
    const { result: { result, used }, used: laneReads } = await indexUse(relay, 'webhooks_private.lanes',
      () => indexUse(relay, 'webhooks.delivery_queue', () => relay.query(
        `select webhook_id from webhooks_relay.claim_deliveries('relay-a', $1, interval '1 minute', 1,
           '{}'::bigint[], '{}'::integer[], null::bigint[], 512)`, [CLAIM])));
    const ms = performance.now() - started;
    await relay.query('commit');
    for (const row of result.rows) served.add(row.webhook_id);
    t.is(result.rows.filter((row) => row.webhook_id === hook.id).length, 1, `discovery ${round} leased the other company's delivery`);
    t.true(result.rows.length >= CLAIM / 2, `discovery ${round} leased ${result.rows.length}`);
    t.true(used < CLAIM * 5, `discovery ${round} read ${used} index entries of the queue`);
    t.true(laneReads <= CLAIM * 4 + 5, `discovery ${round} read ${laneReads} index entries of the lanes`);
    reads.push(`${used}/${laneReads} ${ms.toFixed(0)} ms`);
  }
  t.true(served.size > HOSTILE / 2, `${served.size} webhooks served in 12 discoveries`);
  t.log(`index entries of the queue/of the lanes read by each discovery: ${reads.join(', ')}`);
});

// Each company whose webhooks with work are more than a discovery walks of one keeps
// its own place (discovery_places): beside each other, companies of many webhooks
// each go round their own, and every webhook comes into a window in turn.
test('companies of many webhooks with work each: every webhook of each is served in turn, a batch of discoveries', async (t) => {
  const COMPANIES = 3;
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const companies = [];
  for (let c = 0; c < COMPANIES; c++) {
    const company = await f.company();
    companies.push(company);
    await webhooksInBulk(database.pool, company.id, EACH);
  }
  // three deliveries each: a webhook served keeps deliveries waiting
  await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
     select w.id, w.company_id, 'contact.deleted', i, '{}' from webhooks.webhooks w, generate_series(1, 3) i`);
  await database.pool.query('analyze webhooks.delivery_queue, webhooks_private.lanes, webhooks.webhooks');
  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const served = new Set<string>();
  const discoveries = Math.ceil((COMPANIES * EACH) / 32) * 2;
  for (let round = 1; round <= discoveries; round++) {
    const { rows } = await relay.query(
      `select webhook_id from webhooks_relay.claim_deliveries('relay-a', 32, interval '1 minute', 1,
         '{}'::bigint[], '{}'::integer[], null::bigint[], 512)`);
    t.true(rows.length >= 30, `discovery ${round} leased ${rows.length}`);
    for (const row of rows) served.add(row.webhook_id);
  }
  t.is(served.size, COMPANIES * EACH, `webhooks served in ${discoveries} discoveries`);
});

// One company of EACH webhooks with three deliveries due each, and a relay's
// connection; discover() is a claim of a relay of SLOTS slots, one delivery a webhook.
const EACH = 150;
const SLOTS = 16;
const SHARE = SLOTS - SLOTS / 8;   // (one slot in eight kept for a company that holds none)

async function manyWebhooksScene(t: ExecutionContext) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const company = await factories(database.pool).company();
  await webhooksInBulk(database.pool, company.id, EACH);
  await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
     select w.id, w.company_id, 'contact.deleted', i, '{}' from webhooks.webhooks w, generate_series(1, 3) i`);
  await database.pool.query('analyze webhooks.delivery_queue, webhooks_private.lanes, webhooks.webhooks');
  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  return { database, relay };
}

const discover = (relay: pg.Client) => relay.query<{ webhook_id: string }>(
  `select webhook_id from webhooks_relay.claim_deliveries('relay-a', 32, interval '1 minute', 1,
     '{}'::bigint[], '{}'::integer[], null::bigint[], $1)`, [SLOTS]);

// A company whose webhooks with work are more than a discovery walks of one gets its
// share of the claim out of the batch it walks: its place moves past the webhooks it
// was served (or could not be now), not past the whole batch, whose rest waited until
// the company's walk came round again (until 2026-12-06: 138 of 150 webhooks served in
// the 11 discoveries that serve each once, and some twice before others once).
test('a company of many webhooks with work, its share smaller than a batch: each discovery serves the webhooks after those the last served, every one in turn', async (t) => {
  const { relay } = await manyWebhooksScene(t);
  const servedIn = new Map<string, number[]>();
  const discoveries = Math.ceil(EACH / SHARE);
  for (let round = 1; round <= discoveries; round++) {
    const { rows } = await discover(relay);
    t.is(rows.length, SHARE, `discovery ${round} leased its share`);
    for (const row of rows) servedIn.set(row.webhook_id, [...(servedIn.get(row.webhook_id) ?? []), round]);
  }
  t.is(servedIn.size, EACH, `webhooks served in ${discoveries} discoveries`);
  const twice = [...servedIn].filter(([, rounds]) => rounds.length > 1);
  t.true(twice.every(([, rounds]) => rounds[1] === discoveries),
         `served again before every webhook was served once: ${JSON.stringify(twice)}`);
  // in turn: discovery k serves the k-th share of the webhooks in their order
  const { rows: hooks } = await relay.query<{ id: string }>('select w.id::text from webhooks.webhooks w order by w.id');
  hooks.forEach((hook, i) => t.is(servedIn.get(hook.id)?.[0], Math.floor(i / SHARE) + 1, `webhook ${i + 1}`));
});

// A webhook whose turn comes first in its company's share but that yields nothing
// (its due rows held by another transaction, which the claim skips) is passed over,
// not a webhook left for lack of room: held as one, it kept its company's place where
// it was, and the company's walk served the same batch of webhooks for as long.
test('a company of many webhooks with work, one of them yielding nothing: its place moves past it, and every other webhook is served within a round of the company', async (t) => {
  const { database, relay } = await manyWebhooksScene(t);
  const { rows: hooks } = await database.pool.query<{ id: string }>('select w.id::text from webhooks.webhooks w order by w.id');
  // the first webhook's rows held by a transaction outside the relay
  const holder = await database.pool.connect();
  t.teardown(async () => { await holder.query('rollback'); holder.release(); });
  await holder.query('begin');
  await holder.query('select 1 from webhooks.delivery_queue where webhook_id = $1 for update', [hooks[0]!.id]);
  const served = new Set<string>();
  const discoveries = Math.ceil((EACH - 1) / (SHARE - 1)) + 1;
  for (let round = 1; round <= discoveries; round++) {
    const { rows } = await discover(relay);
    for (const row of rows) served.add(row.webhook_id);
  }
  t.false(served.has(hooks[0]!.id));
  t.is(served.size, EACH - 1, `webhooks served in ${discoveries} discoveries`);
});

// A burn-down's scene, for the counts of one claim or settle: one company's webhooks
// (each gives a claim at most its max_in_flight, 32) with a delivery due for each of
// its contacts, and a relay's connection that is sent, as notices, the plan of every
// statement it runs, nested ones too, once explainNext() has been called.
interface PlanWithBuffers extends PlanNode { 'Shared Hit Blocks': number; 'Shared Read Blocks': number }

async function burnDownScene(t: ExecutionContext, { hooks, contacts, analyze = true }: { hooks: number; contacts: number; analyze?: boolean }) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  for (let i = 0; i < hooks; i++) await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, $2::int) n`,
    [company.id, contacts]);
  if (analyze) await database.pool.query('analyze webhooks.delivery_queue, webhooks_private.lanes, webhooks.webhooks');
  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  const plans: { 'Query Text': string; Plan: PlanWithBuffers }[] = [];
  relay.on('notice', (notice) => {
    const json = notice.message?.match(/plan:\s*(\{[\s\S]*\})\s*$/)?.[1];
    if (json) plans.push(JSON.parse(json));
  });
  /** The plans of the next statement (until its reset), and no others. */
  const explainNext = async () => {
    await relay.query(`load 'auto_explain';
      set auto_explain.log_min_duration = 0; set auto_explain.log_analyze = on; set auto_explain.log_timing = off;
      set auto_explain.log_buffers = on; set auto_explain.log_nested_statements = on;
      set auto_explain.log_format = json; set auto_explain.log_level = notice`);
    plans.length = 0;
  };
  const explainNoMore = () => relay.query('reset auto_explain.log_min_duration');
  return { database, relay, plans, explainNext, explainNoMore };
}

/** A claim of the relay 'relay-a' of up to `limit` deliveries, `perWebhook` of each webhook at most. */
const BURN_DOWN_CLAIM = `select delivery_id, body from webhooks_relay.claim_deliveries('relay-a', $1, interval '1 minute', $2,
  '{}'::bigint[], '{}'::integer[], null::bigint[], 512)`;

/** The deliveries' results, each a 204, as a receiver answering at once makes them. */
const settleAs204 = (relay: pg.Client, ids: string[]) => relay.query(
  `select * from webhooks_relay.settle_deliveries('relay-a', $1::bigint[], array_fill(1, array[$2::int]),
     array_fill(now(), array[$2::int]), array_fill(1, array[$2::int]), array_fill(204, array[$2::int]),
     array_fill(null::text, array[$2::int]), array_fill(null::text, array[$2::int]), array_fill(null::int, array[$2::int]))`,
  [ids, ids.length]);

/** Rows of the queue a plan's scans read (an update's or a delete's own node counts the rows it writes, apart). */
const queueRows = (plan: PlanNode): number =>
  (plan['Node Type'].endsWith('Scan') ? rowsRead({ ...plan, Plans: [] }).get('delivery_queue') ?? 0 : 0)
  + (plan.Plans ?? []).reduce((sum, child) => sum + queueRows(child), 0);

/** Pairs of rows a plan's joins compared and dropped. */
const pairsDropped = (plan: PlanNode): number =>
  (plan['Rows Removed by Join Filter'] ?? 0) * (plan['Actual Loops'] ?? 1)
  + (plan.Plans ?? []).reduce((sum, child) => sum + pairsDropped(child), 0);

// A burn-down's claim (one company, a few webhooks with a backlog, nothing held) reads
// each row it leases as it locks it (lane_claim) and as it leases it, by the ctid it
// was locked at: no more. Until 2026-12-06 the lease read each row a second time by
// that ctid, for its webhook's id, which lane_claim had and did not return (a buffer
// and a row a delivery, 96 of about 1,700 buffers a claim of 96), and lane_claim
// counted the due rows of each lane it took but the last, which decides nothing
// unless another relay holds one of the lanes (64 index entries; auto_explain of the
// claim's statements).
test('a burn-down\'s claim reads each queue row it leases twice: as it locks it, and as it leases it', async (t) => {
  const HOOKS = 3;
  const CLAIM = 96;
  const { relay, plans, explainNext, explainNoMore } = await burnDownScene(t, { hooks: HOOKS, contacts: 100 });
  for (let round = 1; round <= 3; round++) {
    await explainNext();
    const { rows } = await relay.query(BURN_DOWN_CLAIM, [CLAIM, 32]);
    await explainNoMore();
    t.is(rows.length, CLAIM);
    const lease = plans.filter((p) => /^\s*with chosen as/.test(p['Query Text']));
    t.is(lease.length, 1);
    t.is(queueRows(lease[0]!.Plan), CLAIM, `claim ${round}: the lease read the queue's rows`);
    const read = plans.reduce((sum, p) => sum + queueRows(p.Plan), 0);
    // (and the discovery's walk: an entry for each webhook, and one more)
    t.true(read <= 2 * CLAIM + 2 * HOOKS, `claim ${round} of ${CLAIM} read ${read} rows of the queue`);
    t.log(`claim ${round}: ${read} rows of the queue read for ${CLAIM} leased`);
    await settleAs204(relay, rows.map((row) => row.delivery_id));
  }
});

// A claim reads its messages from the day's history partition by their ids, in one
// walk of the primary key (id = any (…): Postgres 17 takes the ids in order, and
// those on one leaf page with one visit), planned for a few ids whatever the batch.
// Until 2026-12-06 it probed the key once for each message, three buffers a delivery
// (the index's root, a leaf, the row's page), 16.7 buffers a delivery being the
// whole claim's in a burn-down (auto_explain with buffers).
test('a burn-down\'s claim reads its messages with about one buffer a delivery, not three', async (t) => {
  const CLAIM = 96;
  const { relay, plans, explainNext, explainNoMore } = await burnDownScene(t, { hooks: 3, contacts: 1000, analyze: false });
  for (let round = 1; round <= 3; round++) {
    await explainNext();
    const { rows } = await relay.query(BURN_DOWN_CLAIM, [CLAIM, 32]);
    await explainNoMore();
    t.is(rows.length, CLAIM);
    t.true(rows.every((row) => JSON.parse(row.body).type === 'contact.created'));
    const read = plans.filter((p) => /^\s*select array_agg\(h\.id\)/.test(p['Query Text']));
    t.is(read.length, 1, `claim ${round}: one statement reads the messages`);
    const buffers = read[0]!.Plan['Shared Hit Blocks'] + read[0]!.Plan['Shared Read Blocks'];
    t.log(`claim ${round}: ${buffers} buffers for the messages of ${CLAIM} deliveries`);
    t.true(buffers <= CLAIM, `claim ${round}: ${buffers} buffers for the messages of ${CLAIM} deliveries`);
  }
});

// A settle of successes ends each delivery by its key, reading its queue row once: as
// it deletes it. Until 2026-12-06 it read each row first (the statement's "mine",
// whose ctid the delete then reached by a scan of its own): two rows and about a
// buffer more a delivery (auto_explain of the settle's statement).
test('a burn-down\'s settle of successes reads each queue row it ends once', async (t) => {
  const CLAIM = 200;
  const { database, relay, plans, explainNext, explainNoMore } = await burnDownScene(t, { hooks: 7, contacts: 300 });
  for (let round = 1; round <= 3; round++) {
    const { rows } = await relay.query(BURN_DOWN_CLAIM, [CLAIM, CLAIM]);
    t.is(rows.length, CLAIM);
    // (the statistics a busy queue has: its rows leased)
    await database.pool.query('analyze webhooks.delivery_queue');
    await explainNext();
    const { rows: settled } = await settleAs204(relay, rows.map((row) => row.delivery_id));
    await explainNoMore();
    t.is(settled.length, CLAIM);
    t.true(settled.every((row) => row.state === 'succeeded'));
    // (the settle's own statements: those that call others are counted in them)
    const read = plans.filter((p) => !/settle_(deliveries|results)\(/.test(p['Query Text']))
      .reduce((sum, p) => sum + queueRows(p.Plan), 0);
    t.log(`settle ${round}: ${read} rows of the queue read for ${CLAIM} ended`);
    t.is(read, CLAIM, `settle ${round}: rows of the queue read`);
    // and pairs each result with its row once: a join of every result with every row
    // (the results' CTE scanned again for each row, 40,000 pairs a settle of 200) cost
    // the settle 80 µs of Postgres CPU a delivery in bench:sql, reading no more rows
    const paired = plans.reduce((sum, p) => sum + pairsDropped(p.Plan), 0);
    t.true(paired <= CLAIM, `settle ${round}: ${paired} pairs of a result and a row compared and dropped`);
  }
  const { rows: [left] } = await database.pool.query(
    `select (select count(*) from webhooks.delivery_queue where locked_by is not null)::int as leased,
            (select count(*) from webhooks.delivery_attempts where status_code = 204)::int as attempts`);
  t.deepEqual(left, { leased: 0, attempts: 3 * CLAIM });
});

// A window with no lane that may send now says when the first of them may
// (discovery_round_note, sql/28_lanes.sql): for lanes waiting for a retry, from the
// walk itself, no lane read; for lanes due but held by their breakers, one lane read
// more each (their open_until), beside the one that found them held. A round of such
// windows says the earliest of them all, for a sleeping relay's polls (relay/quiet.ts).
test('a fruitless round says when its first lane may send, reading no lane for retries and one more for each lane held by its breaker', async (t) => {
  const COMPANIES = 600;
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await database.pool.query(`insert into crm.companies (name) select 'Dead ' || n from generate_series(1, $1::int) n`, [COMPANIES]);
  await database.pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select c.id, 'Dead', 'https://receiver.example.com/dead/' || c.id, '{first_name}', '{contact.deleted}'
     from crm.companies c where c.name like 'Dead %'`);
  await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, attempts, next_attempt_at)
     select w.id, w.company_id, 'contact.deleted', 1, '{}', 1, now() + interval '1 hour' from webhooks.webhooks w`);
  await database.pool.query('analyze webhooks.delivery_queue, webhooks_private.lanes, webhooks.webhooks');
  const relay = new pg.Client({ connectionString: database.url });
  await relay.connect();
  t.teardown(() => relay.end());
  // one round: discoveries until one says nothing more, the lanes' index entries each read
  const round = async () => {
    const reads: number[] = [];
    for (let more = true; more;) {
      await relay.query('begin');
      const { result, used } = await indexUse(relay, 'webhooks_private.lanes', () => relay.query(
        `select count(delivery_id)::int as leased, coalesce(bool_or(more_due), false) as more,
                (select extract(epoch from now()) * 1000)::float8 as now_ms,
                max(current_setting('bpd_webhooks.discovery_round_quiet', true)) as quiet
         from (select) answered
         left join lateral webhooks_relay.claim_deliveries('relay-a', 32, interval '1 minute', 32, '{}', '{}', null, 512) on true`));
      await relay.query('commit');
      const [row] = result.rows;
      t.is(row.leased, 0);
      more = row.more;
      reads.push(used);
      if (!more) return { reads, quiet: String(row.quiet ?? ''), nowMs: Number(row.now_ms) };
    }
    throw new Error('unreachable');
  };
  const retries = await round();
  t.log(`retries: index entries of the lanes by each discovery: ${retries.reads.join(', ')}; said: ${retries.quiet}`);
  t.deepEqual(retries.reads.filter((n) => n > 0), [], 'no lane read');
  const untilMs = Number(retries.quiet.split(' ')[1]);
  t.true(untilMs > retries.nowMs + 59 * 60_000 && untilMs < retries.nowMs + 61 * 60_000, `the first may send in ${untilMs - retries.nowMs} ms`);

  await database.pool.query(`update webhooks.delivery_queue set next_attempt_at = now()`);
  await database.pool.query(
    `update webhooks_private.lanes set failures = 5, failing_since = now(), open_until = now() + interval '10 minutes'`);
  // (the old versions' index entries gone: each lane one entry a read)
  await database.pool.query('vacuum webhooks_private.lanes');
  const held = await round();
  t.log(`breakers open: index entries of the lanes by each discovery: ${held.reads.join(', ')}; said: ${held.quiet}`);
  // (a window walks 256 lanes, the last one round past its first: 512 entries each,
  // 256 without the earliest time)
  for (const reads of held.reads) t.true(reads <= 2 * 256, `${reads} lane entries read by a window of 256`);
  const heldUntilMs = Number(held.quiet.split(' ')[1]);
  t.true(heldUntilMs > held.nowMs + 9 * 60_000 && heldUntilMs < held.nowMs + 11 * 60_000, `the first may send in ${heldUntilMs - held.nowMs} ms`);
});
