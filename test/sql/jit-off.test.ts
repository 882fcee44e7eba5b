// A function of the engine that turns a planner method off (enable_sort, enable_seqscan,
// …) turns JIT off as well. A method turned off adds 10^10 to the cost of a plan that
// still needs it (every Postgres before 18), past every jit_*_above_cost: on a server
// built with LLVM (Debian's, most packaged ones) such a function compiled its
// statements on every call, about a second each (claim_deliveries against Debian's
// PostgreSQL 15, 2026-12-05). The embedded Postgres of the tests has no JIT, so the rule
// is checked on the catalog; test/relay/session-settings.test.ts checks the sessions.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';

const db = useTestDatabase(test);

test('every engine function that turns a planner method off also sets jit = off', async (t) => {
  const { rows } = await db().pool.query<{ name: string; config: string[] }>(`
    select p.oid::regprocedure::text as name, p.proconfig as config
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname like 'webhooks%'
      and exists (select 1 from unnest(p.proconfig) c where c ~ '^enable_[a-z_]+=off$' and c <> 'enable_partitionwise_join=off')
    order by 1`);
  // the claim, the settle, the release of the unheld, the put-off of held-back
  // deliveries and capture, at least
  t.true(rows.length >= 5, JSON.stringify(rows.map((r) => r.name)));
  t.deepEqual(rows.filter((r) => !r.config.includes('jit=off')).map((r) => r.name), []);
});
