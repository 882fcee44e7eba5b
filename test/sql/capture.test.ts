// The seven contact actions: which webhooks each one reaches, and what it records.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { inTransaction } from '../helpers/sql.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

test('contact.created: one delivery per subscribed webhook of the owner company, fields exactly as chosen', async (t) => {
  const f = make();
  const company = await f.company();
  const other = await f.company();
  const wanted = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['first_name', 'email'] });
  const otherAction = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  const otherCompany = await f.webhook({ companyId: other.id, actions: ['contact.created'] });

  const contact = await f.contact(company.id, { first_name: 'Grace', last_name: 'Hopper', phone: '555-0100' });

  const rows = await deliveriesOf(db().pool, [wanted.id, otherAction.id, otherCompany.id]);
  t.is(rows.length, 1);
  const [delivery] = rows;
  t.is(delivery.webhook_id, wanted.id);
  t.is(delivery.action, 'contact.created');
  t.is(delivery.contact_id, contact.id);
  t.is(delivery.company_id, company.id);
  t.is(delivery.state, 'pending');
  t.regex(delivery.message_id, /^msg_[0-9a-f]{32}$/);
  t.is(delivery.payload.type, 'contact.created');
  t.regex(delivery.payload.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  t.deepEqual(delivery.payload.data, {
    contact: { id: Number(contact.id), first_name: 'Grace', email: contact.email },
    source: 'unknown',
  });
});

test('contact.updated: an external source changing a column; changed_fields lists what changed', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  const contact = await f.contact(company.id, { city: 'Boston' });

  await inTransaction(db().pool, "set local webhooks.source = 'encompass'", (c) =>
    c.query('update crm.contacts set city = $2, phone = $3 where id = $1', [contact.id, 'Denver', '555-0199']));

  const rows = await deliveriesOf(db().pool, [hook.id]);
  t.is(rows.length, 1);
  t.is(rows[0].action, 'contact.updated');
  t.deepEqual(rows[0].payload.data, {
    contact: { id: Number(contact.id), city: 'Denver' },
    source: 'encompass',
    changed_fields: ['city', 'phone'],
  });
});

test('contact.updated: an update that changes nothing (or only updated_at) fires nothing', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated', 'contact.saved'] });
  const contact = await f.contact(company.id, { city: 'Boston' });

  await db().pool.query("update crm.contacts set city = 'Boston' where id = $1", [contact.id]);
  await inTransaction(db().pool, "set local webhooks.source = 'api'", (c) =>
    c.query('update crm.contacts set updated_at = now() + interval $$1 minute$$ where id = $1', [contact.id]));

  t.deepEqual(await deliveriesOf(db().pool, [hook.id]), []);
});

test('contact.saved: every platform save fires, changed or not, and never contact.updated', async (t) => {
  const f = make();
  const company = await f.company();
  const saved = await f.webhook({ companyId: company.id, actions: ['contact.saved'], fields: ['last_name'] });
  const updated = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const contact = await f.contact(company.id, { last_name: 'Lovelace' });

  await inTransaction(db().pool, "set local webhooks.source = 'platform'", async (c) => {
    await c.query('update crm.contacts set last_name = last_name where id = $1', [contact.id]);
    await c.query("update crm.contacts set last_name = 'King' where id = $1", [contact.id]);
  });

  const rows = await deliveriesOf(db().pool, [saved.id, updated.id]);
  t.deepEqual(rows.map((r) => [r.webhook_id, r.action]), [[saved.id, 'contact.saved'], [saved.id, 'contact.saved']]);
  t.deepEqual(rows[0].payload.data, { contact: { id: Number(contact.id), last_name: 'Lovelace' }, source: 'platform', changed_fields: [] });
  t.deepEqual(rows[1].payload.data, { contact: { id: Number(contact.id), last_name: 'King' }, source: 'platform', changed_fields: ['last_name'] });
});

test('contact.updated reaches the companies of assigned users, and the company a contact moves away from', async (t) => {
  const f = make();
  const owner = await f.company();
  const partner = await f.company();
  const newOwner = await f.company();
  const stranger = await f.company();
  const partnerUser = await f.user(partner.id);
  const hooks = await Promise.all([owner, partner, newOwner, stranger].map((c) =>
    f.webhook({ companyId: c.id, actions: ['contact.updated'] })));
  const contact = await f.contact(owner.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, partnerUser.id]);

  await db().pool.query('update crm.contacts set company_id = $2 where id = $1', [contact.id, newOwner.id]);

  const rows = await deliveriesOf(db().pool, hooks.map((h) => h.id));
  t.deepEqual(rows.map((r) => r.webhook_id).sort(), [hooks[0].id, hooks[1].id, hooks[2].id].sort());
  t.deepEqual(rows[0].payload.data.changed_fields, ['company_id']);
});

