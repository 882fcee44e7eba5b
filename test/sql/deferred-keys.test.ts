// A CRM whose foreign keys to crm.contacts are DEFERRABLE INITIALLY DEFERRED (as some
// ORMs make them) may write an assignment or a status tag before the contact it names,
// in one transaction. Each is announced all the same, at the commit, after the
// contact's contact.created. (Its own file: it changes the CRM's constraints for
// the whole database.)
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

// made once per file, by the first test that needs it
let deferred: Promise<unknown> | undefined;
const deferKeys = () => (deferred ??= db().pool.query(`
  alter table crm.contact_assignments alter constraint contact_assignments_contact_id_fkey deferrable initially deferred;
  alter table crm.contact_statuses alter constraint contact_statuses_contact_id_fkey deferrable initially deferred`));

test('an assignment and a tag written before their contact: announced at the commit, after contact.created', async (t) => {
  await deferKeys();
  const f = factories(db().pool);
  const owner = await f.company();
  const partner = await f.company();
  const [jane, john] = [await f.user(partner.id, 'Jane Doe'), await f.user(partner.id, 'John Roe')];
  const status = await f.status(owner.id, 'Lead');
  const actions = ['contact.created', 'contact.status_added', 'contact.user_assigned', 'contact.first_company_user_assigned'];
  const ownerHook = await f.webhook({ companyId: owner.id, actions });
  const partnerHook = await f.webhook({ companyId: partner.id, actions });
  const { rows: [{ id }] } = await db().pool.query("select nextval(pg_get_serial_sequence('crm.contacts', 'id')) + 1000000 as id");
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [id, jane.id]);
    await client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [id, john.id]);
    await client.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [id, status.id]);
    await client.query("insert into crm.contacts (id, company_id, first_name) values ($1, $2, 'Early')", [id, owner.id]);
    await client.query('commit');
  } finally {
    client.release();
  }
  const fired = async (hookId: string) => (await deliveriesOf(db().pool, [hookId]))
    .map((r) => [r.action, (r.payload.data.user ?? r.payload.data.status)?.name ?? null]);
  t.deepEqual(await fired(ownerHook.id), [
    ['contact.created', null],
    ['contact.user_assigned', 'Jane Doe'],
    ['contact.user_assigned', 'John Roe'],
    ['contact.status_added', 'Lead'],
  ]);
  // (one first for the partner: Jane, the smaller id of the two assigned together)
  t.deepEqual(await fired(partnerHook.id), [
    ['contact.first_company_user_assigned', 'Jane Doe'],
    ['contact.user_assigned', 'Jane Doe'],
    ['contact.user_assigned', 'John Roe'],
    ['contact.status_added', 'Lead'],
  ]);
  t.is((await db().pool.query('select count(*)::int as n from webhooks_private.written_before_contact')).rows[0].n, 0);
});

test('written before its contact and rolled back: nothing, and nothing left behind', async (t) => {
  await deferKeys();
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.user_assigned'] });
  const { rows: [{ id }] } = await db().pool.query("select nextval(pg_get_serial_sequence('crm.contacts', 'id')) + 2000000 as id");
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [id, user.id]);
    await client.query('insert into crm.contacts (id, company_id) values ($1, $2)', [id, company.id]);
    await client.query('rollback');
  } finally {
    client.release();
  }
  t.deepEqual(await deliveriesOf(db().pool, [hook.id]), []);
});

// The deferred announce runs once for each row noted; the first run takes them all.
// The rows it took are deleted by this transaction, not gone: a later run that scanned
// the table would read all of them again (rows read counts only those it can see, so
// the count of scans tells it), and 1,000 tags before their contacts cost 1,000 scans
// of 1,000 rows. (SET CONSTRAINTS ALL IMMEDIATE runs the deferred triggers as the
// commit would, where this transaction's counts can still be read.)
test('tags written before 1,000 contacts: the commit\'s announce scans the noted rows once, not once a row', async (t) => {
  await deferKeys();
  const f = factories(db().pool);
  const company = await f.company();
  const status = await f.status(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.status_added'] });
  const n = 1_000;
  const { rows: [{ first }] } = await db().pool.query("select nextval(pg_get_serial_sequence('crm.contacts', 'id')) + 5000000 as first");
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query('insert into crm.contact_statuses (contact_id, status_id) select $1::bigint + k, $2 from generate_series(1, $3::int) k',
      [first, status.id, n]);
    await client.query("insert into crm.contacts (id, company_id, first_name) select $1::bigint + k, $2, 'Early' from generate_series(1, $3::int) k",
      [first, company.id, n]);
    await client.query('set constraints all immediate');
    const { rows: [scans] } = await client.query(
      `select seq_scan + coalesce(idx_scan, 0) as scans, n_tup_ins as noted from pg_stat_xact_user_tables
       where relid = 'webhooks_private.written_before_contact'::regclass`);
    await client.query('commit');
    t.is(Number(scans.noted), n);
    t.true(Number(scans.scans) <= 3, `${scans.scans} scans of written_before_contact for ${n} rows noted`);
  } finally {
    client.release();
  }
  t.is((await deliveriesOf(db().pool, [hook.id])).length, n);
  t.is((await db().pool.query('select count(*)::int as n from webhooks_private.written_before_contact')).rows[0].n, 0);
});
