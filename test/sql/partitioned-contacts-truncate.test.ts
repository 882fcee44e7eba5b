// TRUNCATE of a partitioned crm.contacts, or of one of its partitions, tidies what the
// engine kept of the contacts it removed (docs/capture.md, "TRUNCATE announces
// nothing"): their rows of firsts go and their updates waiting out a coalesce window
// are sent now. Here the CRM partitions the table by created_at: one partition made
// before the migrate, the others by a DBA after it, made as a partition, attached, and
// made below a partition that is partitioned itself. (Postgres copies row triggers to
// new partitions, not the statement trigger of TRUNCATE.) The tests change the table
// itself, so they run one after another.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { partitionContacts } from '../helpers/partitioned-contacts.ts';
import { connectAs } from '../helpers/crm-role.ts';

const db = useTestDatabase(test);

let partitioned: Promise<void> | undefined;
async function partition(): Promise<void> {
  await partitionContacts(db(), 'contacts_2024', '2025-01-01');
  // the DBA's, after the engine was applied
  await db().pool.query(`create table crm.contacts_2025 partition of crm.contacts for values from ('2025-01-01') to ('2026-01-01')`);
  await db().pool.query(`create table crm.contacts_2026 (like crm.contacts including defaults)`);
  await db().pool.query(`alter table crm.contacts attach partition crm.contacts_2026 for values from ('2026-01-01') to ('2027-01-01')`);
  await db().pool.query(`create table crm.contacts_2027 partition of crm.contacts for values from ('2027-01-01') to ('2028-01-01') partition by range (created_at)`);
  await db().pool.query(`create table crm.contacts_2027_0 partition of crm.contacts_2027 for values from ('2027-01-01') to ('2027-07-01')`);
  await db().pool.query(`create table crm.contacts_2027_1 partition of crm.contacts_2027 for values from ('2027-07-01') to ('2028-01-01')`);
}
/** crm.contacts partitioned, once for the file (the database is made by a hook of its own). */
const ready = () => (partitioned ??= partition());

/** A company whose contacts (named, each created at the time given) each have a first assignment and an update waiting out an hour's window. */
async function waiting(created: Record<string, string>) {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id);
  await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, '1 hour', false)`, [hook.id]);
  const ids: Record<string, string> = {};
  for (const [name, at] of Object.entries(created)) {
    const contact = await f.contact(company.id, { first_name: name, created_at: at });
    ids[name] = contact.id;
    await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  }
  await db().pool.query(`update crm.contacts set first_name = first_name || '!' where company_id = $1`, [company.id]);
  return { company, hook, ids };
}

/** Of the contacts named, whether each still has its row of firsts, and whether its update is due. */
async function kept(hookId: string, ids: Record<string, string>) {
  const result: Record<string, { first: boolean; due: boolean | undefined }> = {};
  for (const [name, id] of Object.entries(ids)) {
    const first = (await db().pool.query('select count(*)::int as n from webhooks_private.first_assignments where contact_id = $1', [id])).rows[0].n > 0;
    const due = (await db().pool.query('select next_attempt_at <= now() as due from webhooks.delivery_queue where webhook_id = $1 and contact_id = $2',
      [hookId, id])).rows[0]?.due;
    result[name] = { first, due };
  }
  return result;
}

for (const [made, table, at] of [
  ['made as a partition', 'crm.contacts_2025', '2025-06-01'],
  ['attached', 'crm.contacts_2026', '2026-06-01'],
  ['made partitioned itself', 'crm.contacts_2027', '2027-06-01'],
] as const) {
  test.serial(`TRUNCATE of a partition ${made} after the migrate takes its contacts' rows of firsts and ends their updates' waits; the others' stay`, async (t) => {
    await ready();
    const { hook, ids } = await waiting({ before: '2024-06-01', after: at });
    await db().pool.query(`truncate ${table}`);
    t.deepEqual(await kept(hook.id, ids), { before: { first: true, due: false }, after: { first: false, due: true } });
  });
}

