// Payloads have a bound (webhooks.max_payload_bytes, sql/25_capture.sql) and so do
// claims (claim_max_bytes, sql/30_delivery.sql): a tenant's oversized custom data is
// never queued nor sent again on every retry, and a batch of big payloads cannot make
// the claim fail for every company.
import { readFile } from 'node:fs/promises';
import test from 'ava';
import pg from 'pg';
import { createTestDatabase, useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { inTransaction } from '../helpers/sql.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

/** custom data whose payload is about `bytes` long */
const customOf = (bytes: number) => JSON.stringify({ notes: 'n'.repeat(bytes) });

const queued = async (pool: pg.Pool, ids: string[]) =>
  (await pool.query('select delivery_id from webhooks.delivery_queue where delivery_id = any ($1::bigint[])', [ids])).rows;

test('a payload over 1 MiB is not queued: the delivery is failed with the reason, a summary kept; the write goes on', async (t) => {
  const f = make();
  const company = await f.company();
  const withNotes = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['first_name', 'custom'] });
  const without = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['first_name'] });

  const contact = await f.contact(company.id, { first_name: 'Big', custom: customOf(1_100_000) });

  const [failed] = await deliveriesOf(db().pool, [withNotes.id]);
  t.is(failed.state, 'failed');
  t.is(failed.attempts, 0);
  t.regex(failed.last_error ?? '', /^not sent: its payload was 11\d{5} bytes, over the limit of 1048576 \(webhooks\.max_payload_bytes\)$/);
  t.truthy(failed.completed_at);
  t.regex(failed.message_id, /^msg_[0-9a-f]{32}$/);
  t.is(failed.payload.type, 'contact.created');
  t.deepEqual(failed.payload.data.contact, { id: Number(contact.id) });
  t.is(failed.payload.data.source, 'unknown');
  t.like(failed.payload.data.omitted, { reason: 'payload_too_large', limit: 1048576 });
  t.true(failed.payload.data.omitted.bytes > 1_100_000);
  t.deepEqual(await queued(db().pool, [failed.id]), [], 'never in the queue');
  const { rows: [counted] } = await db().pool.query(
    `select fired, succeeded, failed from webhooks_private.count_deliveries($1, $2, now() - interval '1 day', now() + interval '1 day')`,
    [withNotes.id, company.id]);
  t.deepEqual(counted, { fired: '1', succeeded: '0', failed: '1' }, 'Times Fired counts it, as failed');

  // the webhook that did not choose custom gets its delivery as ever
  const [sent] = await deliveriesOf(db().pool, [without.id]);
  t.is(sent.state, 'pending');
  t.deepEqual(sent.payload.data.contact, { id: Number(contact.id), first_name: 'Big' });
  t.is((await queued(db().pool, [sent.id])).length, 1);
});

