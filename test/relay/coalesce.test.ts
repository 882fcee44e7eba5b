// Coalescing (webhooks.webhooks.coalesce_window): a burst of updates of one contact is
// one message; other actions are never merged nor delayed. The window is long here and
// its end is brought forward in SQL, so no assertion depends on the clock.
import test from 'ava';
import { inTransaction } from '../helpers/sql.ts';
import { gatedReplies } from '../helpers/receiver.ts';
import { relayScene, testRelay, waitForRows } from '../helpers/relay.ts';

test('50 updates inside the window: one POST, the union of changed fields, merged = 50; after the window a new message; a delete is never merged', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated', 'contact.deleted'], fields: ['city', 'phone'], url: receiver.url('/sync') });
  receiver.route('/sync', { secret: hook.secret });
  await pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'City 0' });
  const other = await f.contact(company.id, { city: 'Elsewhere' });

  for (let i = 1; i <= 50; i++) {
    const column = i === 25 ? 'phone' : 'city';
    await inTransaction(pool, "set local webhooks.source = 'import'", (c) =>
      c.query(`update crm.contacts set ${column} = $2 where id = $1`, [contact.id, i === 25 ? '555-0125' : `City ${i}`]));
  }
  await pool.query(`update crm.contacts set city = 'Other 1' where id = $1`, [other.id]);

  const { rows } = await pool.query(
    `select id, message_id, payload, state, next_attempt_at > now() + interval '50 minutes' as waiting
     from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.is(rows.length, 2, 'one delivery per contact');
  const [burst] = rows;
  t.true(burst.waiting, 'waits out its window');
  t.deepEqual(burst.payload.data.changed_fields, ['city', 'phone']);
  t.is(burst.payload.data.merged, 50);
  t.deepEqual(burst.payload.data.contact, { id: Number(contact.id), city: 'City 50', phone: '555-0125' });
  t.is(burst.payload.data.source, 'import');
  // what a DBA counts: one firing a message, the 50 changes of the burst one of them
  // (Times Fired and webhooks.daily_counts count deliveries; data.merged the changes)
  const { rows: [counted] } = await pool.query(
    `select sum(fired)::int as fired, sum(pending)::int as pending from webhooks.daily_counts where webhook_id = $1`, [hook.id]);
  t.deepEqual(counted, { fired: 2, pending: 2 });
  t.is((await pool.query('select 1 from webhooks.fire_history where webhook_id = $1', [hook.id])).rows.length, 2);

  // the window ends: one POST
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await pool.query(`update webhooks.deliveries set next_attempt_at = now() where webhook_id = $1`, [hook.id]);
  const sent = await receiver.waitFor(2, { path: '/sync' });
  const first = sent.find((r) => JSON.parse(r.body).data.contact.id === Number(contact.id))!;
  t.is(first.headers['webhook-id'], burst.message_id);
  t.is(JSON.parse(first.body).data.merged, 50);
  t.true(first.verified);

  // after the window: a new message
  await pool.query(`update crm.contacts set city = 'Later' where id = $1`, [contact.id]);
  // a delete: never merged, never delayed, and it ends the wait of the update before it
  await pool.query(`delete from crm.contacts where id = $1`, [contact.id]);
  const after = await waitForRows(pool,
    `select message_id, action, payload, state from webhooks.deliveries where webhook_id = $1 and contact_id = $2 order by id`,
    [hook.id, contact.id], (r) => r.length === 3 && r.every((d) => d.state === 'succeeded'), 60_000);
  t.deepEqual(after.map((d) => d.action), ['contact.updated', 'contact.updated', 'contact.deleted']);
  t.not(after[1].message_id, after[0].message_id);
  t.is(after[1].payload.data.merged, 1);
  t.is(after[2].payload.data.merged, undefined);
  t.is(receiver.received('/sync').length, 4);
});

test('with a window, other actions are due at once and carry no count', async (t) => {
  const { database, f, company } = await relayScene(t);
  const pool = database.pool;
  const status = await f.status(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.status_added', 'contact.updated'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const contact = await f.contact(company.id);
  await pool.query(`update crm.contacts set city = 'Waiting' where id = $1`, [contact.id]);
  await pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);
  const { rows } = await pool.query(
    `select action, payload, next_attempt_at <= now() as due from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows.map((r) => [r.action, r.due, r.payload.data.merged]), [
    ['contact.created', true, undefined],
    ['contact.updated', true, 1],   // its wait ended by the status change that followed it
    ['contact.status_added', true, undefined],
  ]);
});

