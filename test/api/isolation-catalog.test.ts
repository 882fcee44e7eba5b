// Each company sealed off from the others, proved from the catalog rather than from a
// list: every function the API's roles may execute and every table and view they may
// read or write, found by asking Postgres, is called and read as company A's admin and
// viewer with company B's ids. Nothing of B may come back, and nothing of B may change.
// A function added later is called without editing this file; one whose arguments it
// cannot make up fails the test until ARGUMENTS says how to call it.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { B_IDS_FROM, bTraces, comparable, moreOfB, snapshotOf, twoCompanies, type TwoCompanies } from '../helpers/two-companies.ts';

// (serial: the first changes B's rows, the second compares them before and after)
const db = useTestDatabase(test);
let scene: Promise<TwoCompanies> | undefined;
/** One scene for the file: B's ids are numbered once. */
const twoCompaniesOnce = () => (scene ??= twoCompanies(db().pool));

const API_ROLES = ['webhook_admin', 'webhook_viewer'] as const;
type ApiRole = typeof API_ROLES[number];

interface Routine {
  name: string;          // schema.name
  signature: string;     // regprocedure
  kind: 'f' | 'p';
  securityDefiner: boolean;
  config: string[] | null;
  returnsVoid: boolean;
  args: Array<{ name: string; type: string; hasDefault: boolean }>;
}

/** Every function and procedure, of every schema the API's roles may use, that either role may execute. */
async function routinesOfTheApiRoles(pool: pg.Pool): Promise<Routine[]> {
  const { rows } = await pool.query(
    `select n.nspname || '.' || p.proname as name, p.oid::regprocedure::text as signature, p.prokind as kind,
            p.prosecdef as "securityDefiner", p.proconfig as config, p.prorettype = 'void'::regtype as "returnsVoid",
            coalesce((select jsonb_agg(jsonb_build_object('name', p.proargnames[i], 'type', format_type(p.proargtypes[i - 1], null),
                                                        'hasDefault', i > p.pronargs - p.pronargdefaults) order by i)
                      from generate_series(1, p.pronargs) i), '[]') as args
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname not in ('pg_catalog', 'information_schema') and p.prokind in ('f', 'p')
       and exists (select 1 from unnest($1::text[]) r(role)
                   where has_schema_privilege(r.role, n.oid, 'usage') and has_function_privilege(r.role, p.oid, 'execute'))
     order by 2`, [API_ROLES]);
  return rows;
}

/** The values tried for an argument of B's kind: every id of B that it may name. */
function bIdsOf(w: TwoCompanies): Record<string, string[]> {
  return {
    webhook: [w.bHook.id, w.bDisabled.id, w.bGone.id],
    delivery: [w.bDelivery.id],
    attempt: [w.bAttempt],
    backfill: [w.bBackfill],
    user: [w.bUser.id],
    status: [w.bStatus.id],
    company: [w.b.id],
    audit: [w.bAudit],
    contact: [w.bContact.id],
  };
}

/** Which of B's ids a bigint argument names, by its name; an id of no named kind is tried with every one. */
function kindsOf(argument: string): string[] | undefined {
  const named = Object.entries({ webhook: /webhook/, delivery: /delivery/, attempt: /attempt/, backfill: /backfill/, user: /user/,
    status: /status/, company: /company/, contact: /contact/ }).filter(([, pattern]) => pattern.test(argument)).map(([kind]) => kind);
  return named.length > 0 ? named : undefined;
}

/**
 * Arguments a default does not fit, by routine.argument: SQL text, $1 for the
 * list of B's ids where it takes them. Kept short: every other argument is made up
 * from its type below, and a type not known there fails the test.
 */
const ARGUMENTS: Record<string, string> = {
  // the list and row names a history page's cursor is checked against
  'webhooks_private.history_after.p_list': `'history'`,
  'webhooks_private.history_after.p_row': `'delivery'`,
  'webhooks_private.refuse_half_row.p_list': `'history'`,
  'webhooks_private.refuse_half_row.p_row': `'delivery'`,
  'webhooks_private.known_delivery_state.p_state': `'failed'`,
  'webhooks_private.raise_not_found.p_kind': `'webhook'`,
};

