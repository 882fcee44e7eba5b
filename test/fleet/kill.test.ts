// Kill -9 of one of three relays under load: nothing is lost; the killed relay's
// leases, and only its, run out, and what it held is sent again under the same
// webhook-id. No message arrives more often than its attempts on record.
import test from 'ava';
import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { relayScene, spawnRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

test('SIGKILL of one of three relays under load: nothing lost, duplicates only of what it held', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhooks = [];
  for (const path of ['/a', '/b', '/c']) {
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url(path) });
    receiver.route(path, { secret: webhook.secret, otherwise: { status: 200, delayMs: 5 } });
    webhooks.push(webhook);
  }
  const ids = webhooks.map((w) => w.id);
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, 200) n`,
    [company.id],
  );
  const { rows: backlog } = await database.pool.query(
    'select message_id from webhooks.deliveries where webhook_id = any ($1::bigint[])',
    [ids],
  );
  t.is(backlog.length, 600);

  const settings = { RELAY_LEASE_MS: '6000', RELAY_REQUEST_TIMEOUT_MS: '5000', RELAY_BATCH_SIZE: '20', RELAY_MAX_IN_FLIGHT: '32' };
  const relays = new Map<string, ChildProcess>();
  for (const id of ['relay-1', 'relay-2', 'relay-3']) {
    const child = spawnRelay(database.url, { ...settings, RELAY_ID: id });
    t.teardown(() => void child.kill('SIGKILL'));
    relays.set(id, child);
  }

  // under load: a sixth of the backlog has arrived. Then the receiver holds its
  // answers, so that what the doomed relay claims from now on stays in flight
  // until it dies (a delivery it held a moment before could settle in between).
  await receiver.waitFor(100, { timeoutMs: 60_000 });
  let openGate!: () => void;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  for (const path of ['/a', '/b', '/c']) receiver.route(path, { otherwise: { status: 200, after: gate } });
  t.teardown(() => openGate());
  const { rows: [{ gatedSince }] } = await database.pool.query('select now() as "gatedSince"');
  // the one to kill: a relay that claimed since (whichever: the fleet-wide caps let
  // only a few more claims through once nothing settles, and a relay slower to start,
  // as on a busy machine, may get none of them)
  const doomedId = await waitForHeld(database.pool, [...relays.keys()], ids, gatedSince);
  const doomed = relays.get(doomedId)!;
  const exited = once(doomed, 'exit');
  doomed.kill('SIGKILL');
  t.is((await exited)[1], 'SIGKILL');
  for (const path of ['/a', '/b', '/c']) receiver.route(path, { otherwise: { status: 200, delayMs: 5 } });
  openGate();

  const deliveries = await waitForFinalDeliveries(database.pool, ids, 600, 90_000);
  t.true(deliveries.every((d) => d.state === 'succeeded'), 'every delivery succeeded');

  const arrivals = new Map<string, number>();
  for (const r of receiver.received()) arrivals.set(String(r.headers['webhook-id']), (arrivals.get(String(r.headers['webhook-id'])) ?? 0) + 1);
  t.deepEqual([...arrivals.keys()].sort(), backlog.map((r) => r.message_id).sort(), 'every message arrived');
  const twice = [...arrivals].filter(([, n]) => n > 1).map(([id]) => id);

  // every arrival is an attempt on record: a message arrives twice only when the
  // history shows why (the lease of the killed relay ran out, or a request whose
  // answer did not come back in time was retried)
  const { rows: attempts } = await database.pool.query(
    `select d.message_id, count(*)::int as attempts,
            count(*) filter (where a.error like 'lease expired:%')::int as expired,
            array_agg(distinct a.relay_id) filter (where a.error like 'lease expired:%') as expired_by
     from webhooks.delivery_attempts a join webhooks.deliveries d on d.id = a.delivery_id
     where a.webhook_id = any ($1::bigint[]) group by d.message_id`,
    [ids],
  );
  const recorded = new Map(attempts.map((r) => [r.message_id as string, r]));
  const unexplained = [...arrivals].filter(([id, n]) => n > (recorded.get(id)?.attempts ?? 0));
  t.deepEqual(unexplained, [], 'no message arrived more often than its attempts on record');
  const expired = attempts.filter((r) => r.expired > 0);
  t.true(expired.length > 0, 'the killed relay held deliveries, rescued once its leases ran out');
  t.deepEqual([...new Set(expired.flatMap((r) => r.expired_by))], [doomedId], 'only the killed relay\'s leases ran out');
  const heldIds = new Set(expired.map((r) => r.message_id as string));
  t.log(`${doomedId} held ${heldIds.size}; ${twice.length} arrived twice, ${twice.filter((id) => heldIds.has(id)).length} of them held by ${doomedId}`);
});

// until one of the relays holds a delivery it claimed after `since` (its request waits
// at the receiver's gate, so it cannot settle before the relay is killed); that relay
async function waitForHeld(pool: import('pg').Pool, relayIds: string[], ids: string[], since: Date): Promise<string> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const { rows } = await pool.query(
      `select locked_by from webhooks.deliveries
       where webhook_id = any ($1::bigint[]) and locked_by = any ($2::text[]) and last_attempt_at > $3
       order by last_attempt_at limit 1`,
      [ids, relayIds, since],
    );
    if (rows.length > 0) return rows[0].locked_by as string;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`none of ${relayIds.join(', ')} held a delivery claimed since the receiver held its answers`);
}
