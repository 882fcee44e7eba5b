// A starting relay claims first: the rescuer, the backfiller and the check of the
// settings begin a little later, so that a backlog's first claim has the connection the
// check of the database opened (the claims' own), and the CPU (each of the others
// compiles and plans its functions on a connection of the relay's pool).
import test from 'ava';
import type pg from 'pg';
import { relayScene, testRelay } from '../helpers/relay.ts';

/** How long the test waits for the statements that follow the first claim. */
const FOLLOWERS_DEADLINE_MS = 20_000;

/**
 * What each statement of the relay's pools is (`claims:` before those of the claims'
 * connection), in the order they were sent, and `seen(kinds)`: resolves once each of
 * those kinds was sent, rejects naming the missing ones after FOLLOWERS_DEADLINE_MS.
 */
function recordStatements(pools: { pool: pg.Pool; claimPool: pg.Pool }): { sent: string[]; seen: (kinds: string[]) => Promise<void> } {
  const sent: string[] = [];
  const waiters: Array<() => void> = [];
  const kinds: Array<[RegExp, string]> = [
    [/^bpd_webhooks_claim/, 'claim'],
    [/rescue_expired_leases/, 'rescue'],
    [/backfill_step/, 'backfill'],
    [/refused_settings/, 'settings'],
    [/transaction_read_only/, 'ping'],
  ];
  for (const [pool, prefix] of [[pools.pool, ''], [pools.claimPool, 'claims:']] as const) {
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    (pool as unknown as { query: typeof query }).query = (...args: unknown[]) => {
      const first = args[0] as string | { name?: string; text?: string };
      const text = typeof first === 'string' ? first : (first.name ?? first.text ?? '');
      sent.push(prefix + (kinds.find(([pattern]) => pattern.test(text))?.[1] ?? text));
      for (const waiter of waiters.splice(0)) waiter();
      return query(...args);
    };
  }
  const seen = (wanted: string[]) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`not sent within ${FOLLOWERS_DEADLINE_MS} ms: ${wanted.filter((kind) => !sent.includes(kind)).join(', ')}`));
      }, FOLLOWERS_DEADLINE_MS);
      const check = () => {
        if (!wanted.every((kind) => sent.includes(kind))) return void waiters.push(check);
        clearTimeout(timer);
        resolve();
      };
      check();
    });
  return { sent, seen };
}

test('the first statement after the check of the database is the claim; the rescuer, the backfiller and the settings check follow', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  const { sent, seen } = recordStatements(relay);
  await relay.start();
  await receiver.waitFor(1, { path: '/hook' });
  // each of them runs soon after (the test relay's intervals: 50 and 100 ms)
  await seen(['rescue', 'backfill', 'settings']);

  t.deepEqual(sent.slice(0, 2), ['claims:ping', 'claims:claim']);
  const firstClaim = sent.indexOf('claims:claim');
  for (const kind of ['rescue', 'backfill', 'settings']) t.true(sent.indexOf(kind) > firstClaim, `${kind} after the first claim`);
  t.false(sent.includes('claim'), 'no claim on the relay\'s pool');
});
