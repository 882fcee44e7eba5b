// A DBA moving the CRM from another server restores its rows alone into a database
// where the engine is installed (`pg_dump --data-only --schema=crm`, `pg_restore
// --data-only`). pg_restore loads each table with COPY, which runs the capture
// triggers as any insert does: every restored contact is a contact.created to every
// webhook, unless the restore turns triggers off. docs/operations.md ("Backups and
// copies") says how; these are the statements pg_restore sends for each way.
import test from 'ava';
import pg from 'pg';
import { copyIn } from '../helpers/copy-in.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const RESTORED = 20;

type Way = 'as is' | 'disable-triggers' | 'disable user triggers' | 'replica';

/**
 * The CRM's rows of one company as pg_restore --data-only loads them: its session
 * settings, then COPY of each table in the order of their keys, then the sequences.
 * 'disable-triggers': pg_restore --disable-triggers (ALTER TABLE … DISABLE TRIGGER ALL
 * around each COPY); 'disable user triggers': the tables' owner who is no superuser,
 * ALTER TABLE … DISABLE TRIGGER USER before and ENABLE after (docs/operations.md);
 * 'replica': PGOPTIONS='-c session_replication_role=replica'.
 */
async function restoreCrmRows(way: Way, companyId: string, firstId: number): Promise<{ userIds: number[]; contactIds: number[] }> {
  const ids = Array.from({ length: RESTORED }, (_, i) => firstId + i);
  const client = new pg.Client({
    connectionString: db().url,
    ...(way === 'replica' ? { options: '-c session_replication_role=replica' } : {}),
  });
  await client.connect();
  try {
    await client.query(`set statement_timeout = 0; set lock_timeout = 0; set client_encoding = 'UTF8';
      set standard_conforming_strings = on; select pg_catalog.set_config('search_path', '', false);
      set check_function_bodies = false; set client_min_messages = warning; set row_security = off`);
    const table = async (name: string, columns: string, rows: string[]) => {
      const which = { 'disable-triggers': 'all', 'disable user triggers': 'user' }[way as string];
      if (which) await client.query(`alter table ${name} disable trigger ${which}`);
      await copyIn(client, `copy ${name} (${columns}) from stdin`, rows.map((row) => `${row}\n`).join('') + '\\.\n');
      if (which) await client.query(`alter table ${name} enable trigger ${which}`);
    };
    await table('crm.users', 'id, company_id, name, email', ids.map((id) => `${id}\t${companyId}\tAnn de la Cruz ${id}\tann${id}@example.com`));
    await table('crm.contacts', 'id, company_id, first_name, email', ids.map((id) => `${id}\t${companyId}\tRestored ${id}\tr${id}@example.com`));
    await table('crm.contact_assignments', 'contact_id, user_id, assigned_at', ids.map((id) => `${id}\t${id}\t2026-01-02 03:04:05+00`));
    await client.query(`select pg_catalog.setval(pg_catalog.pg_get_serial_sequence('crm.contacts', 'id'), $1, true)`, [firstId + RESTORED]);
    await client.query(`select pg_catalog.setval(pg_catalog.pg_get_serial_sequence('crm.users', 'id'), $1, true)`, [firstId + RESTORED]);
  } finally {
    await client.end();
  }
  return { userIds: ids, contactIds: ids };
}

async function scene() {
  const f = factories(db().pool);
  const company = await f.company();
  const hooks = [
    await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.user_assigned', 'contact.first_company_user_assigned'] }),
    await f.webhook({ companyId: company.id, actions: ['contact.created'] }),
  ];
  return { f, company, hooks };
}

async function announced(hookIds: string[]): Promise<Record<string, number>> {
  const { rows } = await db().pool.query(
    `select action::text, count(*)::int as n from webhooks.deliveries where webhook_id = any ($1::bigint[]) group by 1 order by 1`, [hookIds]);
  return Object.fromEntries(rows.map((r) => [r.action, r.n]));
}

async function nameWordsOf(userIds: number[]): Promise<number> {
  const { rows: [row] } = await db().pool.query(
    `select count(*)::int as n from webhooks_private.crm_name_words where kind = 'u' and id = any ($1::bigint[])`, [userIds]);
  return row.n;
}

test.serial('restored as is, every restored contact is announced to every webhook, and each assignment too', async (t) => {
  const { company, hooks } = await scene();
  const { userIds } = await restoreCrmRows('as is', company.id, 1_000_000);
  t.deepEqual(await announced(hooks.map((h) => h.id)), {
    'contact.created': 2 * RESTORED,
    'contact.first_company_user_assigned': RESTORED,
    'contact.user_assigned': RESTORED,
  });
  t.is(await nameWordsOf(userIds), 4 * RESTORED, 'the words after the first of "Ann de la Cruz n"');
});

for (const [way, firstId] of [['disable-triggers', 2_000_000], ['disable user triggers', 3_000_000], ['replica', 4_000_000]] as const) {
  test.serial(`restored with triggers off (${way}): nothing is announced, a write after it is announced once, and the users' name words come back with webhooks_ops.refill_crm_name_words()`, async (t) => {
    const { f, company, hooks } = await scene();
    const { userIds } = await restoreCrmRows(way, company.id, firstId);
    t.deepEqual(await announced(hooks.map((h) => h.id)), {});

    const contact = await f.contact(company.id);
    const { rows } = await db().pool.query(
      'select webhook_id::text, action::text, contact_id::text from webhooks.deliveries where webhook_id = any ($1::bigint[]) order by webhook_id',
      [hooks.map((h) => h.id)]);
    t.deepEqual(rows, hooks.map((h) => ({ webhook_id: h.id, action: 'contact.created', contact_id: String(contact.id) })));

    t.is(await nameWordsOf(userIds), 0, 'the triggers that keep them were off');
    await db().pool.query('call webhooks_ops.refill_crm_name_words()');
    t.is(await nameWordsOf(userIds), 4 * RESTORED);
    await db().pool.query('call webhooks_ops.refill_crm_name_words()');
    t.is(await nameWordsOf(userIds), 4 * RESTORED, 'run again, it changes nothing');
  });
}
