// A migrations folder of this release's migrations and one more, for tests of a
// migrate that meets something in the way of a migration.
import { mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrationsDir } from '../../tools/migrate.ts';

/** migrations/ and `name`.sql (`sql`, its Up Migration), in a folder removed at the test's end. */
export async function migrationsWith(t: { teardown: (fn: () => Promise<void>) => void }, name: string, sql: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bpd-migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const file of await readdir(migrationsDir)) await symlink(join(migrationsDir, file), join(dir, file));
  await writeFile(join(dir, `${name}.sql`), `-- Up Migration\n${sql}\n`);
  return dir;
}