// Most contacts of a CRM have a user assigned (the owner's salesperson): an update
// that no company concerned listens for must end at the trigger's probe for them too,
// not build the row as JSON, diff it and ask capture() to find nothing.
test('an update of a contact with assigned users whose companies listen for nothing ends at the probe; one whose company listens is announced', async (t) => {
  const f = make();
  const [owner, partner] = [await f.company(), await f.company()];
  const [ownerUser, partnerUser] = [await f.user(owner.id), await f.user(partner.id)];
  // (the owner listens for other actions, the partner for the other kind of update)
  await f.webhook({ companyId: owner.id, actions: ['contact.created', 'contact.deleted'] });
  const partnerHook = await f.webhook({ companyId: partner.id, actions: ['contact.saved'] });
  const contact = await f.contact(owner.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2), ($1, $3)',
    [contact.id, ownerUser.id, partnerUser.id]);
  const called = (source: string, city: string) => inTransaction(db().pool, `set local track_functions = 'pl'`, async (c) => {
    await c.query(`select set_config('webhooks.source', $1, true)`, [source]);
    await c.query('update crm.contacts set city = $2 where id = $1', [contact.id, city]);
    const { rows } = await c.query(`select calls::int from pg_stat_xact_user_functions
                                    where schemaname = 'webhooks_private' and funcname = 'capture'`);
    return rows[0]?.calls ?? 0;
  });
  t.is(await called('api', 'Dover'), 0);
  t.is(await called('platform', 'Camden'), 1);
  t.deepEqual((await deliveriesOf(db().pool, [partnerHook.id])).map((r) => [r.action, r.payload.data.changed_fields]),
    [['contact.saved', ['city']]]);
});

test('contact.deleted: the row as it was, to every company concerned, and nothing for the cascaded statuses and assignments', async (t) => {
  const f = make();
  const owner = await f.company();
  const partner = await f.company();
  const partnerUser = await f.user(partner.id);
  const status = await f.status(owner.id, 'Customer');
  const allActions = ['contact.deleted', 'contact.status_removed', 'contact.updated'];
  const ownerHook = await f.webhook({ companyId: owner.id, actions: allActions, fields: ['first_name', 'street', 'city'] });
  const partnerHook = await f.webhook({ companyId: partner.id, actions: allActions, fields: ['email'] });
  const contact = await f.contact(owner.id, { first_name: 'Alan', street: '1 Bletchley Park', city: 'Milton Keynes' });
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, partnerUser.id]);
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);

  await db().pool.query('delete from crm.contacts where id = $1', [contact.id]);

  const rows = await deliveriesOf(db().pool, [ownerHook.id, partnerHook.id]);
  t.deepEqual(rows.map((r) => [r.webhook_id, r.action]).sort(), [
    [ownerHook.id, 'contact.deleted'],
    [partnerHook.id, 'contact.deleted'],
  ].sort());
  const byHook = Object.fromEntries(rows.map((r) => [r.webhook_id, r.payload.data]));
  t.deepEqual(byHook[ownerHook.id], {
    contact: { id: Number(contact.id), first_name: 'Alan', street: '1 Bletchley Park', city: 'Milton Keynes' },
    source: 'unknown',
  });
  t.deepEqual(byHook[partnerHook.id], { contact: { id: Number(contact.id), email: contact.email }, source: 'unknown' });
});

test('the seed example: status "Thank You Note" added sends the name and mailing address to its webhook only', async (t) => {
  const f = make();
  const company = await f.company('Purple Realty');
  const thankYou = await f.status(company.id, 'Thank You Note');
  const otherStatus = await f.status(company.id, 'Hot Lead');
  const mailingFields = ['first_name', 'last_name', 'street', 'city', 'state', 'postal_code'];
  const letters = await f.webhook({
    companyId: company.id, name: 'Handwritten letters', url: 'https://letters.example.com/hooks/bpd',
    actions: ['contact.status_added'], statusId: thankYou.id, fields: mailingFields,
  });
  const anyStatus = await f.webhook({ companyId: company.id, actions: ['contact.status_added'], fields: ['email'] });
  const contact = await f.contact(company.id, {
    first_name: 'Mary', last_name: 'Jackson', street: '12 Langley Rd', city: 'Hampton', state: 'VA', postal_code: '23666',
  });

  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, otherStatus.id]);
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, thankYou.id]);

  const toLetters = await deliveriesOf(db().pool, [letters.id]);
  t.is(toLetters.length, 1);
  t.deepEqual(toLetters[0].payload, {
    type: 'contact.status_added',
    timestamp: toLetters[0].payload.timestamp,
    data: {
      contact: { id: Number(contact.id), first_name: 'Mary', last_name: 'Jackson', street: '12 Langley Rd', city: 'Hampton', state: 'VA', postal_code: '23666' },
      source: 'unknown',
      status: { id: Number(thankYou.id), name: 'Thank You Note' },
    },
  });
  const toAny = await deliveriesOf(db().pool, [anyStatus.id]);
  t.deepEqual(toAny.map((r) => r.payload.data.status.name), ['Hot Lead', 'Thank You Note']);
});