// A company has up to 100 webhooks, each of which may choose custom data of up to
// max_payload_bytes: one change of a large contact wrote a payload for each, 100 MiB
// in the writer's transaction. Per change and company, the large payloads together
// stop at webhooks.max_payload_bytes_per_change.
test('the large payloads of one change for one company stop at max_payload_bytes_per_change; the others fail with the reason; another company and the next change have their own', async (t) => {
  const f = make();
  const owner = await f.company();
  const other = await f.company();
  const hooks = [];
  for (let i = 0; i < 4; i++) {
    hooks.push(await f.webhook({ companyId: owner.id, actions: ['contact.created', 'contact.updated'], fields: ['first_name', 'custom'] }));
  }
  const small = await f.webhook({ companyId: owner.id, actions: ['contact.created'], fields: ['first_name'] });
  const theirs = await f.webhook({ companyId: other.id, actions: ['contact.updated'], fields: ['custom'] });
  const user = await f.user(other.id);

  const setting = "set local webhooks.max_payload_bytes = '250000'; set local webhooks.max_payload_bytes_per_change = '450000'";
  const contact = await inTransaction(db().pool, setting, async (c) =>
    (await c.query('insert into crm.contacts (company_id, first_name, custom) values ($1, $2, $3) returning id',
      [owner.id, 'Big', customOf(200_000)])).rows[0]);

  const states = async (ids: string[]) => (await deliveriesOf(db().pool, ids)).map((d) => d.state);
  // two of about 200,000 bytes fit in 450,000; the third and fourth do not
  t.deepEqual(await states(hooks.map((h) => h.id)), ['pending', 'pending', 'failed', 'failed']);
  const failed = (await deliveriesOf(db().pool, [hooks[2]!.id]))[0];
  t.regex(failed.last_error ?? '',
    /^not sent: its payload of 2\d{5} bytes took this change's payloads for the company to 6\d{5} bytes, over the limit of 450000 \(webhooks\.max_payload_bytes_per_change\)$/);
  t.like(failed.payload.data.omitted, { reason: 'payload_too_large', limit: 450000, setting: 'webhooks.max_payload_bytes_per_change' });
  t.deepEqual(failed.payload.data.contact, { id: Number(contact.id) });
  t.deepEqual(await queued(db().pool, [failed.id]), [], 'never in the queue');
  t.deepEqual(await states([small.id]), ['pending'], 'a small payload is not counted');
  const refused = await db().pool.query('select webhooks.replay_delivery($1)', [failed.id]).catch((error) => error);
  t.like(refused, { code: '55000', constraint: 'delivery_payload_too_large' });
  t.regex(refused.message, /its payload was over webhooks\.max_payload_bytes_per_change/);
  // a DBA's replay by hand, through the view, is refused alike: sent, the summary would
  // have gone to the receiver as the message, signed (until 2026-12-07)
  const byHand = await db().pool.query("update webhooks.deliveries set state = 'pending', completed_at = null where id = $1", [failed.id])
    .catch((error) => error);
  t.like(byHand, { code: '55000', constraint: 'delivery_payload_too_large', column: 'state' });
  t.deepEqual(await queued(db().pool, [failed.id]), [], 'still never in the queue');

  // the next change (a statement of its own, in the same transaction too) counts anew,
  // and so does another company concerned by the same change (its user is assigned;
  // its deliveries are written after the owner's, who spent the owner's count)
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  await inTransaction(db().pool, setting, async (c) => {
    await c.query('update crm.contacts set custom = $2 where id = $1', [contact.id, customOf(210_000)]);
    await c.query('update crm.contacts set custom = $2 where id = $1', [contact.id, customOf(220_000)]);
  });
  const updates = (await deliveriesOf(db().pool, hooks.map((h) => h.id))).filter((d) => d.action === 'contact.updated');
  t.deepEqual(updates.map((d) => d.state).sort(), ['failed', 'failed', 'failed', 'failed', 'pending', 'pending', 'pending', 'pending']);
  t.deepEqual(await states([theirs.id]), ['pending', 'pending'], 'the other company has its own count');

  // a writer's own text in the setting is never an error, only a count started anew
  await inTransaction(db().pool, `${setting}; set local webhooks.change_payload_bytes = 'no count 99999999999999999999'`, (c) =>
    c.query('update crm.contacts set custom = $2 where id = $1', [contact.id, customOf(200_000)]));
  const last = (await deliveriesOf(db().pool, hooks.map((h) => h.id))).filter((d) => d.action === 'contact.updated').slice(-4);
  t.deepEqual(last.map((d) => d.state).sort(), ['failed', 'failed', 'pending', 'pending']);

  // a count below max_payload_bytes is held to it: a payload within that limit goes
  // when it is its change's first
  await inTransaction(db().pool, "set local webhooks.max_payload_bytes = '250000'; set local webhooks.max_payload_bytes_per_change = '100000'", (c) =>
    c.query('update crm.contacts set custom = $2 where id = $1', [contact.id, customOf(190_000)]));
  const held = (await deliveriesOf(db().pool, hooks.map((h) => h.id))).filter((d) => d.action === 'contact.updated').slice(-4);
  t.deepEqual(held.map((d) => d.state), ['pending', 'failed', 'failed', 'failed']);
  t.like(held[1]!.payload.data.omitted, { limit: 250000 });
});

// statement_timestamp() is one for a whole top-level statement: the two changes of
// one contact made by one DO block (or one function call) were one change to the
// budget, and the second change's payloads failed though each change alone fitted.
test('two changes of one contact in one DO block each have their own budget', async (t) => {
  const f = make();
  const company = await f.company();
  const hooks = [];
  for (let i = 0; i < 2; i++) {
    hooks.push(await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['custom'] }));
  }
  const contact = await f.contact(company.id, { first_name: 'Big' });
  await inTransaction(db().pool, "set local webhooks.max_payload_bytes = '250000'; set local webhooks.max_payload_bytes_per_change = '450000'",
    (c) => c.query(`do $$
      begin
        update crm.contacts set custom = jsonb_build_object('notes', repeat('a', 200000)) where id = ${Number(contact.id)};
        update crm.contacts set custom = jsonb_build_object('notes', repeat('b', 200000)) where id = ${Number(contact.id)};
      end $$`));
  const updates = (await deliveriesOf(db().pool, hooks.map((h) => h.id))).filter((d) => d.action === 'contact.updated');
  // two payloads of about 200,000 bytes a change: each change fits in 450,000
  t.deepEqual(updates.map((d) => [d.payload.data.contact.custom?.notes?.[0], d.state]),
    [['a', 'pending'], ['a', 'pending'], ['b', 'pending'], ['b', 'pending']]);

  // so do two status tags given in one DO block: two events, each its own change
  const tagged = [];
  for (let i = 0; i < 2; i++) {
    tagged.push(await f.webhook({ companyId: company.id, actions: ['contact.status_added'], fields: ['custom'] }));
  }
  const [one, two] = [await f.status(company.id), await f.status(company.id)];
  await inTransaction(db().pool, "set local webhooks.max_payload_bytes = '250000'; set local webhooks.max_payload_bytes_per_change = '450000'",
    (c) => c.query(`do $$
      begin
        insert into crm.contact_statuses (contact_id, status_id) values (${Number(contact.id)}, ${Number(one!.id)});
        insert into crm.contact_statuses (contact_id, status_id) values (${Number(contact.id)}, ${Number(two!.id)});
      end $$`));
  const tags = await deliveriesOf(db().pool, tagged.map((h) => h.id));
  t.deepEqual(tags.map((d) => [d.payload.data.status?.id, d.state]),
    [[Number(one!.id), 'pending'], [Number(one!.id), 'pending'], [Number(two!.id), 'pending'], [Number(two!.id), 'pending']]);
});

