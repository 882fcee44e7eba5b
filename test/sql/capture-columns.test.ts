// The CRM owns crm.contacts and may add, drop or rename its columns at any time,
// without re-applying the engine. A payload still carries exactly the contact's id and
// the fields its webhook chose, and no contact write fails because of capture. The same
// holds for the columns of crm.users and crm.statuses that a payload shows.
// The tests change the table itself, so they run one after another.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { inTransaction } from '../helpers/sql.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

const ACTIONS = ['contact.created', 'contact.updated', 'contact.saved', 'contact.status_added', 'contact.deleted'];

test.serial('a column added to contacts reaches no payload that did not choose it, on every action', async (t) => {
  const f = make();
  const company = await f.company();
  const status = await f.status(company.id);
  const before = await f.webhook({ companyId: company.id, actions: ACTIONS, fields: ['first_name', 'email'] });
  const watching = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], watchFields: ['city'] });

  await db().pool.query('alter table crm.contacts add column ssn text');
  // a webhook configured afterwards may choose the new column, and gets it
  const chooser = await f.webhook({ companyId: company.id, actions: ACTIONS, fields: ['ssn'] });
  const after = await f.webhook({ companyId: company.id, actions: ACTIONS, fields: ['last_name'] });

  const contact = await f.contact(company.id, { first_name: 'Ada', last_name: 'Lovelace', ssn: '078-05-1120' });
  await inTransaction(db().pool, "set local webhooks.source = 'encompass'", async (c) => {
    await c.query("update crm.contacts set city = 'London', ssn = '219-09-9999' where id = $1", [contact.id]);
    // a change to the new column alone is a change: contact.updated fires, and names it
    await c.query("update crm.contacts set ssn = '457-55-5462' where id = $1", [contact.id]);
  });
  await inTransaction(db().pool, "set local webhooks.source = 'platform'", (c) =>
    c.query("update crm.contacts set ssn = '123-45-6789' where id = $1", [contact.id]));
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);
  await db().pool.query('delete from crm.contacts where id = $1', [contact.id]);

  const id = Number(contact.id);
  const sent = async (hookId: string) =>
    (await deliveriesOf(db().pool, [hookId])).map((r) => [r.action, r.payload.data.contact, r.payload.data.changed_fields]);
  const expectations: [string, Record<string, unknown>][] = [
    [before.id, { id, first_name: 'Ada', email: contact.email }],
    [after.id, { id, last_name: 'Lovelace' }],
  ];
  for (const [hookId, contactJson] of expectations) {
    t.deepEqual(await sent(hookId), [
      ['contact.created', contactJson, undefined],
      ['contact.updated', contactJson, ['ssn', 'city']],
      ['contact.updated', contactJson, ['ssn']],
      ['contact.saved', contactJson, ['ssn']],
      ['contact.status_added', contactJson, undefined],
      ['contact.deleted', contactJson, undefined],
    ]);
  }
  t.deepEqual(await sent(chooser.id), [
    ['contact.created', { id, ssn: '078-05-1120' }, undefined],
    ['contact.updated', { id, ssn: '219-09-9999' }, ['ssn', 'city']],
    ['contact.updated', { id, ssn: '457-55-5462' }, ['ssn']],
    ['contact.saved', { id, ssn: '123-45-6789' }, ['ssn']],
    ['contact.status_added', { id, ssn: '123-45-6789' }, undefined],
    ['contact.deleted', { id, ssn: '123-45-6789' }, undefined],
  ]);
  // watch_fields still narrows: only the update that changed the city
  t.deepEqual(await sent(watching.id), [['contact.updated', { id, city: 'London' }, ['ssn', 'city']]]);
});

