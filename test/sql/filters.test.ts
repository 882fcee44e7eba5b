// A webhook's filters (ignore_sources, watch_fields, conditions), decided by capture
// inside the writer's transaction: what fires and what does not, from plain SQL writes.
import test, { type ExecutionContext } from 'ava';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories, type WebhookInput } from '../helpers/factories.ts';
import { inTransaction } from '../helpers/sql.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

/** Runs statements in one transaction, with webhooks.source set when given. */
function write(source: string | null, ...statements: Array<[string, unknown[]]>) {
  const setup = source === null ? 'select 1' : `set local webhooks.source = '${source}'`;
  return inTransaction(db().pool, setup, async (c) => {
    for (const [text, params] of statements) await c.query(text, params);
  });
}

const actionsOf = async (hookId: string) => (await deliveriesOf(db().pool, [hookId])).map((r) => r.action);

// ---- ignore_sources ---------------------------------------------------------------

test('ignore_sources: a listed source fires nothing, for every action; other sources and unset ones fire', async (t) => {
  const f = make();
  const company = await f.company();
  const status = await f.status(company.id);
  const all = ['contact.created', 'contact.updated', 'contact.status_added', 'contact.deleted'];
  const sync = await f.webhook({ companyId: company.id, actions: all, ignoreSources: ['encompass'] });
  const plain = await f.webhook({ companyId: company.id, actions: all });

  // everything the sync itself does: no echo
  const { rows: [mine] } = await inTransaction(db().pool, "set local webhooks.source = 'encompass'", (c) =>
    c.query('insert into crm.contacts (company_id, email) values ($1, $2) returning id', [company.id, 'echo@example.com']));
  await write('encompass',
    ['update crm.contacts set city = $2 where id = $1', [mine.id, 'Richmond']],
    ['insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [mine.id, status.id]],
    ['delete from crm.contacts where id = $1', [mine.id]]);
  t.deepEqual(await actionsOf(sync.id), []);
  t.deepEqual(await actionsOf(plain.id), all);

  // the same changes from elsewhere reach the sync
  const other = await f.contact(company.id); // no source set: 'unknown'
  await write('api', ['update crm.contacts set city = $2 where id = $1', [other.id, 'Norfolk']]);
  await write(null, ['update crm.contacts set city = $2 where id = $1', [other.id, 'Hampton']]);
  t.deepEqual(await actionsOf(sync.id), ['contact.created', 'contact.updated', 'contact.updated']);
});

test('ignore_sources: "unknown" stands for writes that set no source', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], ignoreSources: ['unknown'] });
  const contact = await f.contact(company.id);
  await write(null, ['update crm.contacts set city = $2 where id = $1', [contact.id, 'Reston']]);
  await write('', ['update crm.contacts set city = $2 where id = $1', [contact.id, 'Vienna']]);
  await write('api', ['update crm.contacts set city = $2 where id = $1', [contact.id, 'Herndon']]);
  const rows = await deliveriesOf(db().pool, [hook.id]);
  t.deepEqual(rows.map((r) => [r.action, r.payload.data.source]), [['contact.updated', 'api']]);
});

// ---- watch_fields -----------------------------------------------------------------

test('watch_fields: updated and saved fire only when a watched column changed; other actions as ever', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({
    companyId: company.id, actions: ['contact.created', 'contact.updated', 'contact.saved', 'contact.deleted'],
    watchFields: ['street', 'city', 'state', 'postal_code'], fields: ['street', 'city'],
  });
  const contact = await f.contact(company.id, { city: 'Boston' });            // created: fires
  await write('api', ['update crm.contacts set phone = $2 where id = $1', [contact.id, '555-0101']]);     // no
  await write('api', ['update crm.contacts set city = $2 where id = $1', [contact.id, 'Salem']]);          // updated
  await write('platform', ['update crm.contacts set last_name = $2 where id = $1', [contact.id, 'X']]);   // no
  await write('platform', ['update crm.contacts set city = city where id = $1', [contact.id]]);           // no: nothing changed
  await write('platform', ['update crm.contacts set street = $2, email = $3 where id = $1', [contact.id, '1 Main St', 'new@example.com']]); // saved
  await write(null, ['delete from crm.contacts where id = $1', [contact.id]]);                            // deleted: fires
  const rows = await deliveriesOf(db().pool, [hook.id]);
  t.deepEqual(rows.map((r) => r.action), ['contact.created', 'contact.updated', 'contact.saved', 'contact.deleted']);
  t.deepEqual(rows[1].payload.data.changed_fields, ['city']);
  t.deepEqual(rows[2].payload.data.changed_fields, ['email', 'street']);
});

// ---- conditions: each operator ----------------------------------------------------

interface Case {
  what: string;
  condition: unknown;
  contact: Record<string, unknown>;
  fires: boolean;
}