test('webhooks.max_payload_bytes: lower or higher, never below 64 KiB; a value that is no number leaves 1 MiB', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['custom'] });
  const created = async (setting: string, bytes: number) => {
    await inTransaction(db().pool, `set local webhooks.max_payload_bytes = '${setting}'`, (c) =>
      c.query('insert into crm.contacts (company_id, custom) values ($1, $2)', [company.id, customOf(bytes)]));
    const rows = await deliveriesOf(db().pool, [hook.id]);
    return rows[rows.length - 1].state;
  };
  t.is(await created('100000', 150_000), 'failed', 'lowered to 100,000 bytes');
  t.is(await created('100000', 90_000), 'pending');
  t.is(await created('1000', 60_000), 'pending', 'a limit under 64 KiB counts as 64 KiB');
  t.is(await created('1000', 70_000), 'failed');
  t.is(await created('lots', 1_000_000), 'pending', 'not a number: the default');
  t.is(await created('lots', 1_100_000), 'failed');
  t.is(await created(' 2097152 ', 1_100_000), 'pending', 'raised to 2 MiB');
});

test('an oversized update merges into no waiting delivery: that one keeps its payload, the oversized one fails on its own', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city', 'custom'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'Boston' });

  await db().pool.query('update crm.contacts set city = $2 where id = $1', [contact.id, 'Denver']);
  await db().pool.query('update crm.contacts set custom = $2 where id = $1', [contact.id, customOf(1_100_000)]);

  const rows = await deliveriesOf(db().pool, [hook.id]);
  t.deepEqual(rows.map((r) => r.state), ['pending', 'failed']);
  t.like(rows[0].payload.data, { contact: { id: Number(contact.id), city: 'Denver', custom: {} }, changed_fields: ['city'], merged: 1 });
  t.is(rows[1].payload.data.omitted.reason, 'payload_too_large');
});

