// `npm start`: a real Postgres (embedded unless DATABASE_URL says otherwise), the
// schema brought up to date, and the parts of bpd-webhooks running beside it.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { PostgresCannotRun, startEmbeddedPostgres } from './embedded-postgres.ts';
import { DEFAULT_DATABASE, embeddedPort, shownDatabaseUrl } from './database-url.ts';
import { apiAddress, apiUrl as reachedAt } from '../api/address.ts';
import { ensureDatabase } from './ensure-database.ts';
import { firstCompany } from './first-company.ts';
import { migrate, migrateSettings, rollbackAsked } from './migrate.ts';
import { maintain, maintainSettings } from './maintain.ts';
import { Supervisor } from './supervisor.ts';
import { RELAY_NODE_FLAGS } from '../relay/node-flags.ts';
import { databaseUrlRefusal } from '../relay/database.ts';
import { jwtSecret } from '../api/jwt-secret.ts';
import { authenticatorUrl } from '../api/authenticator.ts';
import { toolsLogger } from './log.ts';

const root = fileURLToPath(new URL('../', import.meta.url));

async function database(): Promise<{ url: string; stop: () => Promise<void> }> {
  if (process.env.DATABASE_URL) {
    return { url: process.env.DATABASE_URL, stop: async () => {} };
  }
  const server = await startEmbeddedPostgres({ dataDir: `${root}.data/postgres`, port: embeddedPort(), persistent: true }).catch((error) => {
    if (!(error instanceof PostgresCannotRun)) throw error;
    console.error(error.message);
    process.exit(1);
  });
  await ensureDatabase(server.url(), DEFAULT_DATABASE);
  return { url: server.url(DEFAULT_DATABASE), stop: () => server.stop() };
}

// (asked before anything starts: a flag written so that npm kept it starts nothing)
let rollback = false;
try {
  rollback = rollbackAsked('start');
} catch (error) {
  console.error((error as Error).message);
  process.exit(1);
}

// The API's port, taken by something else (another npm start, say): the API could
// only crash and restart, while whatever answers there made this look up. Say so now.
let address: ReturnType<typeof apiAddress>;
let migrating: ReturnType<typeof migrateSettings>;
let maintaining: ReturnType<typeof maintainSettings>;
try {
  // (and EMBEDDED_PG_PORT's, and the settings its migrate and maintain read as npm run
  // migrate and npm run maintain do, before anything starts)
  address = apiAddress();
  migrating = migrateSettings();
  maintaining = maintainSettings();
  if (!process.env.DATABASE_URL) embeddedPort();
  else if (databaseUrlRefusal(process.env.DATABASE_URL)) throw new Error(databaseUrlRefusal(process.env.DATABASE_URL)!);
} catch (error) {
  console.error((error as Error).message);
  process.exit(1);
}
const { port: apiPort, host: apiHost } = address;
const taken = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
  const probe = createServer();
  probe.once('error', (error: NodeJS.ErrnoException) => resolve(error));
  probe.listen(apiPort, apiHost, () => probe.close(() => resolve(null)));
});
if (taken) {
  console.error(taken.code === 'EADDRINUSE'
    ? `port ${apiPort} on ${apiHost} is taken (another npm start?): stop what listens there, or set PORT to a free port`
    : `the admin API cannot listen on ${apiHost}:${apiPort}: ${taken.message}`);
  process.exit(1);
}

const db = await database();
// over a shared database (DATABASE_URL), other hosts' processes run on it: this host's
// start neither undoes a rollback made there on purpose nor applies a sql/ it cannot
// tell from an earlier release's (cautious), leaving both to npm run migrate. Its
// embedded database is this host's alone, and migrated by npm start only: it migrates
// as npm run migrate does, --rollback included
await migrate(db.url, (line) => console.log(line), { ...migrating, rollback, cautious: Boolean(process.env.DATABASE_URL) }).catch(async (error: Error) => {
  // its sentences say what happened and what to do, as `npm run migrate`'s do: a
  // stack would bury them; and the embedded Postgres is stopped, not left behind
  console.error(error.message);
  await db.stop();
  process.exit(1);
});
// (the embedded server's password is the code's own, EMBEDDED_PASSWORD: shown, so
// that the psql line works as printed; an operator's DATABASE_URL's is not)
const shownUrl = process.env.DATABASE_URL ? shownDatabaseUrl(db.url) : db.url;
console.log(`Postgres: ${shownUrl}`);
console.log('  psql it:  psql ' + JSON.stringify(shownUrl) + " -c 'table webhooks.fire_history'");

