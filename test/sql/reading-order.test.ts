// sql/ reads top to bottom (docs/sql.md): each file uses only what an earlier file, or
// itself, defines. Postgres does not enforce it (a PL/pgSQL body is resolved when it
// runs), so a forward reference slips in unnoticed; this reads the files as a DBA
// would and names any.
import { readdirSync, readFileSync } from 'node:fs';
import test from 'ava';
import { sqlDir } from '../../tools/migrate.ts';

/** The text without comments (SQL's `--` and block comments), so only code counts. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/--[^\n]*/g, '');
}

const DEFINES = /\bcreate\s+(?:or\s+replace\s+)?(?:function|procedure|view|materialized\s+view|table|type|aggregate|sequence)\s+(?:if\s+not\s+exists\s+)?([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)/gi;

/** Every schema-qualified name a file defines, with the file that defines it first. */
function definitions(files: Array<{ name: string; code: string }>): Map<string, number> {
  const firstDefinedIn = new Map<string, number>();
  files.forEach((file, index) => {
    for (const match of file.code.matchAll(DEFINES)) {
      const name = match[1]!.toLowerCase();
      if (!firstDefinedIn.has(name)) firstDefinedIn.set(name, index);
    }
  });
  return firstDefinedIn;
}

test('no file of sql/ uses a function, view or table that a later file defines', (t) => {
  const files = readdirSync(sqlDir)
    .filter((name) => name.endsWith('.sql'))
    .sort()
    .map((name) => ({ name, code: code(readFileSync(`${sqlDir}/${name}`, 'utf8')) }));
  t.true(files.length > 10);
  const firstDefinedIn = definitions(files);
  const forward: string[] = [];
  files.forEach((file, index) => {
    for (const [name, definedIn] of firstDefinedIn) {
      if (definedIn <= index) continue;
      if (new RegExp(`\\b${name.replace('.', '\\.')}\\b`, 'i').test(file.code)) {
        forward.push(`${file.name} uses ${name}, defined later in ${files[definedIn]!.name}`);
      }
    }
  });
  t.deepEqual(forward, []);
});