test.serial('a column dropped or renamed fails no contact write, and payloads stay as chosen', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ACTIONS, fields: ['first_name', 'street'] });
  const contact = await f.contact(company.id, { first_name: 'Alan', street: '1 Bletchley Park', postal_code: 'MK3 6EB', phone: '555-0100' });

  await db().pool.query('alter table crm.contacts drop column postal_code');
  await db().pool.query('alter table crm.contacts rename column phone to phone_number');

  const added = await f.contact(company.id, { first_name: 'Joan', phone_number: '555-0101' });
  await inTransaction(db().pool, "set local webhooks.source = 'api'", async (c) => {
    await c.query("update crm.contacts set city = 'Cambridge' where id = $1", [contact.id]);
    await c.query("update crm.contacts set phone_number = '555-0199' where id = $1", [contact.id]);
  });
  await inTransaction(db().pool, "set local webhooks.source = 'platform'", (c) =>
    c.query("update crm.contacts set first_name = 'Alan M.' where id = $1", [contact.id]));
  await db().pool.query('delete from crm.contacts where id = $1', [contact.id]);

  // a chosen column dropped: the payload has what is left of the choice
  await db().pool.query('alter table crm.contacts drop column street');
  await db().pool.query("update crm.contacts set first_name = 'Joan C.' where id = $1", [added.id]);

  const rows = await deliveriesOf(db().pool, [hook.id]);
  const id = Number(contact.id);
  t.deepEqual(rows.map((r) => [r.action, r.payload.data.contact, r.payload.data.changed_fields]), [
    ['contact.created', { id, first_name: 'Alan', street: '1 Bletchley Park' }, undefined],
    ['contact.created', { id: Number(added.id), first_name: 'Joan', street: null }, undefined],
    ['contact.updated', { id, first_name: 'Alan', street: '1 Bletchley Park' }, ['city']],
    ['contact.updated', { id, first_name: 'Alan', street: '1 Bletchley Park' }, ['phone_number']],
    ['contact.saved', { id, first_name: 'Alan M.', street: '1 Bletchley Park' }, ['first_name']],
    ['contact.deleted', { id, first_name: 'Alan M.', street: '1 Bletchley Park' }, undefined],
    ['contact.updated', { id: Number(added.id), first_name: 'Joan C.' }, ['first_name']],
  ]);
});

test.serial('custom and updated_at renamed fail no contact write: changes still fire, conditions and watched fields still apply', async (t) => {
  const f = make();
  const company = await f.company();
  const plain = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name'] });
  const conditioned = await f.webhook({
    companyId: company.id, actions: ['contact.updated'], fields: ['first_name'],
    conditions: { field: 'first_name', op: 'eq', value: 'Edsger' },
  });
  const watching = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['city'], watchFields: ['city'] });
  const cityChanged = await f.webhook({
    companyId: company.id, actions: ['contact.updated'], fields: ['city'], conditions: { field: 'city', op: 'changed' },
  });
  const contact = await f.contact(company.id, { first_name: 'Edsger' });

  await db().pool.query('alter table crm.contacts rename column custom to extra');
  await db().pool.query('alter table crm.contacts rename column updated_at to modified_at');
  t.teardown(async () => {
    await db().pool.query('alter table crm.contacts rename column extra to custom');
    await db().pool.query('alter table crm.contacts rename column modified_at to updated_at');
  });

  await db().pool.query("update crm.contacts set city = 'Austin' where id = $1", [contact.id]);
  await db().pool.query(`update crm.contacts set extra = '{"score": 9}' where id = $1`, [contact.id]);
  await db().pool.query("update crm.contacts set first_name = 'Edsger W.' where id = $1", [contact.id]);

  const sent = async (hookId: string) =>
    (await deliveriesOf(db().pool, [hookId])).map((r) => [r.payload.data.contact, r.payload.data.changed_fields]);
  const id = Number(contact.id);
  t.deepEqual(await sent(plain.id), [
    [{ id, first_name: 'Edsger' }, ['city']],
    [{ id, first_name: 'Edsger' }, ['extra']],
    [{ id, first_name: 'Edsger W.' }, ['first_name']],
  ]);
  t.deepEqual(await sent(conditioned.id), [
    [{ id, first_name: 'Edsger' }, ['city']],
    [{ id, first_name: 'Edsger' }, ['extra']],
  ]);
  t.deepEqual(await sent(watching.id), [[{ id, city: 'Austin' }, ['city']]]);
  t.deepEqual(await sent(cityChanged.id), [[{ id, city: 'Austin' }, ['city']]]);
});

