// The CRM's DBA renames crm.contacts (to crm.people, a view named contacts in its
// place) or moves it to another schema. The engine's triggers follow the table (they
// are the table's), so capture goes on; migrate, which puts them on the CRM's tables
// by name, stops and says which table it needs and why, before it changes anything.
// The tests change the tables themselves, so they run one after another.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

const announced = async (hookId: string) =>
  (await db().pool.query('select action, contact_id::int from webhooks.deliveries where webhook_id = $1 order by id', [hookId]))
    .rows.map((r) => [r.action, r.contact_id]);

test.serial('contacts renamed, a view in its place: capture follows the table, and migrate names the table it needs', async (t) => {
  const f = make();
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated', 'contact.deleted'], fields: ['first_name'] });
  await db().pool.query('alter table crm.contacts rename to people; create view crm.contacts as select * from crm.people');
  const write = async () => {
    const { rows: [{ id }] } = await db().pool.query(
      `insert into crm.contacts (company_id, first_name) values ($1, 'Ada') returning id::int`, [company.id]);
    await db().pool.query(`update crm.people set first_name = 'Ada L.' where id = $1`, [id]);
    await db().pool.query(`delete from crm.contacts where id = $1`, [id]);
    return id as number;
  };
  const first = await write();
  await t.throwsAsync(migrate(db().url), {
    message: /crm\.contacts is a view: the engine's capture triggers go on the CRM's tables by their names/,
  });
  // the failed migrate changed nothing: the triggers are still the renamed table's
  const second = await write();
  t.deepEqual(await announced(hook.id), [first, second].flatMap((id) =>
    [['contact.created', id], ['contact.updated', id], ['contact.deleted', id]]));
});

test.serial('contacts moved to another schema: migrate names the table it needs', async (t) => {
  await db().pool.query('drop view crm.contacts; create schema sales; alter table crm.people set schema sales');
  await t.throwsAsync(migrate(db().url), {
    message: /crm\.contacts does not exist: the engine's capture triggers go on the CRM's tables by their names/,
  });
  // named back, the engine is applied again
  await db().pool.query('alter table sales.people set schema crm; alter table crm.people rename to contacts');
  await t.notThrowsAsync(migrate(db().url));
});
