// `npm run demo` as a newcomer runs it: in a fresh copy of the project (the files git
// tracks, nothing else: no .data, no development secret), against an empty database,
// with no `npm start` running. The demo starts one, migrates, seeds, trickles, and
// prints the page's address and a token; the page, opened in Chromium with that
// token, shows the three webhooks firing. Ctrl-C stops everything it started.
import { execFileSync, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import pg from 'pg';
import { DEMO_COMPANY, DEMO_CONTACT_COUNT, DEMO_WEBHOOKS } from '../../tools/demo/seed.ts';
import { freePort } from '../../tools/embedded-postgres.ts';
import { browserAvailability, launchBrowser } from '../helpers/browser.ts';
import { databaseUrl } from '../helpers/db.ts';
import { lines } from '../helpers/lines.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The files git tracks, or null when this is not a git checkout. */
function trackedFiles(): string[] | null {
  try {
    return execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\0').filter(Boolean);
  } catch {
    return null;
  }
}

const tracked = trackedFiles();
const availability = browserAvailability();
const canRun = availability.ok && tracked !== null;
if (!canRun) console.warn(`the fresh-clone demo test is skipped: ${availability.ok ? 'not a git checkout' : availability.reason}`);

/** A copy of the tracked files as they are now, with the installed node_modules. */
async function freshCopy(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bpd-fresh-clone-'));
  for (const file of tracked!) {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    // (a file deleted but not yet committed is not part of the project any more)
    await copyFile(join(root, file), join(dir, file)).catch((error) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  return dir;
}

async function onServer(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl('postgres') });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

(canRun ? test : test.skip)('npm run demo in a fresh copy, on an empty database, fills the Reports page; Ctrl-C stops what it started', async (t) => {
  t.timeout(300_000);
  const dir = await freshCopy();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const database = `bpd_demo_${process.pid}_${Date.now()}`;
  await onServer(`create database ${database}`);
  t.teardown(() => onServer(`drop database if exists ${database} with (force)`));

  const port = await freePort();
  const demo = spawn(process.execPath, [join(dir, 'tools/demo.ts')], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: databaseUrl(database),
      PORT: String(port),
      DEMO_RECEIVER_PORT: String(await freePort()),
      DEMO_CHANGES: '6',
      DEMO_EVERY_MS: '100',
      RELAY_LOG_LEVEL: 'silent',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,   // its own process group: the teardown can end all it started
  });
  const out = lines(demo.stdout!);
  const err = lines(demo.stderr!);
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (demo.exitCode === null) process.kill(-demo.pid!, 'SIGKILL');
  });

  try {
    await out.next(/^No bpd-webhooks answers at .*: starting one/, 60_000, 0);
    await out.next(new RegExp(`seeding contacts .* ${DEMO_CONTACT_COUNT}/${DEMO_CONTACT_COUNT}$`), 180_000, 0);
    await out.next(new RegExp(`^${DEMO_COMPANY} is ready\\.$`), 60_000, 0);
    await out.next(/^Trickling 6 contact changes/, 60_000, 0);
  } catch (error) {
    throw new Error(`${(error as Error).message}\nstderr:\n${err.seen.join('\n')}`);
  }
  // what the demo prints once ready (before it, the lines of the npm start it started)
  const printed = out.seen.slice(out.seen.indexOf(`${DEMO_COMPANY} is ready.`)).join('\n');
  const pageUrl = printed.match(/Reports page:\s+(\S+)/)![1]!;
  const token = printed.match(/Admin token[^\n]*\n\s+(\S+)/)![1]!;
  t.is(pageUrl, `http://127.0.0.1:${port}/reports/webhooks`);

  const browser = await launchBrowser();
  t.teardown(() => browser.close());
  const page = await browser.context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  await page.goto(pageUrl);
  await page.fill('#token', token);
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#report:not([hidden]) #webhooks-body tr[data-webhook-id]');
  t.true((await page.textContent('body'))!.includes(DEMO_COMPANY));
  const names = await page.locator('#webhooks-body tr[data-webhook-id] .webhook-link').allTextContents();
  t.deepEqual(names.map((n) => n.trim()).sort(), DEMO_WEBHOOKS.map((w) => w.name).sort());
  // every seeded contact fired the spreadsheet webhook: its Times Fired says so
  const spreadsheet = page.locator('#webhooks-body tr[data-webhook-id]', { hasText: 'Contacts spreadsheet' });
  t.true(Number(await spreadsheet.locator('.times-fired').textContent()) >= DEMO_CONTACT_COUNT);
  t.deepEqual(problems, []);

  // Ctrl-C: the demo stops, and the npm start it started with it
  process.kill(demo.pid!, 'SIGINT');
  t.is(await exited, 0);
  t.false(await fetch(`http://127.0.0.1:${port}/healthz`).then(() => true, () => false), 'the API it started is stopped');
});