test('a webhook without a window: every update is its own message, due at once; the window is bounded by name', async (t) => {
  const { database, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const contact = await f.contact(company.id);
  for (let i = 0; i < 3; i++) await pool.query(`update crm.contacts set city = $2 where id = $1`, [contact.id, `C${i}`]);
  const { rows } = await pool.query(
    `select payload, next_attempt_at <= now() as due from webhooks.deliveries where webhook_id = $1`, [hook.id]);
  t.is(rows.length, 3);
  t.true(rows.every((r) => r.due && r.payload.data.merged === undefined));
  const refused = await pool.query(`select webhooks.set_webhook_delivery($1, '2 hours', false)`, [hook.id]).catch((e) => e);
  t.like(refused, { code: '23514', constraint: 'webhooks_coalesce_window_range' });
});

test('saves (source platform) merge like updates: one message per action, each with its own count', async (t) => {
  const { database, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.saved', 'contact.updated'], fields: ['city', 'phone'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'Start' });
  const save = (column: string, value: string) => inTransaction(pool, "set local webhooks.source = 'platform'", (c) =>
    c.query(`update crm.contacts set ${column} = $2 where id = $1`, [contact.id, value]));
  await save('city', 'Saved 1');
  await save('phone', '555-0101');
  await pool.query(`update crm.contacts set city = 'Imported' where id = $1`, [contact.id]);
  await save('city', 'Saved 2');

  const { rows } = await pool.query(
    `select action, payload, next_attempt_at > now() + interval '50 minutes' as waiting
     from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows.map((r) => [r.action, r.waiting, r.payload.data.merged, r.payload.data.changed_fields, r.payload.data.contact.city]), [
    ['contact.saved', true, 3, ['city', 'phone'], 'Saved 2'],
    ['contact.updated', true, 1, ['city'], 'Imported'],
  ]);
  t.is(rows[0].payload.data.source, 'platform');
});

test('a window shortened or turned off ends the wait of the updates waiting out the old one: no delete or later update goes before them', async (t) => {
  const { database, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated', 'contact.deleted'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const kept = await f.contact(company.id);
  const deleted = await f.contact(company.id);
  for (const contact of [kept, deleted]) {
    await pool.query(`update crm.contacts set city = 'First' where id = $1`, [contact.id]);
  }
  const waits = async () => (await pool.query(
    `select contact_id, action, (next_attempt_at - created_at)::text as waits, next_attempt_at <= now() as due
     from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id])).rows;
  t.deepEqual((await waits()).map((r) => r.waits), ['01:00:00', '01:00:00']);

  // shortened: they wait the new window from their change, not the old one
  await pool.query(`select webhooks.set_webhook_delivery($1, '10 seconds', false)`, [hook.id]);
  t.deepEqual((await waits()).map((r) => r.waits), ['00:00:10', '00:00:10']);

  // off: they are due now, as every change from now on is
  await pool.query(`select webhooks.set_webhook_delivery($1, null, false)`, [hook.id]);
  await pool.query(`update crm.contacts set city = 'Second' where id = $1`, [kept.id]);
  await pool.query('delete from crm.contacts where id = $1', [deleted.id]);
  t.deepEqual((await waits()).map((r) => [r.contact_id, r.action, r.due]), [
    [kept.id, 'contact.updated', true],
    [deleted.id, 'contact.updated', true],
    [kept.id, 'contact.updated', true],
    [deleted.id, 'contact.deleted', true],
  ]);
});

