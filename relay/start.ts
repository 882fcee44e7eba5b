// `npm start`: a real Postgres (embedded unless DATABASE_URL says otherwise), the
// schema brought up to date, and the parts of bpd-webhooks running beside it.
import { fileURLToPath } from 'node:url';
import { startEmbeddedPostgres } from './db/embedded.ts';
import { ensureDatabase } from './db/ensure-database.ts';
import { migrate } from './db/migrate.ts';
import { Relay } from './delivery/relay.ts';
import { relaySettings } from './delivery/settings.ts';

const root = fileURLToPath(new URL('../', import.meta.url));

async function database(): Promise<{ url: string; stop: () => Promise<void> }> {
  if (process.env.DATABASE_URL) {
    return { url: process.env.DATABASE_URL, stop: async () => {} };
  }
  const port = Number(process.env.EMBEDDED_PG_PORT ?? 5433);
  const server = await startEmbeddedPostgres({ dataDir: `${root}.data/postgres`, port, persistent: true });
  await ensureDatabase(server.url(), 'bpd_webhooks');
  return { url: server.url('bpd_webhooks'), stop: () => server.stop() };
}

const db = await database();
await migrate(db.url, (line) => console.log(line));
console.log(`Postgres: ${db.url}`);
console.log('  psql it:  psql ' + JSON.stringify(db.url) + " -c 'table webhooks.fire_history'");

const stops: Array<() => Promise<void>> = [];

// The relay, beside the database. Loopback is allowed here unless RELAY_ALLOW_NETWORKS
// says otherwise, so a receiver on this machine works out of the box.
const relay = new Relay(
  relaySettings(process.env, { DATABASE_URL: db.url, RELAY_ALLOW_NETWORKS: '127.0.0.0/8,::1/128' }),
);
await relay.start();
stops.push(() => relay.stop());
console.log(`Relay: delivering webhooks (may send to ${relay.settings.allowNetworks.cidrs.join(', ') || 'public addresses only'})`);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping`);
  for (const stop of stops.reverse()) await stop().catch((error) => console.error(error));
  await db.stop();
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
console.log('bpd-webhooks is up. Ctrl-C stops it.');
