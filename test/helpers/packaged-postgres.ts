// A Postgres from the machine's own packages (Debian's /usr/lib/postgresql/N/bin),
// for the tests whose client tools must be of the server's major version: pg_dump
// refuses a server newer than itself, and the embedded package ships no pg_dump. A
// throwaway cluster of its own (trust on loopback, no Unix socket, fsync off), run as
// the user "postgres" when the tests run as root, as the embedded one is.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { embeddedUrl } from '../../tools/database-url.ts';
import { freePort, type RunningPostgres } from '../../tools/embedded-postgres.ts';
import { until } from './until.ts';

const PACKAGES = '/usr/lib/postgresql';

/** The folder of the binaries of the newest packaged Postgres with a server and pg_dump, or null. */
export function packagedPostgresBin(): string | null {
  if (!existsSync(PACKAGES)) return null;
  const majors = readdirSync(PACKAGES).filter((name) => /^\d+$/.test(name)).map(Number).sort((a, b) => b - a);
  for (const major of majors) {
    const bin = join(PACKAGES, String(major), 'bin');
    if (['postgres', 'initdb', 'pg_dump', 'pg_restore', 'psql'].every((tool) => existsSync(join(bin, tool)))) return bin;
  }
  return null;
}

/** Who runs the server: the user "postgres" as root (Postgres refuses root), else ourselves. */
function runAs(): { uid: number; gid: number } | Record<string, never> {
  if (process.getuid?.() !== 0) return {};
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

export async function startPackagedPostgres(bin: string): Promise<RunningPostgres> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bpd-packaged-pg-'));
  const user = runAs();
  if ('uid' in user) chownSync(dataDir, user.uid, user.gid);
  execFileSync(join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C'],
    { ...user, stdio: 'ignore' });
  const port = await freePort();
  const server: ChildProcess = spawn(join(bin, 'postgres'), [
    '-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=100',
  ], { ...user, stdio: 'ignore' });
  const exited = once(server, 'exit');
  const url = (database = 'postgres') => embeddedUrl(port, database);
  await until('the packaged Postgres answers', async () => {
    if (server.exitCode !== null) throw new Error(`the packaged Postgres of ${bin} exited as it started (${server.exitCode})`);
    const client = new pg.Client({ connectionString: url() });
    client.on('error', () => {});
    try {
      await client.connect();
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => {});
    }
  }, 30_000);
  return {
    port,
    url,
    async stop() {
      // a fast shutdown: ends the sessions, then exits
      if (server.exitCode === null) {
        server.kill('SIGINT');
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