const STATES = { field: 'state', op: 'in', value: ['VA', 'MD'] };
const cases: Case[] = [
  { what: 'eq on text', condition: { field: 'state', op: 'eq', value: 'VA' }, contact: { state: 'VA' }, fires: true },
  { what: 'eq on text is case-sensitive', condition: { field: 'state', op: 'eq', value: 'VA' }, contact: { state: 'va' }, fires: false },
  { what: 'eq on a null column', condition: { field: 'state', op: 'eq', value: 'VA' }, contact: {}, fires: false },
  { what: 'eq on a date', condition: { field: 'birthday', op: 'eq', value: '1990-05-17' }, contact: { birthday: '1990-05-17' }, fires: true },
  { what: 'eq on a number column', condition: { field: 'id', op: 'eq', value: -1 }, contact: {}, fires: false },
  { what: 'eq on custom true/false', condition: { field: 'custom.vip', op: 'eq', value: true }, contact: { custom: { vip: true } }, fires: true },
  { what: 'eq on custom: false is not true', condition: { field: 'custom.vip', op: 'eq', value: true }, contact: { custom: { vip: false } }, fires: false },
  { what: 'eq on custom: "true" the text is not true', condition: { field: 'custom.vip', op: 'eq', value: true }, contact: { custom: { vip: 'true' } }, fires: false },
  { what: 'eq on a custom number', condition: { field: 'custom.score', op: 'eq', value: 5 }, contact: { custom: { score: 5.0 } }, fires: true },
  { what: 'eq: a number matches a custom numeric text', condition: { field: 'custom.score', op: 'eq', value: 5 }, contact: { custom: { score: '5.00' } }, fires: true },
  { what: 'eq on custom text', condition: { field: 'custom.tier', op: 'eq', value: 'gold' }, contact: { custom: { tier: 'gold' } }, fires: true },
  { what: 'eq on a missing custom key', condition: { field: 'custom.tier', op: 'eq', value: 'gold' }, contact: { custom: {} }, fires: false },
  { what: 'ne on text', condition: { field: 'state', op: 'ne', value: 'VA' }, contact: { state: 'MD' }, fires: true },
  { what: 'ne on equal text', condition: { field: 'state', op: 'ne', value: 'VA' }, contact: { state: 'VA' }, fires: false },
  { what: 'ne on a null column holds', condition: { field: 'state', op: 'ne', value: 'VA' }, contact: {}, fires: true },
  { what: 'in', condition: STATES, contact: { state: 'MD' }, fires: true },
  { what: 'in, not listed', condition: STATES, contact: { state: 'DC' }, fires: false },
  { what: 'in, null', condition: STATES, contact: {}, fires: false },
  { what: 'in on custom numbers', condition: { field: 'custom.score', op: 'in', value: [1, 2, 3] }, contact: { custom: { score: 2 } }, fires: true },
  { what: 'in on custom numbers, numeric text', condition: { field: 'custom.score', op: 'in', value: [1, 2, 3] }, contact: { custom: { score: '3' } }, fires: true },
  { what: 'in on custom numbers, not listed', condition: { field: 'custom.score', op: 'in', value: [1, 2, 3] }, contact: { custom: { score: 4 } }, fires: false },
  { what: 'not_in', condition: { field: 'state', op: 'not_in', value: ['VA', 'MD'] }, contact: { state: 'DC' }, fires: true },
  { what: 'not_in, listed', condition: { field: 'state', op: 'not_in', value: ['VA', 'MD'] }, contact: { state: 'VA' }, fires: false },
  { what: 'not_in, null', condition: { field: 'state', op: 'not_in', value: ['VA', 'MD'] }, contact: {}, fires: true },
  { what: 'lt on a custom number', condition: { field: 'custom.score', op: 'lt', value: 10 }, contact: { custom: { score: 9.5 } }, fires: true },
  { what: 'lt on a custom number, equal', condition: { field: 'custom.score', op: 'lt', value: 10 }, contact: { custom: { score: 10 } }, fires: false },
  { what: 'lte on a custom number, equal', condition: { field: 'custom.score', op: 'lte', value: 10 }, contact: { custom: { score: 10 } }, fires: true },
  { what: 'gt on a custom numeric text', condition: { field: 'custom.score', op: 'gt', value: 100 }, contact: { custom: { score: '1e3' } }, fires: true },
  { what: 'gt: text that is no number makes the leaf false', condition: { field: 'custom.score', op: 'gt', value: 1 }, contact: { custom: { score: 'lots' } }, fires: false },
  { what: 'gt: an object makes the leaf false', condition: { field: 'custom.score', op: 'gt', value: 1 }, contact: { custom: { score: { n: 5 } } }, fires: false },
  { what: 'gte on a custom number', condition: { field: 'custom.score', op: 'gte', value: -3 }, contact: { custom: { score: -3 } }, fires: true },
  { what: 'gte on a custom number, below', condition: { field: 'custom.score', op: 'gte', value: -3 }, contact: { custom: { score: -4 } }, fires: false },
  { what: 'lt on a date', condition: { field: 'birthday', op: 'lt', value: '2000-01-01' }, contact: { birthday: '1999-12-31' }, fires: true },
  { what: 'gte on a date', condition: { field: 'birthday', op: 'gte', value: '2000-01-01' }, contact: { birthday: '1999-12-31' }, fires: false },
  { what: 'gt on a custom date', condition: { field: 'custom.renewal', op: 'gt', value: '2026-06-30' }, contact: { custom: { renewal: '2026-07-01' } }, fires: true },
  { what: 'gt on a custom date that is no date', condition: { field: 'custom.renewal', op: 'gt', value: '2026-06-30' }, contact: { custom: { renewal: 'July 1st' } }, fires: false },
  { what: 'lte on text', condition: { field: 'last_name', op: 'lte', value: 'M' }, contact: { last_name: 'Jackson' }, fires: true },
  { what: 'gt on text', condition: { field: 'last_name', op: 'gt', value: 'M' }, contact: { last_name: 'Jackson' }, fires: false },
  { what: 'gt on a time', condition: { field: 'created_at', op: 'gt', value: '2000-01-01T00:00:00Z' }, contact: {}, fires: true },
  { what: 'lt on a time, with an offset', condition: { field: 'created_at', op: 'lt', value: '2000-01-01T00:00:00+05:00' }, contact: {}, fires: false },
  { what: 'contains, any case', condition: { field: 'email', op: 'contains', value: '@PURPLE.' }, contact: { email: 'jane@purple.example' }, fires: true },
  { what: 'contains: % and _ are plain characters', condition: { field: 'email', op: 'contains', value: '%' }, contact: { email: 'jane@purple.example' }, fires: false },
  { what: 'contains on a null column', condition: { field: 'city', op: 'contains', value: 'x' }, contact: {}, fires: false },
  { what: 'contains on a null column, inside all', condition: { all: [{ field: 'city', op: 'contains', value: 'x' }] }, contact: {}, fires: false },
  { what: 'not contains on a null column holds', condition: { not: { field: 'city', op: 'contains', value: 'x' } }, contact: {}, fires: true },
  { what: 'starts_with on a null column, inside all', condition: { all: [{ field: 'city', op: 'starts_with', value: 'x' }] }, contact: {}, fires: false },
  { what: 'not starts_with on a null custom key holds', condition: { not: { field: 'custom.source', op: 'starts_with', value: 'x' } }, contact: {}, fires: true },
  { what: 'starts_with, any case', condition: { field: 'postal_code', op: 'starts_with', value: '236' }, contact: { postal_code: '23666' }, fires: true },
  { what: 'starts_with on custom text', condition: { field: 'custom.source', op: 'starts_with', value: 'zil' }, contact: { custom: { source: 'Zillow lead' } }, fires: true },
  { what: 'starts_with on a custom number', condition: { field: 'custom.source', op: 'starts_with', value: '1' }, contact: { custom: { source: 12 } }, fires: false },
  { what: 'is_null', condition: { field: 'phone', op: 'is_null' }, contact: {}, fires: true },
  { what: 'is_null on a set column', condition: { field: 'phone', op: 'is_null' }, contact: { phone: '555' }, fires: false },
  { what: 'is_null on a custom JSON null', condition: { field: 'custom.x', op: 'is_null' }, contact: { custom: { x: null } }, fires: true },
  { what: 'not_null', condition: { field: 'phone', op: 'not_null' }, contact: { phone: '555' }, fires: true },
  { what: 'not_null on a missing custom key', condition: { field: 'custom.x', op: 'not_null' }, contact: { custom: {} }, fires: false },
  { what: 'all: every one holds', condition: { all: [STATES, { field: 'city', op: 'eq', value: 'Hampton' }] }, contact: { state: 'VA', city: 'Hampton' }, fires: true },
  { what: 'all: one fails', condition: { all: [STATES, { field: 'city', op: 'eq', value: 'Hampton' }] }, contact: { state: 'VA', city: 'Norfolk' }, fires: false },
  { what: 'any: one holds', condition: { any: [STATES, { field: 'city', op: 'eq', value: 'Hampton' }] }, contact: { state: 'DC', city: 'Hampton' }, fires: true },
  { what: 'any: none holds', condition: { any: [STATES, { field: 'city', op: 'eq', value: 'Hampton' }] }, contact: { state: 'DC' }, fires: false },
  { what: 'not', condition: { not: STATES }, contact: { state: 'DC' }, fires: true },
  { what: 'not, holding inside', condition: { not: STATES }, contact: { state: 'VA' }, fires: false },
  {
    what: '8 levels deep',
    condition: { not: { not: { all: [{ any: [{ not: { not: { all: [STATES] } } }] }] } } },
    contact: { state: 'VA' },
    fires: true,
  },
];

