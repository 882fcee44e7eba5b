// Query plans as EXPLAIN (ANALYZE, FORMAT JSON) gives them, and what their scans read.
import type { ExecutionContext } from 'ava';
import type pg from 'pg';
import { API_PLANNER_SETTINGS } from '../../api/preset.ts';

export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  'Rows Removed by Join Filter'?: number;
  Plans?: PlanNode[];
}

/** The table a partition belongs to, by its name (delivery_history_p20261206 → delivery_history). */
const tableOf = (relation: string | undefined) => relation?.replace(/_(p\d{8}(_\d{8})?|from_\d{8})$/, '');

/**
 * Rows each table's scans produced or filtered away, over the whole plan. EXPLAIN gives
 * a scan's rows per loop, rounded: a scan run twice over 161 rows says 81 a loop, so a
 * count here may be over by up to half a row a loop (roundingSlack, below).
 */
export function rowsRead(node: PlanNode, into: Map<string, number> = new Map()): Map<string, number> {
  const table = tableOf(node['Relation Name']);
  if (table) {
    const loops = node['Actual Loops'] ?? 1;
    const read = ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)
      + (node['Rows Removed by Index Recheck'] ?? 0)) * loops;
    into.set(table, (into.get(table) ?? 0) + read);
  }
  for (const child of node.Plans ?? []) rowsRead(child, into);
  return into;
}

/** How far rowsRead may be over for each table: half a row for each loop of a scan run more than once. */
export function roundingSlack(node: PlanNode, into: Map<string, number> = new Map()): Map<string, number> {
  const table = tableOf(node['Relation Name']);
  const loops = node['Actual Loops'] ?? 1;
  if (table && loops > 1) into.set(table, (into.get(table) ?? 0) + Math.floor(loops / 2));
  for (const child of node.Plans ?? []) roundingSlack(child, into);
  return into;
}

/** The partitions of each table that the plan's scans read (ran at least once), by table. */
export function partitionsRead(node: PlanNode, into: Map<string, Set<string>> = new Map()): Map<string, Set<string>> {
  const relation = node['Relation Name'];
  const table = tableOf(relation);
  if (relation && table && (node['Actual Loops'] ?? 0) > 0) {
    into.set(table, (into.get(table) ?? new Set()).add(relation));
  }
  for (const child of node.Plans ?? []) partitionsRead(child, into);
  return into;
}

type Queryable = { query(text: string, values?: unknown[]): Promise<{ rows: any[] }> };

/**
 * The rows of a table this transaction has read so far: returned by its scans and
 * fetched through its indexes; with `indexes`, the entries its indexes returned too (an
 * index read whole finds rows without reading them). A statement's reads are the
 * difference across it.
 */
export async function tableReads(db: Queryable, table: string, options: { indexes?: boolean } = {}): Promise<number> {
  const { rows: [{ n }] } = await db.query(
    `select (pg_stat_get_xact_tuples_returned($1::regclass) + pg_stat_get_xact_tuples_fetched($1::regclass)
             + case when $2 then coalesce((select sum(pg_stat_get_xact_tuples_returned(i.indexrelid)) from pg_index i
                                           where i.indrelid = $1::regclass), 0) else 0 end)::int as n`,
    [table, options.indexes ?? false]);
  return n as number;
}

/**
 * What one statement made of a table's indexes (its partitions' too): the index
 * entries their scans returned, or how many scans there were, as this session's
 * statistics count them. A session's counts add up across its transactions until
 * they are flushed, so it is the difference across the statement.
 */
export async function indexUse<T = unknown>(
  db: Queryable, table: string, statement: () => Promise<T>, what: 'entries' | 'scans' = 'entries',
): Promise<{ result: T; used: number }> {
  const counted = async () => (await db.query(
    `select coalesce(sum(case when $2 = 'scans' then pg_stat_get_xact_numscans(i.indexrelid)
                              else pg_stat_get_xact_tuples_returned(i.indexrelid) end), 0)::int as n
     from pg_index i
     where i.indrelid = $1::regclass
        or i.indrelid in (select p.inhrelid from pg_inherits p where p.inhparent = $1::regclass)`,
    [table, what])).rows[0].n as number;
  const before = await counted();
  const result = await statement();
  return { result, used: (await counted()) - before };
}

/**
 * The partitions of a partitioned table that one statement scanned, whole or by an
 * index, as this session's statistics count them: for statements run inside a
 * function, whose plans EXPLAIN does not show. Ask it on one connection, inside a
 * transaction (the counts are the transaction's).
 */
export async function partitionsScanned<T>(
  db: Queryable, table: string, statement: () => Promise<T>,
): Promise<{ result: T; scanned: string[] }> {
  const scans = async () => new Map((await db.query(
    `select c.relname::text as name,
            pg_stat_get_xact_numscans(c.oid)
              + coalesce((select sum(pg_stat_get_xact_numscans(i.indexrelid)) from pg_index i where i.indrelid = c.oid), 0) as n
     from pg_inherits p join pg_class c on c.oid = p.inhrelid
     where p.inhparent = $1::regclass`, [table])).rows.map((row) => [row.name as string, Number(row.n)]));
  const before = await scans();
  const result = await statement();
  const after = await scans();
  return { result, scanned: [...after].filter(([name, n]) => n > (before.get(name) ?? 0)).map(([name]) => name).sort() };
}

/**
 * A connection of a company's viewer, in a transaction rolled back at the end, with
 * the API's planner settings; the statements given prepared on it, as the API keeps
 * them (its settings make it plan each once, not anew for each of a connection's
 * first five requests, with the statement's arguments: with a row or two a day
 * expected, sorting all of a webhook's rows and merging the days cost about the same
 * to the planner, which took either, and planning each request cost 30 to 50 ms at
 * bench:api's size).
 */
export async function asTheApi(t: ExecutionContext, pool: pg.Pool, companyId: string,
  statements: Record<string, string>): Promise<pg.PoolClient> {
  const client = await pool.connect();
  t.teardown(async () => {
    await client.query('rollback');
    client.release();
  });
  await client.query('begin');
  await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`,
    [companyId]);
  for (const [name, value] of Object.entries(API_PLANNER_SETTINGS)) {
    await client.query('select set_config($1, $2, true)', [name, value]);
  }
  for (const [name, statement] of Object.entries(statements)) await client.query(`prepare ${name} as ${statement}`);
  return client;
}
