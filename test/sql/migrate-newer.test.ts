// A checkout older than the database: `npm run migrate` (and `npm start`, which
// migrates first) of code that lacks a migration the database has recorded must not
// re-apply its older sql/ over the newer engine: a host restarted on the old version
// mid-rollout would otherwise undo the new one under every newer relay and API.
import test from 'ava';
import { migrate } from '../../tools/migrate.ts';
import { useTestDatabase } from '../helpers/db.ts';

const db = useTestDatabase(test);

test('a migrate of older code than the database refuses, naming what it lacks, and leaves the engine as it was', async (t) => {
  await db().pool.query(`insert into webhooks_private.migrations (name, run_on) values ('9999_newer', now())`);
  // the newer engine's version of a function (here: a different floor)
  await db().pool.query(`create or replace function webhooks_private.payload_bytes_floor() returns integer
                         language sql immutable as $$ select 131072 $$`);
  await t.throwsAsync(migrate(db().url), { message: /9999_newer/ });
  const { rows: [floor] } = await db().pool.query('select webhooks_private.payload_bytes_floor() as n');
  t.is(floor.n, 131072);
});
