// A starting relay claims first: the rescuer, the backfiller and the check of the
// settings begin a little later, so that a backlog's first claim has the connection the
// check of the database opened, and the CPU (each of the others compiles and plans its
// functions on a connection of its own).
import test from 'ava';
import type pg from 'pg';
import { relayScene, testRelay } from '../helpers/relay.ts';

/** What each statement of the relay's pool is, in the order they were sent. */
function recordStatements(pool: pg.Pool): string[] {
  const sent: string[] = [];
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  const kinds: Array<[RegExp, string]> = [
    [/^bpd_webhooks_claim/, 'claim'],
    [/rescue_expired_leases/, 'rescue'],
    [/backfill_step/, 'backfill'],
    [/refused_settings/, 'settings'],
    [/^select 1$/, 'ping'],
  ];
  (pool as unknown as { query: typeof query }).query = (...args: unknown[]) => {
    const first = args[0] as string | { name?: string; text?: string };
    const text = typeof first === 'string' ? first : (first.name ?? first.text ?? '');
    sent.push(kinds.find(([pattern]) => pattern.test(text))?.[1] ?? text);
    return query(...args);
  };
  return sent;
}

test('the first statement after the check of the database is the claim; the rescuer, the backfiller and the settings check follow', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  const sent = recordStatements(relay.pool);
  await relay.start();
  await receiver.waitFor(1, { path: '/hook' });
  // each of them runs soon after (the test relay's intervals: 50 and 100 ms)
  while (!['rescue', 'backfill', 'settings'].every((kind) => sent.includes(kind))) await new Promise((resolve) => setTimeout(resolve, 10));

  t.deepEqual(sent.slice(0, 2), ['ping', 'claim']);
  const firstClaim = sent.indexOf('claim');
  for (const kind of ['rescue', 'backfill', 'settings']) t.true(sent.indexOf(kind) > firstClaim, `${kind} after the first claim`);
});
