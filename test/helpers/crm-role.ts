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

// The engine's owner as a deployment has it: a role that is no superuser and not a
// member of pg_read_all_stats, which owns the engine's schemas and everything in
// them, as when it ran the migrate. Postgres shows such a role another role's
// sessions in pg_stat_activity without their transaction's start or state (their
// backend_xid and backend_xmin it shows to every role).
export const ENGINE_OWNER_ROLE = 'bpd_test_engine_owner';

const owned = new WeakMap<pg.Pool, Promise<void>>();

/** The owner, `pool`'s database's engine made its own (once per pool), and the CRM's role made beside it. */
export function engineOwnerRole(pool: pg.Pool): Promise<string> {
  if (!owned.has(pool)) owned.set(pool, makeEngineOwner(pool));
  return owned.get(pool)!.then(() => ENGINE_OWNER_ROLE);
}

const ENGINE_SCHEMAS = `('webhooks', 'webhooks_private', 'webhooks_relay', 'webhooks_ops', 'webhooks_partitions')`;

async function makeEngineOwner(pool: pg.Pool): Promise<void> {
  await crmAppRole(pool);
  await pool.query(`
    do $$ begin
      create role ${ENGINE_OWNER_ROLE} nologin nosuperuser;
    exception when duplicate_object or unique_violation then null;
    end $$`);
  await pool.query(`
    -- (the owner made the capture triggers on the CRM's tables, and reads them)
    grant usage on schema crm to ${ENGINE_OWNER_ROLE};
    grant all on all tables in schema crm to ${ENGINE_OWNER_ROLE};
    grant all on all sequences in schema crm to ${ENGINE_OWNER_ROLE}`);
  // (sequences of identity columns go with their tables)
  await pool.query(`
    do $$
    declare
      v record;
    begin
      for v in
        select format('alter schema %I owner to ${ENGINE_OWNER_ROLE}', n.nspname) as ddl
        from pg_namespace n where n.nspname in ${ENGINE_SCHEMAS}
        union all
        select format('alter %s %s owner to ${ENGINE_OWNER_ROLE}',
                      case c.relkind when 'v' then 'view' when 'm' then 'materialized view' when 'S' then 'sequence'
                                     else 'table' end, c.oid::regclass)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ${ENGINE_SCHEMAS} and c.relkind in ('r', 'p', 'v', 'm', 'S')
          and not (c.relkind = 'S' and exists (select 1 from pg_depend d
                                               where d.classid = 'pg_class'::regclass and d.objid = c.oid
                                                 and d.deptype in ('a', 'i')))
        union all
        -- (the types of no table's: a table's goes with it, an array's with its element's)
        select format('alter %s %s owner to ${ENGINE_OWNER_ROLE}', case t.typtype when 'd' then 'domain' else 'type' end,
                      t.oid::regtype)
        from pg_type t join pg_namespace n on n.oid = t.typnamespace
        where n.nspname in ${ENGINE_SCHEMAS} and t.typelem = 0
          and (t.typtype in ('d', 'e', 'r', 'm')
               or t.typtype = 'c' and (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c')
        union all
        select format('alter %s %s owner to ${ENGINE_OWNER_ROLE}', case p.prokind when 'p' then 'procedure' else 'function' end,
                      p.oid::regprocedure)
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ${ENGINE_SCHEMAS}
      loop
        execute v.ddl;
      end loop;
    end $$`);
}

/** A connection of `pool` as `role` (set role), released at the test's end (its role set: not back into the pool). */
export async function connectAs(t: { teardown: (fn: () => void) => void }, pool: pg.Pool, role: string): Promise<pg.PoolClient> {
  const client = await pool.connect();
  t.teardown(() => client.release(true));
  await client.query(`set role ${role}`);
  return client;
}

/**
 * `url` (a superuser's) connecting as the engine's owner of `pool`'s database, as a
 * deployment's migrate role: the role set at connection start, and beside owning the
 * engine, what its migrate needs (to create in the database, to grant the API's roles
 * one another and comment on them: sql/60_access.sql). Not a member of the API's
 * roles, nor of pg_read_all_stats: no more of pg_stat_activity shown to it.
 */