test.serial('a column that became a time fails no contact write over a condition written for its text', async (t) => {
  const f = make();
  const company = await f.company();
  await db().pool.query('alter table crm.contacts add column last_seen text');
  // configured while last_seen was text: any text is a valid value then
  const unlike = await f.webhook({
    companyId: company.id, actions: ['contact.created', 'contact.updated', 'contact.deleted'], fields: ['first_name'],
    conditions: { field: 'last_seen', op: 'ne', value: '2026-01-01 sometime' },
  });
  const like = await f.webhook({
    companyId: company.id, actions: ['contact.created'], fields: ['first_name'],
    conditions: { field: 'last_seen', op: 'eq', value: '2026-01-01 sometime' },
  });
  await db().pool.query('alter table crm.contacts alter column last_seen type timestamptz using null');

  // the value is no time: it compares as text, as any other text does
  const contact = await f.contact(company.id, { first_name: 'Grace', last_seen: '2026-01-01T09:00:00Z' });
  await db().pool.query("update crm.contacts set first_name = 'Grace H.' where id = $1", [contact.id]);
  await db().pool.query('delete from crm.contacts where id = $1', [contact.id]);

  const id = Number(contact.id);
  t.deepEqual((await deliveriesOf(db().pool, [unlike.id])).map((r) => [r.action, r.payload.data.contact]), [
    ['contact.created', { id, first_name: 'Grace' }],
    ['contact.updated', { id, first_name: 'Grace H.' }],
    ['contact.deleted', { id, first_name: 'Grace H.' }],
  ]);
  t.deepEqual(await deliveriesOf(db().pool, [like.id]), []);
});

test.serial('columns of types without equality (json, point) neither stop the engine being applied nor hide a change', async (t) => {
  await db().pool.query('alter table crm.contacts add column prefs json, add column location point');
  // applied again, the engine knows them: the typed comparison of each column is made for them too
  await t.notThrowsAsync(migrate(db().url));

  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['prefs', 'location'] });
  const contact = await f.contact(company.id, { prefs: '{"news": true}', location: '(1,2)' });
  await db().pool.query(`update crm.contacts set prefs = '{"news": false}' where id = $1`, [contact.id]);
  await db().pool.query(`update crm.contacts set location = '(3,4)' where id = $1`, [contact.id]);
  // the same values again: nothing changed, nothing sent
  await db().pool.query(`update crm.contacts set prefs = '{"news": false}', location = '(3,4)' where id = $1`, [contact.id]);

  const rows = await deliveriesOf(db().pool, [hook.id]);
  t.deepEqual(rows.map((r) => [r.payload.data.contact, r.payload.data.changed_fields]), [
    [{ id: Number(contact.id), prefs: { news: false }, location: '(1,2)' }, ['prefs']],
    [{ id: Number(contact.id), prefs: { news: false }, location: '(3,4)' }, ['location']],
  ]);
  await db().pool.query('alter table crm.contacts drop column prefs, drop column location');
});

test.serial('once the engine is applied again, capture knows the new columns and sends the same', async (t) => {
  await migrate(db().url);
  const { rows: [known] } = await db().pool.query(`
    select webhooks_private.contact_columns() @> '{ssn,phone_number}' as knows_new,
           webhooks_private.contact_columns() && '{postal_code,phone,street}' as knows_gone`);
  t.deepEqual(known, { knows_new: true, knows_gone: false });

  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name'] });
  const contact = await f.contact(company.id, { first_name: 'Ada', ssn: '078-05-1120' });
  await db().pool.query("update crm.contacts set ssn = '219-09-9999' where id = $1", [contact.id]);

  const rows = await deliveriesOf(db().pool, [hook.id]);
  t.deepEqual(rows.map((r) => r.payload.data), [
    { contact: { id: Number(contact.id), first_name: 'Ada' }, source: 'unknown', changed_fields: ['ssn'] },
  ]);
});