for (const c of cases) {
  test(`conditions: ${c.what} → ${c.fires ? 'fires' : 'nothing'}`, async (t) => {
    const f = make();
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], conditions: c.condition });
    await f.contact(company.id, { ...c.contact, custom: JSON.stringify(c.contact.custom ?? {}) });
    t.is((await deliveriesOf(db().pool, [hook.id])).length, c.fires ? 1 : 0);
  });
}

// ---- conditions: which row, changed, and no row at all ------------------------------

async function hookWith(t: ExecutionContext, input: Omit<WebhookInput, 'companyId'>) {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, ...input });
  t.truthy(hook.id);
  return { f, company, hook };
}

test('conditions see the contact after the change, and as it was for contact.deleted', async (t) => {
  const { f, company, hook } = await hookWith(t, {
    actions: ['contact.created', 'contact.updated', 'contact.deleted'], conditions: STATES,
  });
  const contact = await f.contact(company.id, { state: 'DC' });                                   // no
  await write('api', ['update crm.contacts set state = $2 where id = $1', [contact.id, 'VA']]);  // yes: VA now
  await write('api', ['update crm.contacts set state = $2 where id = $1', [contact.id, 'MD']]);  // yes
  await write('api', ['update crm.contacts set state = $2 where id = $1', [contact.id, 'PA']]);  // no: PA now
  await write('api', ['update crm.contacts set state = $2 where id = $1', [contact.id, 'MD']]);  // yes
  await write(null, ['delete from crm.contacts where id = $1', [contact.id]]);                    // yes: was MD
  t.deepEqual(await actionsOf(hook.id), ['contact.updated', 'contact.updated', 'contact.updated', 'contact.deleted']);
});

