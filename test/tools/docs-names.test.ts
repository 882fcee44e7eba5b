// What the docs name must exist: the headings their links point to, the files they
// cite, the error codes a client may meet, the environment variables and the defaults
// their tables give. Each is read from the files and from the code itself, so a
// rename or a new code that the text does not follow fails here.
import test from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UNAUTHENTICATED_CODE } from '../../api/auth.ts';
import { NAMED_ERROR_CODES } from '../../api/errors.ts';
import { DEFAULT_LIMITS, LIMIT_CODES, LIMIT_SETTINGS } from '../../api/limits.ts';
import { EXPECTED_MIGRATION } from '../../ops/operations.ts';
import { ENVIRONMENT } from '../../relay/settings.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(join(root, file), 'utf8');
const DOCS = ['README.md', 'BENCHMARKS.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** A file's lines outside fenced code blocks, with their numbers. */
function proseLines(file: string): Array<[number, string]> {
  let inCode = false;
  const lines: Array<[number, string]> = [];
  read(file).split('\n').forEach((line, i) => {
    if (line.startsWith('```')) inCode = !inCode;
    else if (!inCode) lines.push([i + 1, line]);
  });
  return lines;
}

/** The anchors of a markdown file's headings, as GitHub makes them. */
function anchorsOf(file: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const [, line] of proseLines(file)) {
    const heading = /^#{1,6} (.*)$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const slug = heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/ /g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return anchors;
}

test('every link of the docs to a file of the repository reaches it, and the heading it names', (t) => {
  const broken: string[] = [];
  for (const file of DOCS) {
    for (const [number, line] of proseLines(file)) {
      for (const [, href] of line.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(href!)) continue;
        const [path, anchor] = href!.split('#');
        const target = path ? normalize(join(dirname(file), path)) : file;
        if (!existsSync(join(root, target))) broken.push(`${file}:${number} ${href}: no file ${target}`);
        else if (anchor && target.endsWith('.md') && !anchorsOf(target).has(anchor)) broken.push(`${file}:${number} ${href}: no heading`);
      }
    }
  }
  t.deepEqual(broken, []);
});

test('every file of the repository the docs name exists', (t) => {
  const missing: string[] = [];
  for (const file of DOCS) {
    read(file).split('\n').forEach((line, i) => {
      for (const [, path] of line.matchAll(/(?<![\w./-])((?:sql|migrations|relay|api|ops|page|tools|test|bench|docs)\/[\w./-]+\.(?:ts|sql|js|css|html|md))\b/g)) {
        if (!existsSync(join(root, path!))) missing.push(`${file}:${i + 1} ${path}`);
      }
    });
  }
  t.deepEqual(missing, []);
});

test('every error code the API answers with is named in docs/api.md or docs/api-limits.md', (t) => {
  const text = read('docs/api.md') + read('docs/api-limits.md');
  const codes = [...Object.values(LIMIT_CODES), ...NAMED_ERROR_CODES, UNAUTHENTICATED_CODE];
  // as a code alone (`TOO_MANY_REQUESTS`) or in an answer shown (code: "TRY_AGAIN")
  t.deepEqual(codes.filter((code) => !text.includes(`\`${code}\``) && !text.includes(`"${code}"`)), []);
});

/** Whether a line names a source file that exports a constant of that name (`X`, api/server.ts). */
function citesConstant(line: string, name: string): boolean {
  return [...line.matchAll(/\b((?:api|relay|ops|tools)\/[\w-]+\.ts)\b/g)]
    .some(([, path]) => existsSync(join(root, path!)) && read(path!).includes(`export const ${name} `));
}

test("every API_ and RELAY_ name the docs give is a variable the API's or the relay's settings read, or a constant shown with its file", (t) => {
  const known = new Set<string>([...Object.values(LIMIT_SETTINGS), ...Object.keys(ENVIRONMENT)]);
  const unknown: string[] = [];
  for (const file of DOCS) {
    read(file).split('\n').forEach((line, i) => {
      for (const [, name] of line.matchAll(/`((?:API|RELAY)_[A-Z0-9_]+)`/g)) {
        if (!known.has(name!) && !citesConstant(line, name!)) unknown.push(`${file}:${i + 1} ${name}`);
      }
    });
  }
  t.deepEqual(unknown, []);
});

