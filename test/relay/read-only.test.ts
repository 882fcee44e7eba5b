// A DBA's default_transaction_read_only = on (for the database, or for the user the
// relay connects as), or a standby in DATABASE_URL: every claim fails. The relay says
// so at start and exits, rather than run a loop of failing claims.
import test from 'ava';
import { once } from 'node:events';
import { lines } from '../helpers/lines.ts';
import { relayScene, spawnRelay } from '../helpers/relay.ts';

test('a relay started in a read-only database exits 1 at once, naming the setting, and claims nothing', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204 }] });
  const contact = await f.contact(company.id);
  await database.pool.query(`alter database ${database.name} set default_transaction_read_only = on`);

  const relay = spawnRelay(database.url, { RELAY_ID: 'relay-read-only', RELAY_LOG_LEVEL: 'info' });
  t.teardown(() => relay.kill('SIGKILL'));
  const out = lines(relay.stdout!);
  // (as it was: a warning of a failed claim, 25006, every poll, and no exit)
  const [code] = await Promise.race([once(relay, 'exit'), out.next(/"code":"25006"/).then(() => ['claiming in a loop'])]);
  t.is(code, 1, out.seen.join('\n'));
  const fatal = out.seen.map((line) => JSON.parse(line)).find((line) => line.level === 60);
  t.regex(fatal?.msg ?? '', /read-only.*default_transaction_read_only/, out.seen.join('\n'));
  t.false(out.seen.some((line) => line.includes('"code":"25006"')), 'no claim was tried');

  const { rows } = await database.pool.query(
    'select state, attempts from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, contact.id]);
  t.deepEqual(rows, [{ state: 'pending', attempts: 0 }]);
  t.is(receiver.requests.length, 0);
});

test('a relay whose login has default_transaction_read_only = on (as a standby reads) exits 1 naming the setting, with no advice to migrate or GRANT', async (t) => {
  const { database, f, company } = await relayScene(t);
  await f.contact(company.id);
  await database.pool.query(`alter role current_user in database ${database.name} set default_transaction_read_only = on`);
  // (no reset: the pool's next connections are read-only too, and the setting goes with the database)

  const relay = spawnRelay(database.url, { RELAY_ID: 'relay-read-only-login', RELAY_LOG_LEVEL: 'info' });
  t.teardown(() => relay.kill('SIGKILL'));
  const out = lines(relay.stdout!);
  const [code] = await Promise.race([once(relay, 'exit'), out.next(/"code":"25006"/).then(() => ['claiming in a loop'])]);
  t.is(code, 1, out.seen.join('\n'));
  const fatal = out.seen.map((line) => JSON.parse(line)).find((line) => line.level === 60);
  t.regex(fatal?.msg ?? '', /read-only.*point DATABASE_URL at the primary/, out.seen.join('\n'));
  t.notRegex(fatal?.msg ?? '', /npm run migrate|GRANT/);
});
