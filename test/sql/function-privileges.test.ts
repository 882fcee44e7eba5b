// Postgres grants EXECUTE to PUBLIC on every function and procedure it creates: the
// engine's would be one `grant usage on schema … to public` away from anyone's. None
// of the engine's schemas' functions is executable by PUBLIC (sql/60_access.sql); the
// roles have what they call, and a CRM writer, granted nothing of the engine's, still
// fires the capture triggers (Postgres checks EXECUTE on a trigger function when the
// trigger is created, not when it fires).
import test from 'ava';
import { connectAs, crmAppRole } from '../helpers/crm-role.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

/** The schemas the engine owns: those sql/00_schemas.sql creates. */
const ENGINE_SCHEMAS = ['webhooks', 'webhooks_private', 'webhooks_relay', 'webhooks_ops'];

test('no function or procedure of the engine\'s schemas is executable by PUBLIC', async (t) => {
  const { rows: [{ names }] } = await db().pool.query('select webhooks_private.engine_schema_names() as names');
  t.deepEqual(names, ENGINE_SCHEMAS);
  const { rows } = await db().pool.query<{ routine: string }>(
    `select p.oid::regprocedure::text as routine
     from pg_proc p
     join pg_namespace s on s.oid = p.pronamespace
     where s.nspname = any($1)
       and exists (select from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                   where a.grantee = 0 and a.privilege_type = 'EXECUTE')
     order by 1`, [ENGINE_SCHEMAS]);
  t.deepEqual(rows.map((row) => row.routine), []);
});

test('a CRM writer granted nothing of the engine\'s still fires the capture triggers', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated', 'contact.deleted'] });
  const role = await crmAppRole(db().pool);
  const { rows: [{ n: executable }] } = await db().pool.query(
    `select count(*)::int as n from pg_proc p join pg_namespace s on s.oid = p.pronamespace
     where s.nspname = any($1) and has_function_privilege($2, p.oid, 'EXECUTE')`, [ENGINE_SCHEMAS, role]);
  t.is(executable, 0);

  const writer = await connectAs(t, db().pool, role);
  const { rows: [contact] } = await writer.query(
    `insert into crm.contacts (company_id, first_name) values ($1, 'Ada') returning id`, [company.id]);
  await writer.query(`update crm.contacts set first_name = 'Ada Lovelace' where id = $1`, [contact.id]);
  await writer.query(`delete from crm.contacts where id = $1`, [contact.id]);
  const { rows } = await db().pool.query(
    `select action::text from webhooks.deliveries where webhook_id = $1 and contact_id = $2 order by id`, [webhook.id, contact.id]);
  t.deepEqual(rows.map((row) => row.action), ['contact.created', 'contact.updated', 'contact.deleted']);
});