/** The rows of a markdown table whose last (or given) cell names a variable: variable → cells. */
function rowsByVariable(file: string, pattern: RegExp, column: (cells: string[]) => string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const [, line] of proseLines(file)) {
    if (!line.startsWith('| ')) continue;
    const cells = line.slice(2, -2).split(' | ');
    const name = pattern.exec(column(cells))?.[1];
    if (name && !rows.has(name)) rows.set(name, cells);
  }
  return rows;
}

test("docs/relay.md's table of settings has a row for each variable, with the relay's default where it gives one", (t) => {
  const rows = rowsByVariable('docs/relay.md', /^`([A-Z][A-Z0-9_]+)`$/, (cells) => cells[0]!);
  for (const [name, { default: value }] of Object.entries(ENVIRONMENT)) {
    const row = rows.get(name);
    if (!row) {
      t.fail(`docs/relay.md has no row for ${name}`);
      continue;
    }
    // a default written as one value is the code's; words (`(none)`, `npm start`'s) explain an empty one
    const shown = /^`([^`]*)`( \(.*\))?$/.exec(row[1]!)?.[1];
    if (shown !== undefined && value !== '') t.is(shown, value, name);
  }
});

/** A limit's default as docs/api-limits.md writes it: `100,000 bytes`, `5,000 ms`, `20 a second`, `4 MiB`. */
function limitValue(cell: string): number | undefined {
  const match = /^([\d,]+)( MiB)?( bytes| ms)?( a second| ms a second)?$/.exec(cell);
  if (!match) return undefined;
  return Number(match[1]!.replaceAll(',', '')) * (match[2] ? 1024 * 1024 : 1);
}

test("docs/api-limits.md's table gives each limit the API's default, and names every setting", (t) => {
  const rows = rowsByVariable('docs/api-limits.md', /^`(API_[A-Z0-9_]+)`$/, (cells) => cells.at(-1)!);
  for (const [key, name] of Object.entries(LIMIT_SETTINGS)) {
    const row = rows.get(name);
    if (!row) {
      t.fail(`docs/api-limits.md has no row for ${name}`);
      continue;
    }
    t.is(limitValue(row[1]!), DEFAULT_LIMITS[key as keyof typeof DEFAULT_LIMITS], `${name}: ${row[1]}`);
  }
});

test("docs/relay.md's table of the relay's parts has a row for each file of relay/, and no other", (t) => {
  const rows = proseLines('docs/relay.md').map(([, line]) => /^\| `([\w-]+\.ts)` \|/.exec(line)?.[1]).filter(Boolean).sort();
  t.deepEqual(rows, readdirSync(join(root, 'relay')).filter((f) => f.endsWith('.ts')).sort());
});

test("a /readyz answer the docs show names the migration this code expects", (t) => {
  const shown = DOCS.flatMap((file) => [...read(file).matchAll(/"migration":"(\w+)"/g)].map(([, name]) => `${file}: ${name}`));
  t.true(shown.length > 0);
  t.deepEqual(shown.filter((line) => !line.endsWith(`: ${EXPECTED_MIGRATION}`)), []);
});

// The example alert rules an operator copies name metrics: a metric renamed or dropped
// in the code leaves a rule that matches nothing and never fires, silently.
test("every metric docs/operations.md's example alert rules name is one the relay, the API or the operations routes register", (t) => {
  const text = read('docs/operations.md');
  const start = text.indexOf('## Example alert rules');
  const rules = text.slice(start, text.indexOf('\n```\n', text.indexOf('```yaml', start)));
  const named = [...new Set([...rules.matchAll(/\bbpd_webhooks_\w+/g)].map(([name]) => name))];
  t.true(named.length > 5, named.join(' '));
  const code = ['relay', 'api', 'ops'].flatMap((dir) => readdirSync(join(root, dir)).filter((f) => f.endsWith('.ts')).map((f) => read(`${dir}/${f}`))).join('\n');
  t.deepEqual(named.filter((name) => !code.includes(`'${name}'`)), []);
});
