// The relay keeps its database connections open while it is idle. A connection opened
// anew starts cold: its first claim compiles the relay's functions and plans their
// statements (about 20 ms of Postgres time a connection), so with the relay's timers
// set a minute apart, a company whose changes come one a minute would have paid that,
// and a new connection, on every one.
import test from 'ava';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

// pg's pool closes a connection idle this long, unless told otherwise
const PG_DEFAULT_IDLE_TIMEOUT_MS = 10_000;

test('connections idle longer than pg closes them by default stay open, and the next change finds them open', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  // timers a minute apart, as an operator may set them: at the defaults the relay's
  // own timers (a poll a second, a backfill step every 250 ms) use its connections
  // often enough that none stays idle for 10 s
  const minute = '60000';
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: minute, RELAY_RESCUE_INTERVAL_MS: minute, RELAY_BACKFILL_INTERVAL_MS: minute });
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
  const afterQuiet = await relayBackends();
  t.deepEqual(before.filter((pid) => !afterQuiet.includes(pid)), [], 'every connection of the relay is still open');

  await f.contact(company.id, { first_name: 'After the quiet' });
  await receiver.waitFor(2, { path: '/hook' });
  await waitForFinalDeliveries(database.pool, [webhook.id], 2);
  const after = await relayBackends();
  t.deepEqual(afterQuiet.filter((pid) => !after.includes(pid)), [], 'the change after the quiet went through them: none was closed');
});
