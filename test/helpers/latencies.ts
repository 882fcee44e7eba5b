// A healthy company's latency beside a noisy one (test/fleet): commit to arrival of
// each of its changes, written one by one.
import type { TestDatabase } from './db.ts';
import type { factories } from './factories.ts';
import type { Receiver } from './receiver.ts';

type Factories = ReturnType<typeof factories>;

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