test('contact.status_removed: any status, or only the chosen one', async (t) => {
  const f = make();
  const company = await f.company();
  const [a, b] = [await f.status(company.id, 'A'), await f.status(company.id, 'B')];
  const onlyB = await f.webhook({ companyId: company.id, actions: ['contact.status_removed'], statusId: b.id });
  const any = await f.webhook({ companyId: company.id, actions: ['contact.status_removed'] });
  const added = await f.webhook({ companyId: company.id, actions: ['contact.status_added'] });
  const contact = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2), ($1, $3)', [contact.id, a.id, b.id]);
  const addedCount = (await deliveriesOf(db().pool, [added.id])).length;

  await db().pool.query('delete from crm.contact_statuses where contact_id = $1 and status_id = $2', [contact.id, a.id]);
  await db().pool.query('delete from crm.contact_statuses where contact_id = $1 and status_id = $2', [contact.id, b.id]);

  t.is(addedCount, 2);
  t.deepEqual((await deliveriesOf(db().pool, [onlyB.id])).map((r) => r.payload.data.status.name), ['B']);
  t.deepEqual((await deliveriesOf(db().pool, [any.id])).map((r) => [r.action, r.payload.data.status.name]),
    [['contact.status_removed', 'A'], ['contact.status_removed', 'B']]);
});

test('contact.user_assigned: any user, or only the chosen one; reaches every concerned company', async (t) => {
  const f = make();
  const owner = await f.company();
  const partner = await f.company();
  const jane = await f.user(owner.id, 'Jane Doe');
  const john = await f.user(owner.id, 'John Roe');
  const pat = await f.user(partner.id, 'Pat Poe');
  const onlyJane = await f.webhook({ companyId: owner.id, actions: ['contact.user_assigned'], userId: jane.id });
  const anyOwner = await f.webhook({ companyId: owner.id, actions: ['contact.user_assigned'] });
  const anyPartner = await f.webhook({ companyId: partner.id, actions: ['contact.user_assigned'] });
  const contact = await f.contact(owner.id);

  for (const user of [john, jane, pat]) {
    await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  }

  const names = async (hookId: string) => (await deliveriesOf(db().pool, [hookId])).map((r) => r.payload.data.user.name);
  t.deepEqual(await names(onlyJane.id), ['Jane Doe']);
  t.deepEqual(await names(anyOwner.id), ['John Roe', 'Jane Doe', 'Pat Poe']);
  // the partner is concerned from Pat's assignment on (Pat's own included)
  t.deepEqual(await names(anyPartner.id), ['Pat Poe']);
  const [janeDelivery] = await deliveriesOf(db().pool, [onlyJane.id]);
  t.deepEqual(janeDelivery.payload.data.user, { id: Number(jane.id), name: 'Jane Doe', email: jane.email, company_id: Number(owner.id) });
});

test('contact.first_company_user_assigned: the first user of a company only, sent to that company only', async (t) => {
  const f = make();
  const owner = await f.company();
  const partner = await f.company();
  const [o1, o2] = [await f.user(owner.id), await f.user(owner.id)];
  const [p1, p2, p3] = [await f.user(partner.id), await f.user(partner.id), await f.user(partner.id)];
  const ownerHook = await f.webhook({ companyId: owner.id, actions: ['contact.first_company_user_assigned'] });
  const partnerHook = await f.webhook({ companyId: partner.id, actions: ['contact.first_company_user_assigned'] });
  const contact = await f.contact(owner.id);
  const assign = (...userIds: string[]) => db().pool.query(
    'insert into crm.contact_assignments (contact_id, user_id) select $1, unnest($2::bigint[])', [contact.id, userIds]);

  await assign(o1.id);
  await assign(o2.id); // second user of the owner: nothing
  await assign(p2.id, p1.id); // two partner users in one statement: one first
  await assign(p3.id); // third partner user: nothing

  const ownerRows = await deliveriesOf(db().pool, [ownerHook.id]);
  const partnerRows = await deliveriesOf(db().pool, [partnerHook.id]);
  t.deepEqual(ownerRows.map((r) => r.payload.data.user.id), [Number(o1.id)]);
  t.deepEqual(partnerRows.map((r) => r.payload.data.user.id), [Math.min(Number(p1.id), Number(p2.id))]);
});

