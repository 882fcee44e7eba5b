// bpd-webhooks as it runs in production: the capture triggers of sql/ fill the outbox,
// the relay's own loop (relay/) claims, POSTs and settles.
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { now } from '../clock.ts';
import { WEBHOOK_FIELDS } from '../database.ts';
import { RELAY_NODE_FLAGS } from '../../relay/node-flags.ts';
import { Relay } from '../../relay/loop.ts';
import { ENVIRONMENT, relaySettings, type RelaySettings } from '../../relay/settings.ts';
import { serveChild } from '../child.ts';
import type { Contender } from '../modes.ts';

/**
 * One enabled webhook of the bench company, subscribed to contact.updated, posting to
 * the receiver. Its max_in_flight is the highest allowed: the benchmark measures the
 * relays' throughput, not the fleet-wide cap (each relay still sends at most its
 * concurrency at once, and claims as far ahead as its prefetch).
 */
export async function installWebhook(databaseUrl: string, receiverUrl: string, fields: readonly string[] = WEBHOOK_FIELDS): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(
      `insert into webhooks.webhooks (company_id, name, url, fields, actions, max_in_flight)
       values (1, 'Benchmark receiver', $1, $2, '{contact.updated}', 1000)`,
      [receiverUrl, fields],
    );
  } finally {
    await client.end();
  }
}

// The relay with its production defaults and V8 flags (as `npm run relay` runs it),
// except what the benchmark must set: the receiver is on loopback (allowed
// explicitly, as in the tests), the concurrency is the benchmark's (one webhook, so
// the per-webhook cap is the concurrency; its default is the benchmark's default),
// and logs at warn, as graphile-worker's are (both would otherwise log every delivery).
export function benchRelaySettings(env: NodeJS.ProcessEnv = process.env): RelaySettings {
  return relaySettings({
    ...env,
    RELAY_ALLOW_NETWORKS: '127.0.0.1/32',
    RELAY_PER_WEBHOOK_IN_FLIGHT: env.CONCURRENCY!,
    RELAY_LOG_LEVEL: env.RELAY_LOG_LEVEL ?? 'warn',
  });
}

async function child(): Promise<void> {
  const relay = new Relay(benchRelaySettings());
  const figures = () => {
    const { claims, claimed, emptyClaims, emptyLanesBusy, emptyAtCap, refills, emptyRefills, claimMs } = relay.stats;
    const { settles, settled } = relay.settleStats;
    return { claims, claimed, emptyClaims, emptyLanesBusy, emptyAtCap, refills, emptyRefills, claimMs, settles, settled };
  };
  let base = figures();
  await serveChild(async () => ({
    start: () => relay.start(),
    mark: () => (base = figures()),
    async stop() {
      await relay.stop();
      const end = figures();
      return Object.fromEntries(Object.entries(end).map(([key, value]) => [key, value - base[key as keyof typeof base]]));
    },
  }));
}

/** Each change's first attempt as the relay recorded it (attempted_at: when it began the request). */
async function firstSends(databaseUrl: string): Promise<Map<number, number>> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query(
      `select (h.payload #>> '{data,contact,custom,seq}')::bigint as seq, extract(epoch from a.attempted_at) * 1000 as sent
       from webhooks.delivery_history h
       join webhooks.delivery_attempts a on a.delivery_id = h.id and a.delivery_created_at = h.created_at and a.attempt = 1`,
    );
    // attempted_at is of the wall clock (the relay's, the database's), the benchmark's
    // clock the monotonic one (clock.ts): one run of each process on its own start's
    // wall clock read 864 ms from commit to send and -850 from send to arrival
    const wallAhead = Date.now() - now();
    return new Map(rows.map((row) => [Number(row.seq), Number(row.sent) - wallAhead]));
  } finally {
    await client.end();
  }
}

export const bpdContender: Contender = {
  name: 'bpd-webhooks',
  file: fileURLToPath(import.meta.url),
  execArgv: RELAY_NODE_FLAGS,
  unfinishedSql: 'select count(*) from webhooks.delivery_queue',
  prepare: installWebhook,
  firstSends,
};

if (process.env.BENCH_CHILD === fileURLToPath(import.meta.url)) await child();

/** The relay's own default for requests in flight to one webhook: the benchmark's default concurrency. */
export const RELAY_DEFAULT_CONCURRENCY = Number(ENVIRONMENT.RELAY_PER_WEBHOOK_IN_FLIGHT.default);
