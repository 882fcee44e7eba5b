import test from 'ava';
import { useTestDatabase } from './helpers/db.ts';
const db = useTestDatabase(test);
test('template has the schema', async (t) => {
  const { rows } = await db().pool.query("select count(*)::int as n from pg_trigger where tgname like '\\_%' and not tgisinternal");
  t.true(rows[0].n >= 6);
});
