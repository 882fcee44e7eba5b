// A migrations folder of this release's migrations and one more, for tests of a
// migrate that meets something in the way of a migration; and `npm run migrate` as a
// process of its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrationsDir } from '../../tools/migrate.ts';

/** migrations/ and `name`.sql (`sql`, its Up Migration), in a folder removed at the test's end. */
export async function migrationsWith(t: { teardown: (fn: () => Promise<void>) => void }, name: string, sql: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bpd-migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const file of await readdir(migrationsDir)) await symlink(join(migrationsDir, file), join(dir, file));
  await writeFile(join(dir, `${name}.sql`), `-- Up Migration\n${sql}\n`);
  return dir;
}

/** The sessions of `npm run migrate` (its application_name) waiting on a lock, in the current database. */
export const MIGRATE_WAITING = `select pid from pg_stat_activity
  where datname = current_database() and application_name = 'bpd-webhooks-migrate' and wait_event_type = 'Lock'`;

/**
 * `npm run migrate` as its own process (tools/migrate.ts) over `databaseUrl`, `env`
 * added to this one's, killed at the test's end: its exit and what it wrote to stderr.
 */
export function migrateProcess(
  t: { teardown: (fn: () => void) => void },
  databaseUrl: string,
  env: Record<string, string> = {},
): { child: ChildProcess; exited: Promise<unknown[]>; stderr: () => string } {
  const child = spawn(process.execPath, [fileURLToPath(new URL('../../tools/migrate.ts', import.meta.url))],
    { env: { ...process.env, DATABASE_URL: databaseUrl, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  return { child, exited: once(child, 'exit'), stderr: () => stderr };
}
