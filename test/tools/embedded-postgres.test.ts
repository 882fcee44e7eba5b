// The embedded Postgres as root in a checkout the user "postgres" cannot enter (a
// clone under a 0700 home folder): `npm start` and `npm test` stop with one sentence
// that says what to do, not an EACCES stack trace from spawning initdb.
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { firstFolderClosedTo, freePort, PostgresCannotRun, startEmbeddedPostgres } from '../../tools/embedded-postgres.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const asRoot = process.getuid?.() === 0;

async function closedFolder(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'bpd-closed-home-'));
  t.teardown(() => rm(folder, { recursive: true, force: true }));
  await chmod(folder, 0o700);
  return folder;
}

test('the first folder on the way that an account may not enter', async (t) => {
  const folder = await closedFolder(t);
  await mkdir(join(folder, 'clone/node_modules'), { recursive: true });
  const stranger = { uid: 54321, groups: [54321] };
  t.is(firstFolderClosedTo(join(folder, 'clone/node_modules'), stranger), folder);
  t.is(firstFolderClosedTo(join(folder, 'clone/not/yet/made'), stranger), folder);
  t.is(firstFolderClosedTo(join(folder, 'clone/node_modules'), null), folder, 'no such account yet: only what anyone may do counts');
  t.is(firstFolderClosedTo(join(folder, 'clone/node_modules'), { uid: process.getuid!(), groups: [] }), null, 'the owner may');
  await chmod(folder, 0o701);
  t.is(firstFolderClosedTo(join(folder, 'clone/node_modules'), stranger), null);
});

/** A checkout inside a 0700 folder: links to this one's files, kept as links when run. */
async function checkoutInClosedFolder(t: { teardown: (fn: () => Promise<void>) => void }): Promise<{ folder: string; checkout: string }> {
  const folder = await closedFolder(t);
  const checkout = join(folder, 'bpd-webhooks');
  await mkdir(checkout);
  for (const entry of await readdir(root)) {
    if (entry === '.data' || entry === '.git') continue;
    await symlink(join(root, entry), join(checkout, entry));
  }
  return { folder, checkout };
}

function run(script: string, env: Record<string, string>): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    // --preserve-symlinks: the files are found where the checkout is, as in a real clone
    const child = spawn(process.execPath, ['--preserve-symlinks', '--preserve-symlinks-main', script], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

for (const [command, script] of [['npm start', 'tools/start.ts'], ['npm test', 'test/run.ts']] as const) {
  (asRoot ? test : test.skip)(`as root, ${command} in a checkout under a 0700 folder stops with one sentence that says what to do`, async (t) => {
    const { folder, checkout } = await checkoutInClosedFolder(t);
    const result = await run(join(checkout, script), { EMBEDDED_PG_PORT: String(await freePort()), PORT: '0' });
    t.is(result.code, 1, result.stdout + result.stderr);
    t.notRegex(result.stderr, /\n\s+at /, 'no stack trace');
    t.notRegex(result.stderr, /EACCES/);
    const lines = result.stderr.trim().split('\n');
    t.is(lines.length, 1, result.stderr);
    t.regex(lines[0]!, /^The embedded Postgres cannot start: run as root, it runs as the user "postgres", who may not enter /);
    t.true(lines[0]!.includes(`may not enter ${folder} `), lines[0]);
    t.regex(lines[0]!, /set DATABASE_URL to a Postgres of your own\.$/);
  });
}

test('a port something else listens on stops the embedded Postgres with one sentence that names it', async (t) => {
  const other = createServer();
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => other.close(() => resolve())));
  const port = (other.address() as AddressInfo).port;
  const dataDir = await mkdtemp(join(tmpdir(), 'bpd-taken-port-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const error = await t.throwsAsync(startEmbeddedPostgres({ dataDir, port, fast: true }), { instanceOf: PostgresCannotRun });
  t.regex(error!.message, new RegExp(`^The embedded Postgres cannot start: port ${port} on 127\\.0\\.0\\.1 is taken .*EMBEDDED_PG_PORT`));
});
