// The relay keeps its database connections open while it is idle. A connection opened
// anew starts cold: its first claim compiles the relay's functions and plans their
// statements (about 20 ms of Postgres time a connection), so a company whose changes
// come one every minute would have paid that, and a new connection, on every one.
import test from 'ava';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

// pg's pool closes a connection idle this long, unless told otherwise
const PG_DEFAULT_IDLE_TIMEOUT_MS = 10_000;

test('connections idle longer than pg closes them by default stay open, and the next change goes through them', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  const relayBackends = async () => {
    const { rows } = await database.pool.query(
      `select pid from pg_stat_activity where datname = current_database() and application_name = 'bpd-webhooks-relay' order by pid`,
    );
    return rows.map((r) => r.pid as number);
  };

  await f.contact(company.id, { first_name: 'Before the quiet' });
  await receiver.waitFor(1, { path: '/hook' });
  await waitForFinalDeliveries(database.pool, [webhook.id], 1);
  const before = await relayBackends();
  t.true(before.length > 0);

  // nothing happens for longer than pg's idle timeout: there is no event to wait for
  await new Promise((resolve) => setTimeout(resolve, PG_DEFAULT_IDLE_TIMEOUT_MS + 1_500));
  t.deepEqual(await relayBackends(), before, 'every connection of the relay is still open');

  await f.contact(company.id, { first_name: 'After the quiet' });
  await receiver.waitFor(2, { path: '/hook' });
  await waitForFinalDeliveries(database.pool, [webhook.id], 2);
  const after = await relayBackends();
  t.deepEqual(after.filter((pid) => !before.includes(pid)), [], 'no connection was opened for the change after the quiet');
});
