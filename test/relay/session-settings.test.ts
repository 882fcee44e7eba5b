// Every session of the relay and the API starts with the settings the engine's
// statements are written for (relay/database.ts, sessionOptions): READ COMMITTED, and
// no JIT compilation. The claim and the settle turn sorts and sequential scans off,
// which prices their plans at 10^10, past every jit_*_above_cost: on a Postgres built
// with LLVM (Debian's and most packaged ones, unlike the embedded one these tests
// run on) each claim spent about a second compiling itself, and the relay all but
// stopped (a test run against Debian's PostgreSQL 15: 52 tests failed, 2026-12-05).
import test from 'ava';
import pg from 'pg';
import { holdRelayId, relayPool, sessionOptions } from '../../relay/database.ts';
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

const KEEPALIVES = `select current_setting('tcp_keepalives_idle') as idle, current_setting('tcp_keepalives_interval') as interval,
                          current_setting('tcp_keepalives_count') as count`;

test('the relay\'s sessions, the one holding its RELAY_ID among them, have the server probe a silent peer after 30 s, every 10 s, 3 times', async (t) => {
  const { database } = await relayScene(t);
  // (the server's default: the system's, two hours of silence before a dead host's session, and its locks, end)
  await database.pool.query(`alter database ${database.name} set tcp_keepalives_idle = 7200`);
  const expected = [{ idle: '30', interval: '10', count: '3' }];
  const log = rememberedLog().log;
  const relay = relayPool({ databaseUrl: database.url, role: null, log, queryTimeoutMs: 10_000 });
  t.teardown(() => relay.end());
  t.deepEqual((await relay.query(KEEPALIVES)).rows, expected);
  const holder = await holdRelayId({ databaseUrl: database.url, role: null, log, queryTimeoutMs: 10_000, relayId: 'keepalives' });
  t.teardown(() => holder.end());
  t.deepEqual((await holder.query(KEEPALIVES)).rows, expected);
  // (over TCP: over a Unix socket the server shows 0, there being no peer to lose)
  t.is((await holder.query('select inet_server_addr() is not null as tcp')).rows[0].tcp, true);
});