test('changed: true only for an update that changed the field, never for other actions', async (t) => {
  const { f, company, hook } = await hookWith(t, {
    actions: ['contact.created', 'contact.updated', 'contact.saved', 'contact.status_added', 'contact.user_assigned', 'contact.deleted'],
    conditions: { any: [{ field: 'email', op: 'changed' }, { field: 'custom.score', op: 'changed' }] },
  });
  const status = await f.status(company.id);
  const user = await f.user(company.id);
  const contact = await f.contact(company.id, { custom: '{"score": 1}' });                                        // created: no
  await write('api', ['update crm.contacts set city = $2 where id = $1', [contact.id, 'Hampton']]);             // no
  await write('api', ['update crm.contacts set email = $2 where id = $1', [contact.id, 'b@example.com']]);      // updated
  await write('platform', ['update crm.contacts set email = email where id = $1', [contact.id]]);              // saved, unchanged: no
  await write('platform', ['update crm.contacts set custom = $2 where id = $1', [contact.id, '{"score": 2}']]); // saved: custom.score
  await write('api', ['update crm.contacts set custom = $2 where id = $1', [contact.id, '{"score": 2, "x": 1}']]); // no: score same
  await write(null, ['insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]]); // no
  await write(null, ['insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]]); // no
  await write(null, ['delete from crm.contacts where id = $1', [contact.id]]);                                  // no
  t.deepEqual(await actionsOf(hook.id), ['contact.updated', 'contact.saved']);
});

test('changed beside other leaves: decided with the update\'s changed columns, whatever order the leaves come in', async (t) => {
  const f = make();
  const company = await f.company();
  const both = await f.webhook({
    companyId: company.id, actions: ['contact.updated', 'contact.saved'],
    conditions: { all: [STATES, { field: 'email', op: 'changed' }] },
  });
  const either = await f.webhook({
    companyId: company.id, actions: ['contact.updated'],
    conditions: { any: [{ field: 'email', op: 'changed' }, { field: 'state', op: 'eq', value: 'VA' }] },
  });
  const unchanged = await f.webhook({
    companyId: company.id, actions: ['contact.updated'],
    conditions: { not: { field: 'email', op: 'changed' } },
  });
  const contact = await f.contact(company.id, { state: 'PA' });
  await write('api', ['update crm.contacts set email = $2 where id = $1', [contact.id, 'a1@example.com']]);       // either
  await write('api', ['update crm.contacts set state = $2 where id = $1', [contact.id, 'VA']]);                  // either, unchanged
  await write('api', ['update crm.contacts set city = $2 where id = $1', [contact.id, 'Hampton']]);              // either, unchanged
  await write('api', ['update crm.contacts set email = $2 where id = $1', [contact.id, 'a2@example.com']]);      // both, either
  await write('platform', ['update crm.contacts set email = $2 where id = $1', [contact.id, 'a3@example.com']]); // both (saved)
  await write('platform', ['update crm.contacts set phone = $2 where id = $1', [contact.id, '555']]);            // none
  const fired = async (hook: { id: string }) =>
    (await deliveriesOf(db().pool, [hook.id])).map((r) => [r.action, r.payload.data.changed_fields]);
  t.deepEqual(await fired(both), [['contact.updated', ['email']], ['contact.saved', ['email']]]);
  t.deepEqual(await fired(either), [['contact.updated', ['email']], ['contact.updated', ['state']], ['contact.updated', ['city']], ['contact.updated', ['email']]]);
  t.deepEqual(await fired(unchanged), [['contact.updated', ['state']], ['contact.updated', ['city']]]);
});

test('the filters of every company concerned: an assigned user\'s company and the company a contact leaves', async (t) => {
  const f = make();
  const owner = await f.company();
  const partner = await f.company();
  const next = await f.company();
  const ownerHook = await f.webhook({ companyId: owner.id, actions: ['contact.updated'], conditions: { field: 'state', op: 'eq', value: 'VA' } });
  const partnerHook = await f.webhook({ companyId: partner.id, actions: ['contact.updated'], conditions: { field: 'state', op: 'eq', value: 'MD' } });
  const partnerEcho = await f.webhook({ companyId: partner.id, actions: ['contact.updated'], ignoreSources: ['api'] });
  const contact = await f.contact(owner.id, { state: 'PA' });
  const user = await f.user(partner.id);
  await write(null, ['insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]]);
  await write('api', ['update crm.contacts set city = $2 where id = $1', [contact.id, 'Dover']]);    // nobody
  await write('api', ['update crm.contacts set state = $2 where id = $1', [contact.id, 'MD']]);      // partner
  await write(null, ['update crm.contacts set state = $2 where id = $1', [contact.id, 'VA']]);       // owner, echo
  await write(null, ['delete from crm.contact_assignments where contact_id = $1', [contact.id]]);
  await write('api', ['update crm.contacts set company_id = $2 where id = $1', [contact.id, next.id]]); // owner: the company it leaves, and it is VA
  const count = async (hook: { id: string }) => (await deliveriesOf(db().pool, [hook.id])).length;
  t.deepEqual([await count(ownerHook), await count(partnerHook), await count(partnerEcho)], [2, 1, 1]);
});

test('another company\'s conditions cost a write nothing: none evaluated, unless a user of theirs is assigned to its contact', async (t) => {
  const f = make();
  const hostile = await f.company();
  const other = await f.company();
  // the hostile company's conditions, as many as it may have, on every action
  const some = (n: number) => ({ any: Array.from({ length: n }, (_, i) => ({ field: 'city', op: 'eq', value: `C${i}` })) });
  const leaves = { any: [some(48), some(49)] };   // 100 conditions: ten webhooks, the company's 1,000
  for (let i = 0; i < 10; i++) {
    await f.webhook({ companyId: hostile.id, actions: ['contact.created', 'contact.updated', 'contact.deleted'], conditions: leaves });
  }
  const listening = await f.webhook({ companyId: other.id, actions: ['contact.updated'] });
  const contact = await f.contact(other.id);
  const client = await ownConnection(db().url, t);
  /** The engine's functions the statement called, by name, in a transaction of its own. */
  const called = async (sql: string, params: unknown[]) => {
    await client.query('begin');
    await client.query(`set local track_functions = 'pl'`);
    await client.query(sql, params);
    const { rows } = await client.query(
      `select funcname, calls::int from pg_stat_xact_user_functions
       where schemaname = 'webhooks_private' and funcname in ('condition_holds', 'condition_subject')`);
    await client.query('commit');
    return Object.fromEntries(rows.map((r) => [r.funcname, r.calls]));
  };
  t.deepEqual(await called('update crm.contacts set city = $2 where id = $1', [contact.id, 'Dover']), {});
  t.deepEqual(await called(`insert into crm.contacts (company_id, city) values ($1, 'Dover')`, [other.id]), {});
  // a user of the hostile company assigned to the contact: its conditions are the write's too
  const user = await f.user(hostile.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  const assigned = await called('update crm.contacts set city = $2 where id = $1', [contact.id, 'Camden']);
  t.true(assigned.condition_holds >= 10 * 100, JSON.stringify(assigned));
  t.is((await deliveriesOf(db().pool, [listening.id])).length, 2);
});

test('a webhook whose conditions fail writes no delivery row at all, and the write itself succeeds', async (t) => {
  const { f, company, hook } = await hookWith(t, {
    actions: ['contact.created', 'contact.updated', 'contact.status_added', 'contact.deleted'],
    conditions: { all: [{ field: 'custom.score', op: 'gt', value: 50 }, { field: 'birthday', op: 'lt', value: '1950-01-01' }] },
  });
  const other = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const status = await f.status(company.id);
  const contact = await f.contact(company.id, { custom: '{"score": "not a number"}' });
  await write('api', ['update crm.contacts set custom = $2 where id = $1', [contact.id, '{"score": [1, 2]}']]);
  await write('api', ['update crm.contacts set custom = $2 where id = $1', [contact.id, JSON.stringify({ score: '9'.repeat(5000) })]]);
  await write('api', ['update crm.contacts set custom = $2 where id = $1', [contact.id, '{"score": "1e99999999"}']]);
  await write('api', ['update crm.contacts set custom = $2, birthday = $3 where id = $1', [contact.id, '{"score": 100}', '1990-01-01']]);
  await write(null, ['insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]]);
  await write(null, ['delete from crm.contacts where id = $1', [contact.id]]);
  const { rows } = await db().pool.query('select count(*)::int as n from webhooks.deliveries where webhook_id = $1', [hook.id]);
  t.is(rows[0].n, 0);
  t.is((await deliveriesOf(db().pool, [other.id])).length, 1);
});

test('all three filters together: the Thank You Note letter for states served, not echoed, on address changes', async (t) => {
  const f = make();
  const company = await f.company();
  const thankYou = await f.status(company.id, 'Thank You Note');
  const letters = await f.webhook({
    companyId: company.id, actions: ['contact.status_added'], statusId: thankYou.id,
    fields: ['first_name', 'last_name', 'street', 'city', 'state', 'postal_code'],
    conditions: { all: [STATES, { field: 'street', op: 'not_null' }] }, ignoreSources: ['letters'],
  });
  const va = await f.contact(company.id, { first_name: 'Mary', street: '12 Langley Rd', city: 'Hampton', state: 'VA' });
  const ca = await f.contact(company.id, { first_name: 'Kate', street: '1 Infinite Loop', city: 'Cupertino', state: 'CA' });
  const noStreet = await f.contact(company.id, { first_name: 'Dot', state: 'MD' });
  for (const contact of [va, ca, noStreet]) {
    await write(null, ['insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, thankYou.id]]);
  }
  await write('letters', ['delete from crm.contact_statuses where contact_id = $1', [va.id]],
    ['insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [va.id, thankYou.id]]);
  const rows = await deliveriesOf(db().pool, [letters.id]);
  t.deepEqual(rows.map((r) => r.payload.data.contact.first_name), ['Mary']);
});

test('a condition value is compared as a time only if it reads as one, decided without casting it: exactly the values the cast reads', async (t) => {
  const values = [
    '2026-01-31T09:00:00Z', '2026-01-31 09:00+02', '2026-01-31T09:00:00.123456-05:30', '2024-02-29T00:00Z',
    '2026-02-29T00:00Z', '2026-02-30 10:00Z', '2026-04-31T10:00Z', '2026-13-01T10:00Z', '0000-01-01T00:00Z',
    '2026-01-01T24:00Z', '2026-01-01T10:60Z', '2026-01-01T10:00+16', '2026-01-01 sometime', '2026-01-01', '',
    '٢٠٢٦-01-01T10:00Z',
  ];
  const { rows } = await db().pool.query(
    `select v, webhooks_private.reads_as_time(v) as reads from unnest($1::text[]) v`, [values]);
  const reads = Object.fromEntries(rows.map((r) => [r.v, r.reads]));
  // each value said to read as a time is cast without error; the rest are not cast
  for (const value of values.filter((v) => reads[v])) {
    await t.notThrowsAsync(db().pool.query('select $1::timestamptz', [value]), value);
  }
  t.deepEqual(values.filter((v) => reads[v]), values.slice(0, 4));
});

// ---- what one write's conditions may cost ------------------------------------------
// Conditions run inside the writer's transaction, for every company the contact
// concerns: another company's, through a user of theirs assigned to it, too. What
// they examine of a contact is bounded, and so is how many a company may have.

const TEXT_MAX = 10_000;
// what contains searches of a field: its text (500 characters at most) compared at each
// place, each of its characters in the worst case ("b" and 499 "a" in a field of "a"):
// in 10,000 characters, 5,000,000 comparisons for a leaf that weighs 50 (about 20 times
// what 50 other conditions cost); in 500, 250,000
const CONTAINS_MAX = 500;

test('contains looks for its text in a field\'s first 500 characters, not past them; starts_with, eq and changed see the whole', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = (conditions: unknown) => f.webhook({ companyId: company.id, actions: ['contact.updated'], conditions });
  const found = await hook({ field: 'custom.notes', op: 'contains', value: 'NEEDLE' });
  const column = await hook({ field: 'street', op: 'contains', value: 'NEEDLE' });
  const prefix = await hook({ field: 'custom.notes', op: 'starts_with', value: 'xxx' });
  const equal = await hook({ field: 'custom.notes', op: 'eq', value: 'x'.repeat(500) });
  const changed = await hook({ field: 'custom.notes', op: 'changed' });
  const contact = await f.contact(company.id);
  const notes = (text: string) => JSON.stringify({ notes: text });
  const within = 'x'.repeat(CONTAINS_MAX - 6) + 'needle';   // ends at the 500th character
  const past = 'x'.repeat(CONTAINS_MAX - 5) + 'needle';     // its last character is the 501st
  const farPast = 'x'.repeat(TEXT_MAX) + 'needle';
  await write('api', ['update crm.contacts set custom = $2, street = $3 where id = $1', [contact.id, notes(within), within]]);
  await write('api', ['update crm.contacts set custom = $2, street = $3 where id = $1', [contact.id, notes(past), past]]);
  await write('api', ['update crm.contacts set custom = $2, street = $3 where id = $1', [contact.id, notes(farPast), farPast]]);
  // a change past the first 10,000 characters is a change
  await write('api', ['update crm.contacts set custom = $2 where id = $1', [contact.id, notes(farPast + '!')]]);
  const count = async (h: { id: string }) => (await deliveriesOf(db().pool, [h.id])).length;
  t.deepEqual(
    [await count(found), await count(column), await count(prefix), await count(equal), await count(changed)],
    [1, 1, 4, 0, 4],
  );
});

test('a company\'s webhooks have at most webhooks.max_conditions_per_company conditions together: a named refusal past it', async (t) => {
  const f = make();
  const company = await f.company();
  const other = await f.company();
  // (a connection of its own, closed after: its session's limit must not reach the
  // file's other tests through the pool, as it once did, refusing their webhooks)
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  await client.query(`set webhooks.max_conditions_per_company = '10'`);
  const leaves = (n: number) => ({ any: Array.from({ length: n }, (_, i) => ({ field: 'state', op: 'eq', value: `S${i}` })) });
  const insert = (companyId: string, conditions: unknown) => client.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions, conditions)
     values ($1, 'filtered', 'https://receiver.example.com/in', '{email}', '{contact.updated}', $2) returning id`,
    [companyId, conditions]);
  const first = (await insert(company.id, leaves(5))).rows[0].id;   // 6 conditions: the any and its 5
  await insert(company.id, leaves(3));                               // 4: 10 in all
  const refused = await insert(company.id, { field: 'state', op: 'eq', value: 'VA' }).catch((error) => error);
  t.like(refused, { code: '23514', constraint: 'webhook_conditions_limit_reached', column: 'conditions' });
  t.is(refused.message,
    `conditions: company ${company.id}'s webhooks may have at most 10 conditions together (webhooks.max_conditions_per_company; a contains counts one per 10 characters of its text, an in or not_in one per 10 values); its others have 10, this one 1`);
  // an edit counts the webhook's new conditions in place of its old ones
  const grown = await client.query('update webhooks.webhooks set conditions = $2 where id = $1', [first, leaves(6)]).catch((error) => error);
  t.like(grown, { constraint: 'webhook_conditions_limit_reached' });
  await t.notThrowsAsync(client.query('update webhooks.webhooks set conditions = $2 where id = $1', [first, leaves(4)]));
  await t.notThrowsAsync(insert(company.id, null));
  await t.notThrowsAsync(insert(company.id, { field: 'state', op: 'eq', value: 'VA' }));
  await t.notThrowsAsync(insert(other.id, leaves(8)));
});

test('a company past its conditions (the limit lowered, or counted more strictly since they were written) may still lessen a webhook\'s, not grow them', async (t) => {
  const f = make();
  const company = await f.company();
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  const leaves = (n: number) => ({ any: Array.from({ length: n }, (_, i) => ({ field: 'state', op: 'eq', value: `S${i}` })) });
  const { rows: [{ id }] } = await client.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions, conditions)
     values ($1, 'filtered', 'https://receiver.example.com/in', '{email}', '{contact.updated}', $2) returning id`,
    [company.id, leaves(7)]);   // 8
  await client.query(`set webhooks.max_conditions_per_company = '5'`);
  const update = (conditions: unknown) => client.query('update webhooks.webhooks set conditions = $2 where id = $1', [id, conditions]);
  await t.notThrowsAsync(update(leaves(5)));    // 6: fewer, though still past 5
  t.like(await update(leaves(6)).catch((error) => error), { constraint: 'webhook_conditions_limit_reached' });
  await t.notThrowsAsync(update(leaves(4)));    // 5: within
});

test('two webhooks whose conditions fit the company\'s room only one at a time, written at once: the second waits for the first, then is refused', async (t) => {
  const f = make();
  const company = await f.company();
  const [first, second] = [await db().pool.connect(), await db().pool.connect()];
  t.teardown(() => { first.release(true); second.release(true); });
  for (const c of [first, second]) await c.query(`set webhooks.max_conditions_per_company = '6'`);
  const conditions = { any: Array.from({ length: 4 }, (_, i) => ({ field: 'state', op: 'eq', value: `S${i}` })) };   // 5
  const insert = (c: typeof first) => c.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions, conditions)
     values ($1, 'filtered', 'https://receiver.example.com/in', '{email}', '{contact.updated}', $2)`,
    [company.id, conditions]);
  await first.query('begin');
  await insert(first);
  const refused = second.query('begin').then(() => insert(second)).catch((error) => error);
  // the second waits for the first's lock on the company's conditions
  await until('the second insert waits', async () => (await db().pool.query(
    `select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)).rows.length > 0);
  await first.query('commit');
  t.like(await refused, { constraint: 'webhook_conditions_limit_reached' });
  await second.query('rollback');
});

// A leaf's cost is not one comparison: contains compares its text at each place of the
// field's (worst case, a text such as "b" + 499 "a" in a field of 10,000 "a", each of
// its characters at each place), and in or not_in compares each value. Counted as one
// condition each, a company's 1,000 made one update of its contact take 5 to 8 s (986
// contains of such texts) or call condition_compare 95,700 times (986 in of 100 numbers).
test('a company\'s conditions together count a contains by each 10 characters of its text, an in or not_in by each 10 values', async (t) => {
  const f = make();
  const company = await f.company();
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  await client.query(`set webhooks.max_conditions_per_company = '100'`);
  const insert = (conditions: unknown) => client.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions, conditions)
     values ($1, 'filtered', 'https://receiver.example.com/in', '{email}', '{contact.updated}', $2) returning id`,
    [company.id, conditions]);
  const contains = (length: number) => ({ field: 'street', op: 'contains', value: 'b' + 'a'.repeat(length - 1) });
  const within = (values: number) => ({ field: 'custom.n', op: 'in', value: Array.from({ length: values }, (_, i) => i) });
  await insert({ any: [contains(500), contains(1)] });          // 1 + 50 + 1
  await insert({ all: [within(100), { not: within(11) }] });    // 1 + 10 + 1 + 2
  await insert(contains(20));                                   // 2
  await insert({ field: 'state', op: 'not_in', value: ['VA'] });   // 1: 69 in all
  const refused = await insert({ any: [contains(300), contains(11)] }).catch((error) => error);   // 1 + 30 + 2
  t.like(refused, { code: '23514', constraint: 'webhook_conditions_limit_reached', column: 'conditions' });
  t.regex(refused.message, /; its others have 69, this one 33$/);
  await t.notThrowsAsync(insert({ any: [contains(290), contains(10)] }));   // 1 + 29 + 1: 100
});

// Whether a text value is compared as a time depends on the field being a time
// (created_at): a look at the catalog. Asked for each value of an in, a company's
// conditions of in lists of time-like texts on a text field (postal_code, whose values
// start with a digit, so each value is compared) looked 9,000 times a write, each a
// query: about 2 ms a leaf of 100 values where one of 100 numbers costs 0.2.
test('a leaf asks whether its field is a time once, however many time-like values its in or not_in lists', async (t) => {
  const f = make();
  const hostile = await f.company();
  const other = await f.company();
  // (100 times in 16 KB of conditions: seven lists a webhook, 71 conditions of its company's 1,000)
  const times = Array.from({ length: 100 }, (_, i) => `2026-01-01 0${Math.floor(i / 60)}:${String(i % 60).padStart(2, '0')}Z`);
  const lists = { any: Array.from({ length: 7 }, () => ({ field: 'postal_code', op: 'in', value: times })) };
  for (let i = 0; i < 14; i++) {
    await f.webhook({ companyId: hostile.id, actions: ['contact.updated'], conditions: lists });
  }
  const matching = await f.webhook({
    companyId: hostile.id, actions: ['contact.updated'],
    conditions: { field: 'created_at', op: 'in', value: ['2000-01-01T00:00:00Z', '2020-01-01T00:00:00+00:00'] },
  });
  const contact = await f.contact(other.id, { postal_code: '23666' });
  await db().pool.query(`update crm.contacts set created_at = '2020-01-01T02:00:00+02:00' where id = $1`, [contact.id]);
  const user = await f.user(hostile.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  const client = await ownConnection(db().url, t);
  await client.query('begin');
  await client.query(`set local track_functions = 'all'`);
  await client.query('update crm.contacts set city = $2 where id = $1', [contact.id, 'Camden']);
  const { rows } = await client.query(
    `select coalesce(sum(calls), 0)::int as n from pg_stat_xact_user_functions
     where schemaname = 'webhooks_private' and funcname = 'condition_field_kind'`);
  await client.query('commit');
  // 99 leaves, each evaluated at most twice (the probe, then capture for the one that holds)
  t.true(rows[0].n <= 2 * 99, `condition_field_kind called ${rows[0].n} times`);
  // a time on created_at still compares as a time
  t.deepEqual((await deliveriesOf(db().pool, [matching.id])).map((d) => d.action), ['contact.updated']);
});

// A session's standard_conforming_strings decides how the literals of the functions it
// runs are read, the engine's too: off (an old driver's or a script's), a backslash
// in a literal is an escape, and the patterns that tell a number or a time read
// otherwise. In such a writer's session "12x5" passed for a number, and its cast
// failed the write (22P02); a time compared as text.
test('a writer\'s session with standard_conforming_strings off: conditions decide as in any session, and never fail the write', async (t) => {
  const { f, company, hook } = await hookWith(t, {
    actions: ['contact.updated'], fields: ['custom', 'created_at'],
    conditions: { any: [{ field: 'custom.score', op: 'gt', value: 10 }, { field: 'created_at', op: 'gt', value: '2026-12-07T13:00:00+02:00' }] },
  });
  const contact = await f.contact(company.id);
  await db().pool.query(`update crm.contacts set created_at = '2026-01-01T00:00:00Z' where id = $1`, [contact.id]);
  const legacy = await ownConnection(db().url, t);
  await legacy.query('set standard_conforming_strings = off');
  await legacy.query('set escape_string_warning = off');
  const update = (set: string) => legacy.query(`update crm.contacts set ${set} where id = $1`, [contact.id]);
  await t.notThrowsAsync(update(`custom = '{"score": "12x5"}'`));                           // no number: no
  await update(`custom = '{"score": "12"}'`);                                               // yes
  await update(`custom = '{}', created_at = '2026-12-07T12:00:00Z'`);                        // 11:00Z is past: yes
  await update(`created_at = '2026-12-07T10:30:00Z'`);                                       // no
  const scores = (await deliveriesOf(db().pool, [hook.id])).map((d) => [d.payload.data.contact.custom, d.payload.data.contact.created_at]);
  t.deepEqual(scores, [[{ score: '12' }, '2026-01-01T00:00:00+00:00'], [{}, '2026-12-07T12:00:00+00:00']]);
});