/** SQL text for each value of an argument, by its type: more than one where it may name several of B's ids. */
function valuesOf(w: TwoCompanies, routine: Routine, argument: Routine['args'][number], rows: Record<string, string>): string[] {
  const ids = bIdsOf(w);
  const explicit = ARGUMENTS[`${routine.name}.${argument.name}`];
  if (explicit) return [explicit];
  const literal = (text: string, type: string) => `'${text.replaceAll("'", "''")}'::${type}`;
  switch (argument.type) {
    case 'bigint': return (kindsOf(argument.name) ?? Object.keys(ids)).flatMap((kind) => ids[kind]);
    case 'bigint[]': return [literal(`{${Object.values(ids).flat().join(',')}}`, 'bigint[]')];
    case 'text': return [`'Zeb'`]; // the beginning of B's names: a search that looks beyond A finds them
    case 'text[]': return [`'{email}'::text[]`];
    case 'integer': return ['1'];
    case 'boolean': return ['false'];
    case 'jsonb': return [`'{}'::jsonb`];
    case 'json': return [`'{}'::json`];
    case 'bytea': return [`'\\x00'::bytea`];
    case 'interval': return [`'1 minute'::interval`];
    case 'date': return ['current_date'];
    case 'timestamp with time zone': return [/until/.test(argument.name) ? `now() + interval '1 day'` : `'2000-01-01T00:00:00Z'::timestamptz`];
    case 'timestamp with time zone[]': return [literal(`{"${w.bAttemptCreatedAt.toISOString()}"}`, 'timestamptz[]')];
    case 'webhooks.action[]': return [`'{contact.created}'::webhooks.action[]`];
    // B's own rows, whole, as an argument: what a computed column is given
    case 'webhooks.webhooks': case 'webhooks.deliveries': case 'webhooks.backfills': case 'webhooks.audit_log':
    case 'webhooks.delivery_attempts':
      return [literal(rows[argument.type], argument.type)];
    default:
      throw new Error(`${routine.signature}: no value for ${argument.name} ${argument.type}: add it to ARGUMENTS`);
  }
}

/** Every call of the routine: each argument given each of its values (its default kept where it has one and no id to take). */
function callsOf(w: TwoCompanies, routine: Routine, rows: Record<string, string>): string[] {
  let calls: string[][] = [[]];
  for (const argument of routine.args) {
    if (argument.hasDefault && !/bigint/.test(argument.type) && !ARGUMENTS[`${routine.name}.${argument.name}`]) continue;
    const values = valuesOf(w, routine, argument, rows);
    calls = calls.flatMap((given) => values.map((value) => [...given, `${argument.name} => ${value}`]));
  }
  return calls.map((given) => {
    const call = `${routine.name}(${given.join(', ')})`;
    if (routine.kind === 'p') return `call ${call}`;
    return routine.returnsVoid ? `select ${call}::text as answer`
      : `select coalesce(jsonb_agg(to_jsonb(r)), '[]')::text as answer from ${call} r`;
  });
}

/** B's rows, whole, as their owner reads them: the text of a row argument. */
async function rowsOfB(pool: pg.Pool, w: TwoCompanies): Promise<Record<string, string>> {
  const one = async (sql: string, id: string) => (await pool.query(sql, [id])).rows[0].row as string;
  return {
    'webhooks.webhooks': await one('select w::text as row from webhooks.webhooks w where id = $1', w.bHook.id),
    'webhooks.deliveries': await one('select d::text as row from webhooks.deliveries d where id = $1', w.bDelivery.id),
    'webhooks.backfills': await one('select b::text as row from webhooks.backfills b where id = $1', w.bBackfill),
    'webhooks.audit_log': await one('select a::text as row from webhooks.audit_log a where id = $1', w.bAudit),
    'webhooks.delivery_attempts': await one('select a::text as row from webhooks.delivery_attempts a where id = $1', w.bAttempt),
  };
}

/** What of B an answer names that the call did not give it: "webhook 7 not found" names what was asked, not what B has. */
function tracesBeyond(sql: string, said: string, secrets: string[]): string[] {
  const given = new Set(bTraces(sql, []).map((trace) => trace.toLowerCase()));
  return bTraces(said, secrets).filter((trace) => !given.has(trace.toLowerCase()));
}

interface Outcome { answer?: string; error?: string }

/**
 * One statement as the API runs a request (SET LOCAL role and the claims of A's
 * token, in a transaction), then B's rows read as the owner in the same transaction,
 * before it is rolled back: a change to B shows there.
 */