// What a coalesced message adds to a change's payload (data.merged, changed_fields the
// union, data.previous_contact_id) counts against webhooks.max_payload_bytes as the
// rest does: a receiver whose own body limit is the documented one never gets more.
// A change whose merged message would pass the limit merges into nothing: it goes as a
// message of its own, and the one waiting keeps its payload. Walked a byte at a time
// across the edge, where the payload of the change alone fits and the merge does not.
test('at the edge of max_payload_bytes: no message queued passes it, merged or alone, and no change is lost', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city', 'custom'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const limit = 100_000;
  const limited = `set local webhooks.max_payload_bytes = '${limit}'`;
  // (the size of a payload as capture measures it: pg_column_size of the jsonb built,
  // uncompressed, not as history stores it)
  const messages = async () => (await db().pool.query(
    `select id, state, contact_id, pg_column_size(payload::text::jsonb) as bytes, payload
     from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id])).rows;
  const update = (contactId: string, column: string, value: string) =>
    inTransaction(db().pool, limited, (c) => c.query(`update crm.contacts set ${column} = $2 where id = $1`, [contactId, value]));

  // a change alone, as its own message, with a custom of 90,000 characters: how far from the limit
  const probe = await f.contact(company.id);
  await update(probe.id, 'custom', customOf(90_000));
  const [measured] = await messages();
  const edge = 90_000 + limit - measured.bytes;

  for (let k = edge - 24; k <= edge + 4; k++) {
    const alone = await f.contact(company.id);
    await update(alone.id, 'custom', customOf(k));
    const merging = await f.contact(company.id);
    await update(merging.id, 'city', `Denver ${k}`);
    await update(merging.id, 'custom', customOf(k));
  }
  const all = (await messages()).filter((m) => m.contact_id !== probe.id);
  for (const m of all) {
    if (m.state === 'failed') {
      t.is(m.payload.data.omitted?.reason, 'payload_too_large', `message ${m.id} failed for its size alone`);
    } else {
      t.true(m.bytes <= limit, `message ${m.id} (${m.payload.data.merged} change(s)) is ${m.bytes} bytes, over ${limit}`);
    }
  }
  // every change of each contact merging went: in one message, or in two
  const byContact = Map.groupBy(all, (m) => m.contact_id as string);
  let mergedAtTheEdge = 0;
  let apartAtTheEdge = 0;
  for (const [, ms] of byContact) {
    if (ms.length === 1 && ms[0].payload.data.merged !== 2) continue; // a contact "alone"
    const sent = ms.filter((m) => m.state !== 'failed');
    t.true(sent.some((m) => m.payload.data.contact.city?.startsWith('Denver')), 'the city change went');
    if (ms.length === 1) mergedAtTheEdge++;
    else if (sent.length === 2) apartAtTheEdge++;
  }
  t.true(mergedAtTheEdge > 0, 'some changes still merge, below the edge');
  t.true(apartAtTheEdge > 0, 'some go apart, past it: both sent');
});

test('a delivery never sent for its size is not replayed: replayDelivery refuses it by name, replayFailed passes it by', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['custom'] });
  await f.contact(company.id, { custom: customOf(1_100_000) });
  await f.contact(company.id);
  const [big, small] = await deliveriesOf(db().pool, [hook.id]);
  await db().pool.query(`update webhooks.deliveries set state = 'failed', completed_at = now() where id = $1`, [small.id]);

  const refused = await db().pool.query('select webhooks.replay_delivery($1)', [big.id]).catch((error) => error);
  t.like(refused, { code: '55000', constraint: 'delivery_payload_too_large', column: 'id' });
  t.regex(refused.message, new RegExp(`^delivery ${big.id} was never sent: its payload was over webhooks.max_payload_bytes`));

  const { rows } = await db().pool.query(`select id from webhooks.replay_failed($1, '-infinity')`, [hook.id]);
  t.deepEqual(rows.map((r) => r.id), [small.id]);
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => r.state), ['failed', 'pending']);
});

test('each waiting delivery carries its payload\'s size, which the claim counts: written by capture, renewed by a merge, measured again by a replay or the migration', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city', 'custom'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'Boston' });
  const size = async () => (await db().pool.query(
    `select q.payload_bytes, octet_length(h.payload::text) as text_bytes
     from webhooks.delivery_queue q join webhooks.delivery_history h on h.id = q.delivery_id and h.created_at = q.created_at
     where q.webhook_id = $1`, [hook.id])).rows;

  await db().pool.query('update crm.contacts set city = $2 where id = $1', [contact.id, 'Denver']);
  const [small] = await size();
  t.true(small.payload_bytes > 100 && small.payload_bytes < 1000, `${small.payload_bytes} bytes`);
  // a later change merges into it (coalesce_window): the size is the new payload's
  await db().pool.query('update crm.contacts set custom = $2 where id = $1', [contact.id, customOf(50_000)]);
  const [merged] = await size();
  t.true(merged.payload_bytes > 50_000 && Math.abs(merged.payload_bytes - merged.text_bytes) < 1_000, JSON.stringify(merged));

  // a replay writes the queue row again, from the payload's text
  const [delivery] = await deliveriesOf(db().pool, [hook.id]);
  await db().pool.query(`update webhooks.deliveries set state = 'failed', completed_at = now() where id = $1`, [delivery.id]);
  t.deepEqual(await size(), []);
  await db().pool.query('select webhooks.replay_delivery($1)', [delivery.id]);
  const [replayed] = await size();
  t.is(replayed.payload_bytes, replayed.text_bytes);

  // rows written before the column existed get their size from migration 0025 (run again: it is idempotent)
  await db().pool.query('update webhooks.delivery_queue set payload_bytes = null where webhook_id = $1', [hook.id]);
  await db().pool.query(await readFile(new URL('../../migrations/0025_queue_payload_bytes.sql', import.meta.url), 'utf8'));
  const [migrated] = await size();
  t.is(migrated.payload_bytes, migrated.text_bytes);
});

test('a claim returns at most p_max_bytes of bodies, and always one; the rest stay pending for the next claim', async (t) => {
  // a database of its own: a claim takes any due row
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['custom'] });
  for (let i = 0; i < 3; i++) await f.contact(company.id, { custom: customOf(40_000) });
  const ids = (await deliveriesOf(database.pool, [hook.id])).map((r) => r.id);

  const claim = (maxBytes: number | null) =>
    database.pool
      .query(
        `select delivery_id, length(body) as bytes, webhook_filled, more_due
         from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10, '{}', '{}', null, null, null, $1)`,
        [maxBytes],
      )
      .then((r) => r.rows);

  const first = await claim(100_000);
  t.deepEqual(first.map((r) => r.delivery_id), ids.slice(0, 2), 'two bodies of about 40 kB fit in 100,000 bytes, a third would not');
  t.true(first.every((r) => r.bytes > 40_000 && r.webhook_filled && r.more_due));
  t.is((await database.pool.query(`select count(*)::int as n from webhooks.deliveries where state = 'pending'`)).rows[0].n, 1);

  const second = await claim(1);
  t.deepEqual(second.map((r) => r.delivery_id), [ids[2]], 'one, however small the budget');

  t.deepEqual(await claim(null), [], 'nothing left');

  // without p_max_bytes: claim_max_bytes(), 32 MiB; two payloads of 17 MB do not fit
  const client = await database.pool.connect();
  try {
    await client.query(`set webhooks.max_payload_bytes = '20000000'`);
    for (let i = 0; i < 2; i++) {
      await client.query('insert into crm.contacts (company_id, custom) values ($1, $2)', [company.id, customOf(17_000_000)]);
    }
  } finally {
    await client.query('reset webhooks.max_payload_bytes');
    client.release();
  }
  const large = (await deliveriesOf(database.pool, [hook.id])).slice(3).map((r) => r.id);
  t.deepEqual((await claim(null)).map((r) => r.delivery_id), large.slice(0, 1));
  t.deepEqual((await claim(null)).map((r) => r.delivery_id), large.slice(1));
});

test('a relay\'s byte budget: each company gets its share of it, one that holds nothing gets one delivery however large, and no claim passes what the budget leaves', async (t) => {
  // a database of its own: a claim takes any due row
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const hooks: Record<'a' | 'b', string> = { a: '', b: '' };
  let disabled = '';
  for (const name of ['a', 'b'] as const) {
    const company = await f.company();
    hooks[name] = (await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['custom'] })).id;
    // and a webhook of a's that is disabled with deliveries waiting
    if (name === 'a') disabled = (await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['custom'] })).id;
    for (let i = 0; i < 4; i++) await f.contact(company.id, { custom: customOf(40_000) });
  }
  await database.pool.query('update webhooks.webhooks set enabled = false where id = $1', [disabled]);
  const nameOf = new Map(Object.entries(hooks).map(([name, id]) => [id, name]));
  /**
   * a claim by a relay with this byte budget that holds `heldA` bytes of webhook a:
   * how many of each webhook it leased; moreDue: whether it says that more is due now
   */
  let moreDue = false;
  const claim = async (budget: number, heldA: number) => {
    const { rows } = await database.pool.query(
      `select webhook_id, webhook_filled, more_due
       from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10, $1::bigint[], $2::integer[], null, 100,
                                            null, null, $3::bigint[], $4)`,
      heldA > 0 ? [[hooks.a], [2], [heldA], budget] : [[], [], [], budget]);
    const got: Record<string, number> = {};
    for (const row of rows) got[nameOf.get(row.webhook_id)!] = (got[nameOf.get(row.webhook_id)!] ?? 0) + 1;
    t.true(rows.every((row) => row.webhook_filled), 'a webhook cut by its share may have more due');
    moreDue = rows.some((row) => row.more_due);
    await database.pool.query(`update webhooks.delivery_queue set locked_by = null, locked_until = null, attempts = 0`);
    return got;
  };

  // two companies with work: a share of (200,000 − an eighth) ÷ 2 = 87,500 each; a
  // holds 90,000 already, b gets two bodies of about 40 kB
  t.deepEqual(await claim(200_000, 90_000), { b: 2 });
  t.false(moreDue, 'nothing more for this relay now: a is past its share');
  // a is past its share, but its disabled webhook's deliveries are failed all the
  // same, in the same claim: they are neither read nor sent, and weigh nothing
  const { rows: notSent } = await database.pool.query(
    `select state, last_error from webhooks.deliveries where webhook_id = $1`, [disabled]);
  t.deepEqual(notSent.map((r) => [r.state, r.last_error]), Array(4).fill(['failed', 'not sent: the webhook is disabled']));
  // a holds 50,000, under its share: its room of 37,500 takes no body of 40 kB, and
  // more is not due now (a claim at once would cut them again)
  t.deepEqual(await claim(200_000, 50_000), { b: 2 });
  t.false(moreDue);
  // neither holds anything: a share of 43,750 each, one body each
  t.deepEqual(await claim(100_000, 0), { a: 1, b: 1 });
  // a share of 28,672, smaller than a body: each company would get its first one,
  // but the budget (65,536) holds one of them only
  t.deepEqual(Object.values(await claim(65_536, 0)), [1]);
  t.true(moreDue, 'cut by the budget: more is due as soon as the relay has room');
  // what the budget leaves is the claim's limit: 200,000 − 130,000 held, one body of
  // b (its share, 87,500, would allow two) and none of a
  t.deepEqual(await claim(200_000, 130_000), { b: 1 });
});

// A change refused a merge for its size goes as a message of its own: the contact's
// later changes in the window merge into that newest message, not into the earlier
// one, which would take them only to be sent first with the newer values. Until
// 2026-12-07 each later change tried the earliest message alone, was refused again
// and went alone too: a message for every change, the window's promise broken.
test('after a merge refused for size, later changes merge into the newest waiting message, in order', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city', 'custom'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const limit = 100_000;
  const limited = `set local webhooks.max_payload_bytes = '${limit}'`;
  const update = (contactId: string, column: string, value: string | null) =>
    inTransaction(db().pool, limited, (c) => c.query(`update crm.contacts set ${column} = $2 where id = $1`, [contactId, value]));
  const bytesOf = async (id: string) => (await db().pool.query(
    'select pg_column_size(payload::text::jsonb) as bytes from webhooks.deliveries where id = $1', [id])).rows[0].bytes as number;

  // how far a change of first_name (the largest changed_fields here) is from the limit
  const probe = await f.contact(company.id, { city: 'Boston', custom: customOf(90_000) });
  await update(probe.id, 'first_name', 'P');
  const [measured] = await deliveriesOf(db().pool, [hook.id]);
  const k = 90_000 + limit - (await bytesOf(measured.id)) - 1;

  const contact = await f.contact(company.id, { city: 'Boston', custom: customOf(k) });
  await update(contact.id, 'first_name', 'A'); // waits: changed_fields [first_name], at the edge
  await update(contact.id, 'city', 'Denver'); // merged it would pass the limit: alone
  await update(contact.id, 'city', 'Austin'); // fits the newest: merges there
  await update(contact.id, 'city', 'Dallas');

  const rows = (await deliveriesOf(db().pool, [hook.id])).filter((r) => r.contact_id === contact.id);
  t.deepEqual(rows.map((r) => [r.state, r.payload.data.contact.city, r.payload.data.merged, r.payload.data.changed_fields]), [
    ['pending', 'Boston', 1, ['first_name']],
    ['pending', 'Dallas', 3, ['city']],
  ]);
  for (const r of rows) t.true(await bytesOf(r.id) <= limit);

  // a change small enough for the earliest merges into the newest all the same: the
  // earliest, sent first, would carry it ahead of the values of the one after
  await update(contact.id, 'custom', customOf(1_000));
  const after = (await deliveriesOf(db().pool, [hook.id])).filter((r) => r.contact_id === contact.id);
  t.deepEqual(after.map((r) => [r.payload.data.contact.city, r.payload.data.contact.custom.notes.length, r.payload.data.merged]), [
    ['Boston', k, 1],
    ['Dallas', 1_000, 4],
  ]);
});
