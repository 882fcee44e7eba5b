// The statements of one database that took the most time, from pg_stat_statements
// (loaded with --profile); read just before the database is dropped.
import pg from 'pg';

export async function topStatements(databaseUrl: string, limit = 10): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query(
      `select s.calls, round(s.total_exec_time::numeric, 0) as total_ms,
              round(s.mean_exec_time::numeric, 3) as mean_ms, round(s.max_exec_time::numeric, 1) as max_ms,
              round((s.total_plan_time / greatest(s.calls, 1))::numeric, 3) as plan_ms, s.plans, s.rows,
              round(s.shared_blks_hit::numeric / greatest(s.calls, 1), 1) as buffers_per_call,
              regexp_replace(left(s.query, 140), '\\s+', ' ', 'g') as query
       from pg_stat_statements s
       where s.dbid = (select oid from pg_database where datname = current_database())
       order by s.total_exec_time desc limit $1`,
      [limit],
    );
    const line = (cells: unknown[]) => `| ${cells.join(' | ')} |`;
    return [
      line(['calls', 'total ms', 'mean ms', 'max ms', 'plan ms/call', 'plans', 'rows', 'buffers/call', 'query']),
      line(['---', '---', '---', '---', '---', '---', '---', '---', '---']),
      ...rows.map((r) => line([r.calls, r.total_ms, r.mean_ms, r.max_ms, r.plan_ms, r.plans, r.rows, r.buffers_per_call, `\`${String(r.query).replaceAll('|', '\\|')}\``])),
    ].join('\n');
  } finally {
    await client.end();
  }
}
