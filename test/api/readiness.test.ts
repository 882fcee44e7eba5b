// /readyz's reason when the database does not answer (ops/operations.ts), without a
// database: the API serves /readyz on the port of its page and GraphQL, so the reason
// says what kind of failure it is, never the driver's words, which name the
// database's host, address, port or role.
import test from 'ava';
import { readiness } from '../../ops/operations.ts';

const failing = (error: Error) => ({ query: () => Promise.reject(error) }) as unknown as Parameters<typeof readiness>[0];

test('a database that does not answer: its error code, not its host, address, port or role', async (t) => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:5432'), { code: 'ECONNREFUSED' });
  t.deepEqual(await readiness(failing(refused)), { ready: false, reason: 'database: not answering (ECONNREFUSED)' });
  const unknownHost = Object.assign(new Error('getaddrinfo ENOTFOUND db.internal.example'), { code: 'ENOTFOUND' });
  t.deepEqual(await readiness(failing(unknownHost)), { ready: false, reason: 'database: not answering (ENOTFOUND)' });
  const refusedLogin = Object.assign(new Error('password authentication failed for user "bpd_api_login"'), { code: '28P01' });
  t.deepEqual(await readiness(failing(refusedLogin)), { ready: false, reason: 'database: not answering (SQLSTATE 28P01)' });
  t.deepEqual(await readiness(failing(new Error('Connection terminated unexpectedly'))), { ready: false, reason: 'database: not answering' });
});