test('a user unassigned and assigned again is a first again once no colleague remains', async (t) => {
  const f = make();
  const company = await f.company();
  const user = await f.user(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
  const contact = await f.contact(company.id);
  const assign = () => db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  await assign();
  await db().pool.query('delete from crm.contact_assignments where contact_id = $1', [contact.id]);
  await assign();
  t.is((await deliveriesOf(db().pool, [hook.id])).length, 2);
});

test('a disabled webhook records nothing; a rolled-back change leaves nothing', async (t) => {
  const f = make();
  const company = await f.company();
  const disabled = await f.webhook({ companyId: company.id, actions: ['contact.created'], enabled: false });
  const enabled = await f.webhook({ companyId: company.id, actions: ['contact.created'] });

  await f.contact(company.id);
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query('insert into crm.contacts (company_id, first_name) values ($1, $2)', [company.id, 'Ghost']);
    await client.query('rollback');
  } finally {
    client.release();
  }

  t.is((await deliveriesOf(db().pool, [disabled.id])).length, 0);
  t.is((await deliveriesOf(db().pool, [enabled.id])).length, 1);
});

test('disabling and enabling a webhook takes effect for the next change', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query("update webhooks.webhooks set enabled = false, disabled_at = now(), disabled_reason = 'test' where id = $1", [hook.id]);
  await f.contact(company.id);
  await db().pool.query('update webhooks.webhooks set enabled = true, disabled_at = null, disabled_reason = null where id = $1', [hook.id]);
  const second = await f.contact(company.id);
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => r.contact_id), [second.id]);
});

test('changing a webhook\'s actions changes what it receives', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  await f.contact(company.id);
  await db().pool.query("update webhooks.webhooks set actions = '{contact.created}' where id = $1", [hook.id]);
  const second = await f.contact(company.id);
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => r.contact_id), [second.id]);
});

test('fire history view: one row per firing with webhook name and state', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, name: 'Sheet sync', actions: ['contact.created'] });
  const contact = await f.contact(company.id);
  const { rows } = await db().pool.query(
    'select webhook_name, action::text, contact_id, state, attempts from webhooks.fire_history where webhook_id = $1', [hook.id]);
  t.deepEqual(rows, [{ webhook_name: 'Sheet sync', action: 'contact.created', contact_id: contact.id, state: 'pending', attempts: 0 }]);
});

test('a webhook\'s merge window, as it is now: set, updates of a contact merge; cleared, each is a message of its own', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'] });
  const contact = await f.contact(company.id);
  const update = (city: string) => db().pool.query('update crm.contacts set city = $2 where id = $1', [contact.id, city]);

  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  await update('One');
  await update('Two');
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => [r.payload.data.contact.city, r.payload.data.merged]), [['Two', 2]]);

  await db().pool.query(`select webhooks.set_webhook_delivery($1, null, false)`, [hook.id]);
  await db().pool.query('update webhooks.deliveries set next_attempt_at = now() where webhook_id = $1', [hook.id]);
  await update('Three');
  await update('Four');
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => [r.payload.data.contact.city, r.payload.data.merged]),
    [['Two', 2], ['Three', undefined], ['Four', undefined]]);
});

test('webhooks.source: a writer\'s source of more than 100 characters is cut to 100, its last a mark (…), on every action; the writer\'s statement succeeds', async (t) => {
  const f = make();
  const company = await f.company();
  const user = await f.user(company.id);
  const status = await f.status(company.id);
  const long = 'merge-tool/' + 'x'.repeat(5_000);
  const cut = long.slice(0, 99) + '…';
  const hook = await f.webhook({
    companyId: company.id, fields: ['city'],
    actions: ['contact.created', 'contact.updated', 'contact.status_added', 'contact.user_assigned', 'contact.deleted'],
  });
  // a webhook that ignores the cut form hears none of it: the source a filter meets is the one sent
  const ignoring = await f.webhook({ companyId: company.id, actions: ['contact.created'], ignoreSources: [cut] });

  await inTransaction(db().pool, 'select 1', async (c) => {
    await c.query(`select set_config('webhooks.source', $1, true)`, [long]);
    const { rows: [{ id }] } = await c.query(`insert into crm.contacts (company_id, first_name, city) values ($1, 'Ada', 'Boston') returning id`, [company.id]);
    await c.query('update crm.contacts set city = $2 where id = $1', [id, 'Denver']);
    await c.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [id, status.id]);
    await c.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [id, user.id]);
    await c.query('delete from crm.contacts where id = $1', [id]);
  });

  const rows = await deliveriesOf(db().pool, [hook.id]);
  t.deepEqual(rows.map((r) => r.action).sort(),
    ['contact.created', 'contact.deleted', 'contact.status_added', 'contact.updated', 'contact.user_assigned']);
  for (const r of rows) t.is(r.payload.data.source, cut, r.action);
  t.is([...cut].length, 100);
  t.deepEqual(await deliveriesOf(db().pool, [ignoring.id]), []);
});