export async function engineOwnerUrl(pool: pg.Pool, url: string): Promise<string> {
  const owner = await engineOwnerRole(pool);
  const { rows: [{ database }] } = await pool.query<{ database: string }>('select current_database() as database');
  await pool.query(`grant create on database ${database} to ${owner}`);
  // (a comment on a role asks for CREATEROLE besides)
  await pool.query(`alter role ${owner} createrole`);
  await pool.query(`grant webhook_viewer, webhook_admin, webhook_authenticator, bpd_webhooks_relay to ${owner}
                    with admin true, inherit false, set false`);
  const ownerUrl = new URL(url);
  ownerUrl.searchParams.set('options', `-c role=${owner}`);
  return ownerUrl.toString();
}

/**
 * A login of `database`'s own for the relay, a member of bpd_webhooks_relay as a
 * deployment's relay login is (sql/60_access.sql): its URL, and the role, dropped with
 * the test. A role belongs to the whole cluster, which test files share: one of its own
 * may carry settings of its own (`alter role … set`), which reach no other test.
 */
export async function relayLoginUrl(
  t: { teardown: (fn: () => Promise<void>) => void },
  database: { name: string; url: string; pool: pg.Pool },
): Promise<{ role: string; url: string }> {
  return await memberLoginUrl(t, database, 'bpd_webhooks_relay', 'relay');
}

/**
 * A login of `database`'s own (named after it and `suffix`), a member of `granted` as
 * a deployment grants that role to a login of its own: its URL, and the role, dropped
 * with the test.
 */
export async function memberLoginUrl(
  t: { teardown: (fn: () => Promise<void>) => void },
  database: { name: string; url: string; pool: pg.Pool },
  granted: string,
  suffix: string,
): Promise<{ role: string; url: string }> {
  const role = `${database.name}_${suffix}`;
  const url = new URL(database.url);
  // (the password of the URL's user: the server may ask for one)
  const { rows: [{ create }] } = await database.pool.query<{ create: string }>(
    `select format('create role %I login password %L', $1::text, $2::text) as create`,
    [role, decodeURIComponent(url.password)]);
  await database.pool.query(create);
  t.teardown(async () => {
    await database.pool.query(`drop role if exists ${role}`);
  });
  await database.pool.query(`grant ${granted} to ${role}`);
  url.username = role;
  return { role, url: url.toString() };
}

/** The event trigger a superuser's migrate makes (sql/60_access.sql) that refuses the CRM's DDL whose row-level security would hide rows from the engine's owner. */
export const ROW_SECURITY_GUARD = 'bpd_webhooks_crm_row_security';

/** That event trigger off until the test's end: an engine migrated by an owner that is no superuser, which cannot make one. */
export async function withoutRowSecurityGuard(t: { teardown: (fn: () => Promise<void>) => void }, pool: pg.Pool): Promise<void> {
  await pool.query(`alter event trigger ${ROW_SECURITY_GUARD} disable`);
  t.teardown(async () => { await pool.query(`alter event trigger ${ROW_SECURITY_GUARD} enable`); });
}

/**
 * Connections of `login` (no superuser) refused as when the CRM's own apps hold every
 * one the server takes (its max_connections): SQLSTATE 53300, the login's connection
 * limit at 0 (the server's own count, a database's limit, would count every session of
 * the test's, whose idle ones come and go), until `letGo()` lifts it, as an app that
 * ends its connections does; lifted at the test's end too.
 */
export async function connectionsTaken(
  t: { teardown: (fn: () => Promise<void>) => void },
  pool: pg.Pool,
  login: string,
): Promise<{ letGo: () => Promise<void> }> {
  const limit = async (n: number) => {
    const { rows: [{ alter }] } = await pool.query<{ alter: string }>(
      `select format('alter role %I connection limit %s', $1::text, $2::int) as alter`, [login, n]);
    await pool.query(alter);
  };
  await limit(0);
  t.teardown(() => limit(-1));
  return { letGo: () => limit(-1) };
}
