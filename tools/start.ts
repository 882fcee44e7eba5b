// `npm start`: a real Postgres (embedded unless DATABASE_URL says otherwise), the
// schema brought up to date, and the parts of bpd-webhooks running beside it.
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { DEFAULT_DATABASE, DEFAULT_EMBEDDED_PORT, PostgresCannotRun, startEmbeddedPostgres } from './embedded-postgres.ts';
import { ensureDatabase } from './ensure-database.ts';
import { migrate } from './migrate.ts';
import { Relay } from '../relay/loop.ts';
import { relaySettings } from '../relay/settings.ts';
import { startApi } from '../api/server.ts';
import { jwtSecret } from '../api/jwt-secret.ts';
import { authenticatorUrl } from '../api/authenticator.ts';

const root = fileURLToPath(new URL('../', import.meta.url));

async function database(): Promise<{ url: string; stop: () => Promise<void> }> {
  if (process.env.DATABASE_URL) {
    return { url: process.env.DATABASE_URL, stop: async () => {} };
  }
  const port = Number(process.env.EMBEDDED_PG_PORT ?? DEFAULT_EMBEDDED_PORT);
  const server = await startEmbeddedPostgres({ dataDir: `${root}.data/postgres`, port, persistent: true }).catch((error) => {
    if (!(error instanceof PostgresCannotRun)) throw error;
    console.error(error.message);
    process.exit(1);
  });
  await ensureDatabase(server.url(), DEFAULT_DATABASE);
  return { url: server.url(DEFAULT_DATABASE), stop: () => server.stop() };
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

// The admin API and the Reports page. JWT_SECRET, or a development secret kept in
// .data/jwt-secret so that tokens outlive a restart. Against our own embedded
// database the API logs in as webhook_authenticator, as it should in production
// (with DATABASE_URL it uses that URL: point it at the authenticator there).
const api = await startApi({
  // (a fresh password each start: only this process needs to know it)
  databaseUrl: process.env.DATABASE_URL ? db.url : await authenticatorUrl(db.url, randomBytes(24).toString('base64url')),
  jwtSecret: await jwtSecret({ allowDevSecret: true }),
  port: Number(process.env.PORT ?? 5678),
  host: process.env.HOST ?? '127.0.0.1',
});
stops.push(() => api.stop());
console.log(`Reports page: ${api.url}/reports/webhooks`);
console.log(`GraphQL:      ${api.url}/graphql  (Ruru: ${api.url}/graphiql)`);
console.log('  an admin token for company 1:  npm run token -- --company 1');
console.log('  read-only:                     npm run token -- --company 1 --role webhook_viewer');
console.log('  send it as the header  Authorization: Bearer <token>');

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping`);
  for (const stop of stops.reverse()) await stop().catch((error) => console.error(error));
  await db.stop();
  process.exit(0);
}
// The embedded-postgres package stops its server on these signals by itself, at once;
// the relay and the API must finish first (the relay writes its last results), so
// this process takes the signals over and stops the database last.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.removeAllListeners(signal);
  process.on(signal, () => void shutdown(signal));
}
console.log('bpd-webhooks is up. Ctrl-C stops it.');
