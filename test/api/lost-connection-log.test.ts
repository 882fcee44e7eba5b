// An idle connection of the API's pool that is lost (the server ends it: a restart, a
// failover, a DBA's pg_terminate_backend; or its network path closes) is logged as one
// short line: what happened, the error's class and its SQLSTATE. The error
// node-postgres gives carries the connection's client with it, and logged whole, each
// such line was some kilobytes of the client's state; then its stack, node-postgres's
// own frames, which say nothing of where (no caller waits on an idle connection).
import test from 'ava';
import { AUTHENTICATOR_ROLE, authenticatorUrl } from '../../api/authenticator.ts';
import { startApi } from '../../api/server.ts';
import { startTestApi } from '../helpers/api.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { logLines } from '../helpers/lines.ts';
import { freezableProxy } from '../helpers/proxy.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);

/** At most this long: the line's own fields, the message and a SQLSTATE, with room for a long host name. */
const SHORT_LINE = 300;

const warm = () => until('the API has its warm connections', async () => (await db().pool.query(
  'select 1 from pg_stat_activity where datname = current_database() and usename = $1', [AUTHENTICATOR_ROLE])).rowCount! > 0);

async function lostLine(lines: string[]): Promise<string> {
  await until('the lost connection is logged', async () => lines.some((line) => line.includes('idle database connection lost')));
  return lines.find((l) => l.includes('idle database connection lost'))!;
}

// (serial: the first ends every authenticator connection of the database, which are
// the other's warm connections too when both run at once)
test.serial('an idle connection the server drops is logged as one short line with its SQLSTATE', async (t) => {
  const { lines, log } = logLines();
  const api = await startTestApi(db().url, { log });
  t.teardown(() => api.stop());
  // the pool keeps its warm connections open: end them from the server's side
  await warm();
  await db().pool.query(
    'select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and usename = $1', [AUTHENTICATOR_ROLE]);
  const line = await lostLine(lines);
  const entry = JSON.parse(line);
  t.is(entry.level, 40);
  t.like(entry.err, { type: 'DatabaseError', code: '57P01', message: 'terminating connection due to administrator command' });
  t.true(line.length <= SHORT_LINE, `${line.length} characters: ${line}`);
});

test.serial('an idle connection whose network path closes is logged as one short line too', async (t) => {
  const { lines, log } = logLines();
  const proxy = await freezableProxy(new URL(await authenticatorUrl(db().url, 'authenticator-for-tests')));
  t.teardown(() => proxy.close());
  const api = await startApi({ databaseUrl: proxy.url, jwtSecret: 'a'.repeat(43), port: 0, poolSize: 2, reportCountsEveryMs: 0, log });
  t.teardown(() => api.stop());
  await warm();
  await proxy.close();
  const line = await lostLine(lines);
  const entry = JSON.parse(line);
  t.like(entry.err, { type: 'Error', message: 'Connection terminated unexpectedly' });
  t.true(line.length <= SHORT_LINE, `${line.length} characters: ${line}`);
});
