// The CRM's own application role: grants on the crm tables only, as a CRM that writes
// its contacts as a role of its own has. Roles belong to the whole cluster, which
// test files share: made if missing, and granted once per database.
import type pg from 'pg';

export const CRM_APP_ROLE = 'bpd_test_crm_app';

const granted = new WeakMap<pg.Pool, Promise<void>>();

/** The role, with its grants on `pool`'s database (once per pool: two grants at once collide on the catalog rows). */
export function crmAppRole(pool: pg.Pool): Promise<string> {
  if (!granted.has(pool)) granted.set(pool, makeCrmAppRole(pool));
  return granted.get(pool)!.then(() => CRM_APP_ROLE);
}

async function makeCrmAppRole(pool: pg.Pool): Promise<void> {
  await pool.query(`
    do $$ begin
      create role ${CRM_APP_ROLE} nologin;
    exception when duplicate_object or unique_violation then null;
    end $$`);
  await pool.query(`
    grant usage on schema crm to ${CRM_APP_ROLE};
    grant select, insert, update, delete on all tables in schema crm to ${CRM_APP_ROLE};
    grant usage on all sequences in schema crm to ${CRM_APP_ROLE}`);
}