async function asCompany(pool: pg.Pool, role: ApiRole, companyId: string, bId: string, sql: string, params: unknown[] = []):
  Promise<Outcome & { bAfter: Record<string, unknown> }> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('role', $1, true), set_config('jwt.claims.role', $1, true),
                               set_config('jwt.claims.company_id', $2, true)`, [role, companyId]);
    await client.query('savepoint call');
    let outcome: Outcome;
    try {
      const result = await client.query(sql, params);
      outcome = { answer: JSON.stringify(result.rows) + String(result.rowCount) };
    } catch (error) {
      const e = error as pg.DatabaseError;
      outcome = { error: `${e.code} ${e.constraint ?? ''} ${e.message} ${e.detail ?? ''} ${e.hint ?? ''}` };
      await client.query('rollback to savepoint call');
    }
    await client.query('reset role');
    const bAfter = await snapshotOf(client, bId);
    return { ...outcome, bAfter };
  } finally {
    await client.query('rollback').catch(() => {});
    client.release();
  }
}

test.serial('every function the API\'s roles may execute, called as company A with company B\'s ids, answers nothing of B and changes nothing of B', async (t) => {
  const pool = db().pool;
  const w = await twoCompaniesOnce();
  const routines = await routinesOfTheApiRoles(pool);
  const rows = await rowsOfB(pool, w);
  let before = await snapshotOf(pool, w.b.id);
  const calls = routines.flatMap((routine) => callsOf(w, routine, rows).map((sql) => ({ routine, sql })));

  const answers = new Map<string, string>();
  const leaks: string[] = [];
  const round = async (first: boolean) => {
    for (const { routine, sql } of calls) {
      for (const role of API_ROLES) {
        const outcome = await asCompany(pool, role, w.a.id, w.b.id, sql);
        const said = outcome.answer ?? outcome.error!;
        const traces = tracesBeyond(sql, said, w.bSecrets);
        if (traces.length > 0) leaks.push(`${role} ${sql}: answers ${[...new Set(traces)].join(', ')}`);
        if (JSON.stringify(outcome.bAfter) !== JSON.stringify(before)) leaks.push(`${role} ${sql}: changes company B`);
        const key = `${role} ${sql}`;
        if (first) answers.set(key, comparable(said));
        else if (answers.get(key) !== comparable(said)) {
          leaks.push(`${role} ${sql}: answers otherwise when B has more rows: ${answers.get(key)} then ${comparable(said)}`);
        }
      }
    }
  };
  await round(true);
  await moreOfB(pool, w);
  before = await snapshotOf(pool, w.b.id);
  await round(false);

  t.log(`${routines.length} routines (${routines.filter((r) => r.securityDefiner).length} security definer), ${calls.length} calls, each as admin and viewer, twice`);
  t.true(routines.length > 50, 'the catalog is read');
  t.true(routines.some((r) => r.name === 'webhooks_private.deleted_webhooks'), 'webhooks_private is enumerated');
  t.deepEqual(leaks, []);
});

test('every security definer function the API\'s roles may execute pins search_path', async (t) => {
  const routines = await routinesOfTheApiRoles(db().pool);
  const definers = routines.filter((r) => r.securityDefiner);
  t.log(`${definers.length} security definer functions`);
  t.true(definers.length > 5);
  t.deepEqual(definers.filter((r) => !(r.config ?? []).some((setting) => /^search_path=pg_catalog, pg_temp$/.test(setting)))
    .map((r) => r.signature), []);
});

test('every security definer function of the engine pins search_path, whoever may call it', async (t) => {
  const { rows } = await db().pool.query(
    `select p.oid::regprocedure::text as signature
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where p.prosecdef and n.nspname not in ('pg_catalog', 'information_schema')
       and not exists (select 1 from unnest(p.proconfig) s where s = 'search_path=pg_catalog, pg_temp')
     order by 1`);
  const { rows: [{ count }] } = await db().pool.query(
    `select count(*)::int from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where p.prosecdef and n.nspname not in ('pg_catalog', 'information_schema')`);
  t.log(`${count} security definer functions in all`);
  t.true(count > 20);
  t.deepEqual(rows.map((r) => r.signature), []);
});

/** Every table and view, of a schema the API's roles may use, that either may read or write, whole or by column. */
async function relationsOfTheApiRoles(pool: pg.Pool) {
  const { rows } = await pool.query(
    `select c.oid::regclass::text as name, c.relkind as kind,
            array(select a.attname from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                    and has_column_privilege($2, c.oid, a.attnum, 'select') order by a.attnum)::text[] as readable,
            array(select a.attname from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                    and has_column_privilege($3, c.oid, a.attnum, 'update') order by a.attnum)::text[] as updatable,
            array(select a.attname from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                    and has_column_privilege($3, c.oid, a.attnum, 'insert') order by a.attnum)::text[] as insertable,
            has_table_privilege($3, c.oid, 'delete') as deletable
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p', 'v', 'm', 'f') and not c.relispartition
       and n.nspname not in ('pg_catalog', 'information_schema')
       and exists (select 1 from unnest($1::text[]) r(role)
                   where has_schema_privilege(r.role, n.oid, 'usage')
                     and (has_table_privilege(r.role, c.oid, 'select, insert, update, delete')
                          or has_any_column_privilege(r.role, c.oid, 'select, insert, update')))
     order by 1`, [API_ROLES, 'webhook_viewer', 'webhook_admin']);
  return rows as Array<{ name: string; kind: string; readable: string[]; updatable: string[]; insertable: string[]; deletable: boolean }>;
}

test.serial('every table and view the API\'s roles may read or write shows company A nothing of B, and lets it change nothing of B', async (t) => {
  const pool = db().pool;
  const w = await twoCompaniesOnce();
  const relations = await relationsOfTheApiRoles(pool);
  const before = await snapshotOf(pool, w.b.id);
  const problems: string[] = [];
  const check = async (role: ApiRole, sql: string, params: unknown[] = []) => {
    const outcome = await asCompany(pool, role, w.a.id, w.b.id, sql, params);
    const traces = bTraces(outcome.answer ?? outcome.error!, w.bSecrets);
    if (traces.length > 0) problems.push(`${role} ${sql}: answers ${[...new Set(traces)].join(', ')}`);
    if (JSON.stringify(outcome.bAfter) !== JSON.stringify(before)) problems.push(`${role} ${sql}: changes company B`);
    return outcome;
  };
  const quoted = (columns: string[]) => columns.map((c) => `"${c}"`).join(', ');
  for (const relation of relations) {
    for (const role of API_ROLES) {
      if (relation.readable.length > 0) {
        await check(role, `select ${quoted(relation.readable)} from ${relation.name}`);
        await check(role, `select count(*) from ${relation.name}`);
      }
      // each column written as it is, on every row: a row of B it reaches is a change to B
      for (const column of relation.updatable) {
        await check(role, `update ${relation.name} set "${column}" = "${column}" where true returning *`);
      }
      if (relation.deletable) await check(role, `delete from ${relation.name} where true returning *`);
      // one of B's rows written anew, with B's company: refused, never stored
      if (relation.insertable.includes('company_id')) {
        const { rows: [row] } = await pool.query(`select to_jsonb(r) as row from ${relation.name} r where company_id = $1 limit 1`, [w.b.id]);
        const outcome = await check(role, `insert into ${relation.name} (${quoted(relation.insertable)})
          select ${quoted(relation.insertable)} from jsonb_populate_record(null::${relation.name}, $1) returning *`, [row.row]);
        if (!outcome.error) problems.push(`${role} wrote a row of company B into ${relation.name}`);
      }
    }
  }
  t.log(`${relations.length} relations: ${relations.map((r) => r.name).join(', ')}`);
  t.log(`${relations.reduce((sum, r) => sum + r.readable.length, 0)} readable columns, ${relations.reduce((sum, r) => sum + r.updatable.length, 0)} updatable, ${relations.reduce((sum, r) => sum + r.insertable.length, 0)} insertable`);
  t.true(relations.length > 5, 'the catalog is read');
  t.deepEqual(problems, []);
  // (B's ids are where they were meant to be)
  t.true(BigInt(w.bHook.id) >= BigInt(B_IDS_FROM));
});


// (that no routine of the engine's is executable by PUBLIC: test/sql/function-privileges.test.ts)
test('the DBA\'s refill of the CRM\'s name words is not the API login\'s', async (t) => {
  t.false((await db().pool.query(`select has_function_privilege('webhook_authenticator', 'webhooks_ops.refill_crm_name_words()', 'execute') as may`)).rows[0].may);
});
