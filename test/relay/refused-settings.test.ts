// A typo in an engine setting stops nothing (sql/02_settings.sql), so the relay says
// it when it starts: one warning per refused setting, with what holds instead.
import test from 'ava';
import { once } from 'node:events';
import { lines } from '../helpers/lines.ts';
import { relayScene, spawnRelay } from '../helpers/relay.ts';

test('a relay starting in a database with a refused setting warns of it, and delivers', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await database.pool.query(`alter database ${database.name} set webhooks.max_in_flight = 'thirty-two'`);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, replies: [{ status: 204 }] });

  const relay = spawnRelay(database.url, { RELAY_ID: 'relay-settings', RELAY_LOG_LEVEL: 'warn' });
  t.teardown(() => relay.kill('SIGKILL'));
  const out = lines(relay.stdout!);
  const [warning] = await out.next(/"msg":"setting webhooks\.max_in_flight = 'thirty-two' is not used[^"]*"/);
  t.like(JSON.parse(out.seen.find((line) => line.includes(warning))!), {
    level: 40,
    setting: 'webhooks.max_in_flight',
    setTo: 'thirty-two',
    inForce: '32',
    msg: "setting webhooks.max_in_flight = 'thirty-two' is not used: not a whole number: the default holds",
  });

  await f.contact(company.id);
  await receiver.waitFor(1, { path: '/hook' });
  t.is(out.seen.filter((line) => line.includes('is not used')).length, 1, 'said once');
  relay.kill('SIGTERM');
  await once(relay, 'exit');
});
