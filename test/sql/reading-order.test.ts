// sql/ reads top to bottom (docs/sql.md): each file uses only what an earlier file, or
// itself, defines. Postgres does not enforce it (a PL/pgSQL body is resolved when it
// runs), so a forward reference slips in unnoticed; this reads the files as a DBA
// would and names any.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import test from 'ava';
import { SQL_DIR } from '../../ops/engine.ts';

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
  const files = readdirSync(SQL_DIR)
    .filter((name) => name.endsWith('.sql'))
    .sort()
    .map((name) => ({ name, code: code(readFileSync(`${SQL_DIR}/${name}`, 'utf8')) }));
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

/** Every file under these folders, and these files, may name others in comments and prose. */
const NAMING = ['sql', 'migrations', 'relay', 'api', 'tools', 'ops', 'page', 'test', 'bench', 'docs', 'README.md'];
const ROOT = new URL('../../', import.meta.url);

function filesUnder(path: string): string[] {
  const url = new URL(path, ROOT);
  if (!statSync(url).isDirectory()) return [path];
  return readdirSync(url, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(`${path}/${entry.name}`) : /\.(ts|js|sql|md|html|css)$/.test(entry.name) ? [`${path}/${entry.name}`] : []);
}

test('every file of the engine that a comment or a doc names exists: no stale references', (t) => {
  const stale: string[] = [];
  for (const file of NAMING.flatMap(filesUnder)) {
    const text = readFileSync(new URL(file, ROOT), 'utf8');
    for (const [named] of text.matchAll(/\b(?:(?:relay|api|tools|test|bench|ops|page|docs|migrations|sql)\/[\w./-]+\.(?:ts|js|md|sql|html|css)|\d\d_\w+\.sql|\d{4}_\w+\.sql)\b/g)) {
      const path = /^\d\d_/.test(named) ? `sql/${named}` : /^\d{4}_/.test(named) ? `migrations/${named}` : named;
      if (!existsSync(new URL(path, ROOT))) stale.push(`${file} names ${named}`);
    }
  }
  t.deepEqual([...new Set(stale)], []);
});