test.serial('a column of users or statuses renamed fails no assignment or status write; the payload names what it still can', async (t) => {
  const f = make();
  const company = await f.company();
  const quiet = await f.company();
  const user = await f.user(company.id, 'Jane Doe');
  const quietUser = await f.user(quiet.id, 'John Roe');
  const status = await f.status(company.id, 'Lead');
  const quietStatus = await f.status(quiet.id, 'Lead');
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.user_assigned', 'contact.status_added'] });
  const contact = await f.contact(company.id);
  const quietContact = await f.contact(quiet.id);

  await db().pool.query('alter table crm.users rename column email to email_address');
  await db().pool.query('alter table crm.statuses rename column name to label');
  t.teardown(async () => {
    await db().pool.query('alter table crm.users rename column email_address to email');
    await db().pool.query('alter table crm.statuses rename column label to name');
  });

  // nobody listens: the writes go through
  await t.notThrowsAsync(db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)',
    [quietContact.id, quietUser.id]));
  await t.notThrowsAsync(db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)',
    [quietContact.id, quietStatus.id]));
  // a webhook listens: the writes go through, and it hears them
  await t.notThrowsAsync(db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)',
    [contact.id, user.id]));
  await t.notThrowsAsync(db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)',
    [contact.id, status.id]));

  const rows = await deliveriesOf(db().pool, [hook.id]);
  t.deepEqual(rows.map((r) => [r.action, r.payload.data.user ?? r.payload.data.status]), [
    ['contact.user_assigned', { id: Number(user.id), name: 'Jane Doe', email: null, company_id: Number(company.id) }],
    ['contact.status_added', { id: Number(status.id), name: null }],
  ]);
});

test.serial('a stored generated column, an identity column and a volatile default added to contacts: each sent as stored, before and after the engine is applied again', async (t) => {
  const f = make();
  const company = await f.company();
  await db().pool.query(`
    alter table crm.contacts add column full_name text generated always as (coalesce(first_name, '') || ' ' || coalesce(last_name, '')) stored;
    alter table crm.contacts add column contact_number bigint generated always as identity (start with 1000);
    alter table crm.contacts add column token uuid default gen_random_uuid()`);
  t.teardown(() => db().pool.query('alter table crm.contacts drop column full_name, drop column contact_number, drop column token'));
  const fields = ['full_name', 'contact_number', 'token'];
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields });
  const sentRows = async () => (await db().pool.query(
    `select d.action, d.payload -> 'data' -> 'contact' as contact, d.payload -> 'data' -> 'changed_fields' as changed,
            jsonb_build_object('id', c.id, 'full_name', c.full_name, 'contact_number', c.contact_number, 'token', c.token) as stored
     from webhooks.deliveries d join crm.contacts c on c.id = d.contact_id
     where d.webhook_id = $1 order by d.id`, [hook.id])).rows;
  for (const round of ['before', 'after'] as const) {
    if (round === 'after') await migrate(db().url);
    const contact = await f.contact(company.id, { first_name: 'Ada', last_name: 'Lovelace' });
    await db().pool.query(`update crm.contacts set last_name = 'King' where id = $1`, [contact.id]);
    const rows = (await sentRows()).filter((r) => r.stored.id === Number(contact.id));
    // created: as inserted (the name then); updated: as stored now, the generated column changed with it
    t.deepEqual(rows.map((r) => r.action), ['contact.created', 'contact.updated'], round);
    t.deepEqual(rows[0].contact, { ...rows[1].stored, full_name: 'Ada Lovelace' }, round);
    t.deepEqual(rows[1].contact, rows[1].stored, round);
    t.is(rows[1].stored.full_name, 'Ada King', round);
    t.true(rows[1].stored.contact_number >= 1000 && typeof rows[1].stored.token === 'string', round);
    t.deepEqual(rows[1].changed, ['full_name', 'last_name'], round);
  }
});