test('ordered: an update merges only into its contact\'s latest message, so a save between is never sent after the later update', async (t) => {
  const { database, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.saved', 'contact.updated'], fields: ['city'] });
  await pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', true)`, [hook.id]);
  const contact = await f.contact(company.id, { city: 'Start' });
  const save = (city: string) => inTransaction(pool, "set local webhooks.source = 'platform'", (c) =>
    c.query('update crm.contacts set city = $2 where id = $1', [contact.id, city]));
  const update = (city: string) => pool.query('update crm.contacts set city = $2 where id = $1', [contact.id, city]);
  await update('Imported 1');
  await update('Imported 2');
  await save('Saved');
  await update('Imported 3');
  await update('Imported 4');

  // in the order of their ids (the order an ordered webhook sends them), the messages
  // end with the contact as it is
  const { rows } = await pool.query(
    `select action, payload #>> '{data,contact,city}' as city, payload #> '{data,merged}' as merged
     from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(rows.map((r) => [r.action, r.city, r.merged]), [
    ['contact.updated', 'Imported 2', 2],
    ['contact.saved', 'Saved', 1],
    ['contact.updated', 'Imported 4', 2],
  ]);
});

test('conditions changed while deliveries wait: those decided before go as captured (in flight, waiting out the window, pending); a later change that fails the new conditions merges into none; one that meets them merges into the waiting message', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  const VA = { field: 'state', op: 'eq', value: 'VA' };
  const MD = { field: 'state', op: 'eq', value: 'MD' };
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city', 'state'], url: receiver.url('/sync'), conditions: VA });
  const gate = gatedReplies(1);
  receiver.route('/sync', { secret: hook.secret, replies: gate.replies });
  await pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const flying = await f.contact(company.id, { state: 'VA', city: 'F0' });
  const waiting = await f.contact(company.id, { state: 'VA', city: 'W0' });
  const pending = await f.contact(company.id, { state: 'VA', city: 'P0' });
  const maryland = await f.contact(company.id, { state: 'MD', city: 'M0' });
  const setCity = (id: string, city: string) => pool.query('update crm.contacts set city = $2 where id = $1', [id, city]);
  const dueNow = (id: string) => pool.query(
    'update webhooks.deliveries set next_attempt_at = now() where webhook_id = $1 and contact_id = $2 and state = \'pending\'', [hook.id, id]);

  // decided under VA: three messages; Maryland's change fails VA, nothing
  await setCity(flying.id, 'F1');
  await setCity(waiting.id, 'W1');
  await setCity(pending.id, 'P1');
  await setCity(maryland.id, 'M1');
  t.is((await pool.query('select 1 from webhooks.deliveries where webhook_id = $1', [hook.id])).rows.length, 3);

  // one of them in flight, its answer held by the receiver
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await dueNow(flying.id);
  await receiver.waitFor(1, { path: '/sync' });

  await pool.query('select webhooks.update_webhook($1, conditions => $2)', [hook.id, JSON.stringify(MD)]);

  // after the change: VA's changes fail it, merge into nothing and start nothing
  await setCity(waiting.id, 'W2');
  await setCity(pending.id, 'P2');
  await setCity(flying.id, 'F2');
  // a change that meets MD: a message of its own, and one that merges into the
  // message decided under VA, still waiting out its window
  await setCity(maryland.id, 'M2');
  await pool.query(`update crm.contacts set state = 'MD', city = 'W3' where id = $1`, [waiting.id]);
  const { rows: queued } = await pool.query(
    `select contact_id, payload->'data'->'contact'->>'city' as city, payload->'data'->'merged' as merged, state
     from webhooks.deliveries where webhook_id = $1 order by id`, [hook.id]);
  t.deepEqual(queued.map((r) => [r.contact_id, r.city, r.merged]), [
    [flying.id, 'F1', 1],
    [waiting.id, 'W3', 2],
    [pending.id, 'P1', 1],
    [maryland.id, 'M2', 1],
  ]);

  // every window ends, the held answer comes: each message once, as decided
  for (const c of [waiting, pending, maryland]) await dueNow(c.id);
  gate.opens[0]!();
  await waitForRows(pool, 'select state from webhooks.deliveries where webhook_id = $1', [hook.id],
    (r) => r.length === 4 && r.every((d) => d.state === 'succeeded'));
  const sent = receiver.received('/sync').map((r) => JSON.parse(r.body).data);
  t.deepEqual(sent.map((d) => [String(d.contact.id), d.contact.city, d.contact.state, d.changed_fields, d.merged])
    .sort((a, b) => a[0].localeCompare(b[0], 'en', { numeric: true })), [
    [flying.id, 'F1', 'VA', ['city'], 1],
    [waiting.id, 'W3', 'MD', ['city', 'state'], 2],
    [pending.id, 'P1', 'VA', ['city'], 1],
    [maryland.id, 'M2', 'MD', ['city'], 1],
  ]);
});