// The parts run as child processes under one supervisor (tools/supervisor.ts): a
// crash of one is logged and it is started again, while the other goes on (the API
// dying must not stop deliveries).
const apiUrl = reachedAt();
const supervisorLog = toolsLogger('supervisor');
const supervisor = new Supervisor([
  {
    // Loopback is allowed here unless RELAY_ALLOW_NETWORKS says otherwise, so a
    // receiver on this machine works out of the box.
    name: 'relay',
    script: `${root}relay/main.ts`,
    nodeFlags: RELAY_NODE_FLAGS,
    env: { ...process.env, DATABASE_URL: db.url, RELAY_ALLOW_NETWORKS: process.env.RELAY_ALLOW_NETWORKS ?? '127.0.0.0/8,::1/128' },
  },
  {
    // The admin API and the Reports page. JWT_SECRET, or a development secret kept in
    // .data/jwt-secret so that tokens outlive a restart. Against our own embedded
    // database the API logs in as webhook_authenticator, as it should in production
    // (with DATABASE_URL it uses that URL: point it at the authenticator there).
    name: 'api',
    script: `${root}api/main.ts`,
    env: {
      ...process.env,
      // (a fresh password each start: only this process and its children know it)
      DATABASE_URL: process.env.DATABASE_URL ? db.url : await authenticatorUrl(db.url, randomBytes(24).toString('base64url')),
      JWT_SECRET: await jwtSecret({ allowDevSecret: true }),
      PORT: String(apiPort),
      HOST: apiHost,
    },
  },
], {
  // a part that died is a problem an operator's log must show, as the parts log theirs
  log: (line) => supervisorLog.error(line),
  events: { started: (name, pid) => console.log(`${name}: started (pid ${pid})`) },
});
supervisor.start();

// The outbox's upkeep (tools/maintain.ts): partitions ahead, day counts, retention.
// Here because it needs the tables' owner, which only this process connects as.
const MAINTAIN_EVERY_MS = 60 * 60_000;
const maintainLog = toolsLogger('maintain');
const upkeep = () =>
  maintain(db.url, (line) => maintainLog.info(line), maintaining).catch((error) => maintainLog.error({ err: error }, 'outbox upkeep failed; trying again in an hour'));
void upkeep();
const upkeepTimer = setInterval(() => void upkeep(), MAINTAIN_EVERY_MS);
upkeepTimer.unref();

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(upkeepTimer);
  console.log(`${signal}: stopping`);
  await supervisor.stop().catch((error) => toolsLogger('start').error({ err: error }, 'stopping the parts failed'));
  await db.stop();
  console.log('stopped');
  process.exit(0);
}
// The embedded-postgres package stops its server on these signals by itself, at once;
// the relay and the API must finish first (the relay writes its last results), so
// this process takes the signals over and stops the database last.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.removeAllListeners(signal);
  process.on(signal, () => void shutdown(signal));
}

if (await answers(`${apiUrl}/healthz`, 60_000)) {
  console.log(`Reports page: ${apiUrl}/reports/webhooks`);
  console.log(`GraphQL:      ${apiUrl}/graphql  (Ruru: ${apiUrl}/graphiql)`);
  // a token may name any id, but webhooks can be made only for a company the CRM has
  // (a failed look-up only leaves the hint out: everything is up)
  const company = await firstCompany(db.url).catch(() => undefined);
  if (company === null) console.log('  no company in crm.companies yet: npm run demo makes Demo Realty, company 1 (or insert your own); then');
  const id = company ?? '1';
  console.log(`  an admin token for company ${id}:  npm run token -- --company ${id}`);
  console.log(`  read-only:                     npm run token -- --company ${id} --role webhook_viewer`);
  console.log('  send it as the header  Authorization: Bearer <token>');
  console.log('bpd-webhooks is up. Ctrl-C stops it.');
} else if (!stopping) {
  console.error(`the admin API did not answer at ${apiUrl} within a minute (see its log above); the relay runs on. Ctrl-C stops it.`);
}

/** Whether url answers 200 within the time, asking every 100 ms. */
async function answers(url: string, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline && !stopping) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false);
    if (ok) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}