test.serial('TRUNCATE of a partition of a partition, both made after the migrate, tidies its own contacts alone', async (t) => {
  await ready();
  const { hook, ids } = await waiting({ before: '2024-06-01', spring: '2027-03-01', autumn: '2027-09-01' });
  await db().pool.query('truncate crm.contacts_2027_0');
  t.deepEqual(await kept(hook.id, ids), {
    before: { first: true, due: false }, spring: { first: false, due: true }, autumn: { first: true, due: false },
  });
});

// (the last of the file's layout: it gives crm.contacts to another owner)
// (Postgres clones the engine's row triggers to the partition as its maker, who needs
// to execute their functions; not the TRUNCATE trigger's, which the event trigger puts
// on as the engine's owner)
test.serial('a partition made by the table\'s owner, no superuser and not let execute the TRUNCATE trigger\'s function, gets the trigger all the same', async (t) => {
  await ready();
  const owner = 'bpd_test_contacts_owner';
  await db().pool.query(`do $$ begin create role ${owner} nologin nosuperuser;
                         exception when duplicate_object or unique_violation then null; end $$`);
  await db().pool.query(`grant usage, create on schema crm to ${owner}; grant references on all tables in schema crm to ${owner};
                         alter table crm.contacts owner to ${owner};
                         grant usage on schema webhooks_private to ${owner};
                         grant execute on all functions in schema webhooks_private to ${owner};
                         revoke execute on function webhooks_private.tg_contacts__truncated() from ${owner}`);
  const client = await connectAs(t, db().pool, owner);
  await client.query(`create table crm.contacts_later partition of crm.contacts for values from ('2028-01-01') to (maxvalue)`);
  const { hook, ids } = await waiting({ before: '2024-06-01', after: '2028-06-01' });
  await db().pool.query('truncate crm.contacts_later');
  t.deepEqual(await kept(hook.id, ids), { before: { first: true, due: false }, after: { first: false, due: true } });
});

/** How many times the statement scanned the engine's rows of firsts (the tidying's first step), undone after. */
async function tidyings(statement: string): Promise<number> {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    const scans = `select coalesce(seq_scan, 0) + coalesce(idx_scan, 0) as n from pg_catalog.pg_stat_xact_user_tables
                   where relid = 'webhooks_private.first_assignments'::regclass`;
    const before = Number((await client.query(scans)).rows[0].n);
    await client.query(statement);
    const after = Number((await client.query(scans)).rows[0].n);
    await client.query('rollback');
    return after - before;
  } finally {
    client.release();
  }
}

test.serial('TRUNCATE of the partitioned table tidies once, not once more for each partition whose trigger fires with it', async (t) => {
  await ready();
  await waiting({ a: '2024-06-01', b: '2025-06-01', c: '2026-06-01', d: '2027-06-01' });
  t.is(await tidyings('truncate crm.contacts cascade'), 1);
  t.is(await tidyings('truncate crm.contacts_2027'), 1);
  t.is(await tidyings('truncate crm.contacts_2024'), 1);
  // (a partition named before the table fires first: tidied at its own turn, and the
  // table's once more)
  t.is(await tidyings('truncate crm.contacts_2025, crm.contacts cascade'), 2);
});

test.serial('a partition truncated alone after the table, in one statement, tidies the contacts written between', async (t) => {
  await ready();
  const { company, hook } = await waiting({});
  await db().pool.query(`
    do $$
    declare
      v_id bigint;
    begin
      truncate crm.contacts cascade;
      insert into crm.contacts (company_id, first_name, created_at) values (${Number(company.id)}, 'Again', '2024-06-01') returning id into v_id;
      update crm.contacts set first_name = 'Again!' where id = v_id;
      truncate crm.contacts_2024;
    end $$`);
  const { rows } = await db().pool.query('select next_attempt_at <= now() as due from webhooks.delivery_queue where webhook_id = $1', [hook.id]);
  t.deepEqual(rows, [{ due: true }]);
});
