// The CRM deletes a company whose 10,000 contacts its keys delete with it (ON DELETE
// CASCADE from companies to contacts, as the reference schema has). What is announced:
// contact.deleted to the other companies whose users were assigned to some of them,
// nothing to the company's own webhooks (deleted with it). What it costs, by counts:
// the delete trigger runs once a contact, and capture only for the contacts some
// other company listens for.
import test from 'ava';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

const CONTACTS = 10_000;

test('a company deleted with its 10,000 contacts: contact.deleted to the companies of assigned users alone; capture runs for those contacts alone', async (t) => {
  const f = make();
  const [company, other] = [await f.company(), await f.company()];
  const user = await f.user(other.id);
  const own = await f.webhook({ companyId: company.id, actions: ['contact.deleted', 'contact.updated'], fields: ['first_name'] });
  const theirs = await f.webhook({ companyId: other.id, actions: ['contact.deleted'], fields: ['first_name'] });
  await db().pool.query(`insert into crm.contacts (company_id, first_name) select $1, 'C' || n from generate_series(1, $2::int) n`,
    [company.id, CONTACTS]);
  const { rows: assigned } = await db().pool.query(
    `insert into crm.contact_assignments (contact_id, user_id)
     select id, $2 from crm.contacts where company_id = $1 order by id limit 3 returning contact_id::int`, [company.id, user.id]);

  const dba = await ownConnection(db().url, t);
  await dba.query(`set track_functions = 'all'`);
  await dba.query('begin');
  const { rowCount } = await dba.query('delete from crm.companies where id = $1', [company.id]);
  const { rows: calls } = await dba.query(
    `select funcname, calls::int from pg_stat_xact_user_functions
     where schemaname = 'webhooks_private' and funcname in ('tg_contacts__deleted', 'contact_wanted', 'capture', 'enqueue')
     order by funcname`);
  await dba.query('commit');
  t.is(rowCount, 1);
  t.deepEqual(Object.fromEntries(calls.map((c) => [c.funcname, c.calls])),
    { tg_contacts__deleted: CONTACTS, contact_wanted: CONTACTS, capture: assigned.length, enqueue: assigned.length });

  const { rows } = await db().pool.query(
    `select webhook_id::text, action, contact_id::int from webhooks.deliveries order by contact_id`);
  t.deepEqual(rows, assigned.map((a) => ({ webhook_id: theirs.id, action: 'contact.deleted', contact_id: a.contact_id })));
  t.is((await db().pool.query('select count(*)::int from webhooks.webhooks where id = $1', [own.id])).rows[0].count, 0);
  t.is((await db().pool.query('select count(*)::int from crm.contacts where company_id = $1', [company.id])).rows[0].count, 0);
});
