// A healthy company's latency beside a noisy one (test/fleet): commit to arrival of
// each of its changes, written one by one.
import type { ExecutionContext } from 'ava';
import type { TestDatabase } from './db.ts';
import type { factories } from './factories.ts';
import type { Receiver } from './receiver.ts';
import { spawnRelay } from './relay.ts';

type Factories = ReturnType<typeof factories>;

/**
 * A healthy company, its webhook to a receiver that answers at once, and a relay in
 * a process of its own as in production (its settings: `relayEnvironment`, else its
 * defaults). Once the relay has delivered a first change, the company's latencies
 * alone, over `changes` changes; beside() measures them again, once the test has made
 * its noise. Hanging requests end when the receiver drops them, before the relay is
 * killed (teardowns run last first).
 */
export async function healthyCompany(
  t: Pick<ExecutionContext, 'teardown'>,
  scene: { database: TestDatabase; receiver: Receiver; f: Factories },
  options: { changes: number; relayEnvironment?: Record<string, string> },
) {
  const { database, receiver, f } = scene;
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: webhook.secret, otherwise: 200 });
  const relay = spawnRelay(database.url, options.relayEnvironment);
  t.teardown(() => void relay.kill('SIGKILL'));
  t.teardown(() => receiver.close());

  await f.contact(company.id);
  await receiver.waitFor(1, { path: '/healthy', timeoutMs: 60_000 });
  const measure = (arrivedBefore: number) =>
    healthyLatencies({ database, receiver, f, companyId: company.id, webhookId: webhook.id, arrivedBefore, changes: options.changes });
  const alone = await measure(1);
  return { company, webhook, relay, alone, beside: () => measure(1 + options.changes) };
}

/** Writes `changes` changes of the healthy company one by one; commit-to-arrival latencies. */
export async function healthyLatencies({ database, receiver, f, companyId, webhookId, arrivedBefore, changes }: {
  database: TestDatabase;
  receiver: Receiver;
  f: Factories;
  companyId: string;
  webhookId: string;
  /** requests the webhook's path had before */
  arrivedBefore: number;
  changes: number;
}): Promise<{ p50: number; p99: number; all: string }> {
  const committedAt = new Map<string, number>();
  for (let i = 0; i < changes; i++) {
    const contact = await f.contact(companyId);
    const committed = performance.timeOrigin + performance.now();
    const { rows } = await database.pool.query(
      'select message_id from webhooks.deliveries where webhook_id = $1 and contact_id = $2',
      [webhookId, contact.id],
    );
    committedAt.set(rows[0].message_id, committed);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const arrived = (await receiver.waitFor(arrivedBefore + changes, { path: '/healthy', timeoutMs: 60_000 })).slice(arrivedBefore);
  const latencies = arrived
    .map((r) => r.receivedAt - committedAt.get(String(r.headers['webhook-id']))!)
    .sort((a, b) => a - b);
  return {
    p50: latencies[Math.floor(latencies.length / 2)]!,
    p99: latencies[Math.ceil(latencies.length * 0.99) - 1]!,
    all: latencies.map((l) => l.toFixed(0)).join(' '),
  };
}
