// Every session of the relay and the API starts with the settings the engine's
// statements are written for (relay/database.ts, sessionOptions): READ COMMITTED, and
// no JIT compilation. The claim and the settle turn sorts and sequential scans off,
// which prices their plans at 10^10, past every jit_*_above_cost: on a Postgres built
// with LLVM (Debian's and most packaged ones, unlike the embedded one these tests
// run on) each claim spent about a second compiling itself, and the relay all but
// stopped (a test run against Debian's PostgreSQL 15: 52 tests failed, 2026-12-05).
import test from 'ava';
import pg from 'pg';
import { relayPool, sessionOptions } from '../../relay/database.ts';
import { relayScene } from '../helpers/relay.ts';
import { rememberedLog } from '../helpers/relay.ts';

const SETTINGS = `select current_setting('jit') as jit, current_setting('default_transaction_isolation') as isolation`;

test('the relay\'s sessions and the API\'s start with JIT off and READ COMMITTED, whatever the database says', async (t) => {
  const { database } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set jit = on`);
  await database.pool.query(`alter database ${database.name} set default_transaction_isolation = 'serializable'`);

  const relay = relayPool({ databaseUrl: database.url, role: null, log: rememberedLog().log, queryTimeoutMs: 10_000 });
  t.teardown(() => relay.end());
  t.deepEqual((await relay.query(SETTINGS)).rows, [{ jit: 'off', isolation: 'read committed' }]);

  // the API's pool is made with the same options (api/server.ts)
  const api = new pg.Client({ connectionString: database.url, options: sessionOptions(null) });
  await api.connect();
  t.teardown(() => api.end());
  t.deepEqual((await api.query(SETTINGS)).rows, [{ jit: 'off', isolation: 'read committed' }]);

  // and a session without them gets the database's own
  const plain = new pg.Client({ connectionString: database.url });
  await plain.connect();
  t.teardown(() => plain.end());
  t.deepEqual((await plain.query(SETTINGS)).rows, [{ jit: 'on', isolation: 'serializable' }]);
});
