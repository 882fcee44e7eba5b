// The relay's fatal line at start, for a database it reached but cannot work in: it
// says what the error is, and advises a migrate or a GRANT only where one mends it
// (a role that does not exist yet, a login not granted it). Before, every error that
// was not a connection error got that advice: a database named wrong, out of memory
// (53200), a full disk (53100), an I/O error (58030), a standby.
import test from 'ava';
import { once } from 'node:events';
import { lines } from '../helpers/lines.ts';
import { relayScene, spawnRelay } from '../helpers/relay.ts';
import { databaseRefusal } from '../../relay/database.ts';

const ADVICE = /npm run migrate|GRANT/;

function refusal(code: string, message: string): string {
  return databaseRefusal(Object.assign(new Error(message), { code }), 'bpd_webhooks_relay');
}

test('the advice to migrate or GRANT comes only with errors it mends, and each other error is named for what it is', (t) => {
  t.regex(refusal('42501', 'permission denied to set role "bpd_webhooks_relay"'), /GRANT bpd_webhooks_relay TO the user of DATABASE_URL/);
  t.regex(refusal('22023', 'invalid value for parameter "role": "bpd_webhooks_relay"'), /npm run migrate/);
  for (const [code, message, named] of [
    ['53200', 'out of memory', /out of memory.*53200.*the server is short of a resource/],
    ['53100', 'could not extend file: No space left on device', /53100.*the server is short of a resource/],
    ['58030', 'could not read block 0 in file "base/1/2": Input/output error', /58030.*an error of the server's system/],
    ['25006', 'cannot execute INSERT in a read-only transaction', /25006.*read-only.*point DATABASE_URL at the primary/],
    ['57014', 'canceling statement due to statement timeout', /57014.*cancelled/],
    ['3D000', 'database "nowhere" does not exist', /3D000.*DATABASE_URL/],
    ['28P01', 'password authentication failed for user "x"', /28P01.*DATABASE_URL/],
  ] as const) {
    const line = refusal(code, message);
    t.true(line.startsWith(`the relay cannot work in this database: ${message}`), line);
    t.regex(line, named, line);
    t.notRegex(line, ADVICE, line);
  }
});

test('a relay given a database that does not exist exits 1 naming it, without advice to migrate or GRANT', async (t) => {
  const { database } = await relayScene(t);
  const url = new URL(database.url);
  url.pathname = '/no_such_database_r2';
  const relay = spawnRelay(url.toString(), { RELAY_ID: 'relay-no-database', RELAY_LOG_LEVEL: 'info' });
  t.teardown(() => relay.kill('SIGKILL'));
  const out = lines(relay.stdout!);
  const [code] = await once(relay, 'exit');
  t.is(code, 1, out.seen.join('\n'));
  const fatal = out.seen.map((line) => JSON.parse(line)).find((line) => line.level === 60);
  t.regex(fatal?.msg ?? '', /database "no_such_database_r2" does not exist.*3D000/, out.seen.join('\n'));
  t.notRegex(fatal?.msg ?? '', ADVICE);
});
