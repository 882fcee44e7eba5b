// A connection of the engine's pools (the relay's, the API's: both made of
// EngineClient) that the server ends while it is checked out and between statements
// (the API holds one across a request's transaction; PostGraphile takes it with
// pool.connect()). node-postgres then raises the loss as an 'error' event on the
// client, and the pool listens only to the clients it holds idle: with nobody
// listening, the event was an uncaught exception that brought the whole process
// down (seen in a test run, test/relay/poison.test.ts, where a loss came in the same
// packet as a new connection's ready message, before the pool's listener was on).
import test from 'ava';
import { relayPool } from '../../relay/database.ts';
import { relayScene, rememberedLog } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

test('a connection ended by the server while checked out between statements takes nothing down: its next query is refused, and the pool replaces it', async (t) => {
  const { database } = await relayScene(t);
  const pool = relayPool({ databaseUrl: database.url, role: null, log: rememberedLog().log, queryTimeoutMs: 10_000, max: 1 });
  t.teardown(() => pool.end());

  const client = await pool.connect();
  const { rows: [{ pid }] } = await client.query('select pg_backend_pid() as pid');
  const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
  await database.pool.query('select pg_terminate_backend($1)', [pid]);
  await ended;
  await until('the server has let the connection go', async () =>
    (await database.pool.query('select 1 from pg_stat_activity where pid = $1', [pid])).rowCount === 0);

  const refused = await t.throwsAsync(client.query('select 1'));
  t.regex(refused!.message, /not queryable|Connection terminated/);
  client.release(refused);

  // the pool (of one connection) makes another
  const { rows: [again] } = await pool.query('select pg_backend_pid() as pid');
  t.not(again.pid, pid);
  t.is(pool.totalCount, 1);
});
