// The engine as this code has it: the files of sql/, read once as the process starts,
// and their fingerprint. `npm run migrate` (tools/migrate.ts) applies exactly these
// texts and records the fingerprint with them, in the same transaction
// (webhooks_private.sql_applied); /readyz (ops/operations.ts) compares the database's
// record with it. The versioned migrations say which tables the database has; this
// says whose functions, triggers and views run on them, which the migrations cannot:
// a migrate that stopped before sql/, or another release's migrate over the same
// migrations, leaves them current and the engine not this code's.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SQL_DIR = fileURLToPath(new URL('../sql', import.meta.url));

/** The files of sql/ in the order they are applied (name order), with their text. */
export const ENGINE_FILES: ReadonlyArray<{ readonly name: string; readonly text: string }> = readdirSync(SQL_DIR)
  .filter((name) => name.endsWith('.sql'))
  .sort()
  .map((name) => ({ name, text: readFileSync(`${SQL_DIR}/${name}`, 'utf8') }));

/**
 * sha256 (hex) of sql/ as this code has it: each file's name and text, in order, so
 * that a file renamed, reordered, added or removed changes it as an edit does.
 */
export const ENGINE_FINGERPRINT: string = (() => {
  const hash = createHash('sha256');
  for (const { name, text } of ENGINE_FILES) {
    hash.update(`${name}\0${Buffer.byteLength(text)}\0`).update(text);
  }
  return hash.digest('hex');
})();
