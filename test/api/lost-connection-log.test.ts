// An idle connection of the API's pool that the server drops (a restart, a failover,
// a DBA's pg_terminate_backend) is logged as one short line: what happened and its
// SQLSTATE. The error node-postgres gives carries the connection's client with it, and
// logged whole, each such line was some kilobytes of the client's state.
import { Writable } from 'node:stream';
import test from 'ava';
import pino from 'pino';
import { AUTHENTICATOR_ROLE } from '../../api/authenticator.ts';
import { startTestApi } from '../helpers/api.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);

test('an idle connection the server drops is logged as one short line with its SQLSTATE', async (t) => {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk, _encoding, done) { lines.push(...String(chunk).split('\n').filter(Boolean)); done(); } });
  const api = await startTestApi(db().url, { log: pino({ name: 'bpd-webhooks-api' }, sink) });
  t.teardown(() => api.stop());
  // the pool keeps its warm connections open: end them from the server's side
  await until('the API has its warm connections', async () => (await db().pool.query(
    'select 1 from pg_stat_activity where datname = current_database() and usename = $1', [AUTHENTICATOR_ROLE])).rowCount! > 0);
  await db().pool.query(
    'select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and usename = $1', [AUTHENTICATOR_ROLE]);
  await until('the lost connection is logged', async () => lines.some((line) => line.includes('idle database connection lost')));
  const line = lines.find((l) => l.includes('idle database connection lost'))!;
  const entry = JSON.parse(line);
  t.is(entry.level, 40);
  t.like(entry.err, { code: '57P01', message: 'terminating connection due to administrator command' });
  t.true(line.length < 1500, `${line.length} characters: ${line.slice(0, 300)}…`);
});
