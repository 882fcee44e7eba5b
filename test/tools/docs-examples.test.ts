// The docs' walk-throughs, run as they are written: a reader who copies them after
// `npm start` and `npm run demo` gets the answers the text shows. The text is read
// from the files, so an example that drifts from what the product does fails here.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { seedDemo } from '../../tools/demo/seed.ts';
import { startTestApi } from '../helpers/api.ts';
import { createTestDatabase } from '../helpers/db.ts';

const root = new URL('../../', import.meta.url);

/**
 * A markdown file's section: from its heading to the next heading of its level or
 * above (a `# ` line inside a code block is a shell comment, not a heading).
 */
function section(path: string, heading: string): string {
  const lines = readFileSync(new URL(path, root), 'utf8').split('\n');
  const level = /^#+/.exec(heading)![0].length;
  const start = lines.indexOf(heading);
  if (start < 0) throw new Error(`${path} has no section "${heading}"`);
  let inCode = false;
  let end = start + 1;
  for (; end < lines.length; end++) {
    if (lines[end]!.startsWith('```')) inCode = !inCode;
    const hashes = /^(#+) /.exec(lines[end]!)?.[1];
    if (!inCode && hashes && hashes.length <= level) break;
  }
  return lines.slice(start + 1, end).join('\n');
}

type Step = { kind: 'gql'; query: string; answer: string } | { kind: 'sql'; text: string };

/**
 * The session's steps in order: each `gql '…'` of its sh blocks with the answer shown
 * after it (its `# ` lines), and each sql block.
 */
function sessionSteps(text: string): Step[] {
  const steps: Step[] = [];
  for (const [, lang, body] of text.matchAll(/^```(\w+)\n([\s\S]*?)^```$/gm)) {
    if (lang === 'sql') {
      steps.push({ kind: 'sql', text: body! });
      continue;
    }
    const lines = body!.split('\n');
    for (let i = 0; i < lines.length; i++) {
      if (!lines[i]!.startsWith("gql '")) continue;
      let query = lines[i]!.slice(5);
      while (!query.endsWith("'")) query += `\n${lines[++i]}`;
      const answer: string[] = [];
      while (lines[i + 1]?.startsWith('# ')) answer.push(lines[++i]!.slice(2).trim());
      steps.push({ kind: 'gql', query: query.slice(0, -1), answer: answer.join('') });
    }
  }
  return steps;
}

// what differs from run to run, and what the text shortens ("…")
const VARYING = new Set(['secret', 'createdAt', 'disabledAt', 'messageId', 'endCursor', 'timestamp']);

/** The `"key":value` pairs of a shown answer that any run answers the same. */
function fixedPairs(answer: string): string[] {
  return [...answer.matchAll(/"(\w+)":("[^"]*"|-?\d+|true|false|null)/g)]
    .filter(([, key, value]) => !VARYING.has(key!) && !value!.includes('…'))
    .map(([, key, value]) => `"${key}":${value}`);
}

test("docs/api.md's session runs as written after npm run demo: every answer is the one it shows", async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await seedDemo(database.pool, 'http://127.0.0.1:1');
  const api = await startTestApi(database.url);
  t.teardown(() => api.stop());

  const text = section('docs/api.md', '## A session: token to report');
  const [, company, sub] = /npm run -s token -- --company (\d+) --sub (\S+?)\)/.exec(text) ?? [];
  t.truthy(company, 'the session makes a token');
  const token = await api.token(company!, 'webhook_admin', sub);

  const steps = sessionSteps(text);
  t.true(steps.filter((s) => s.kind === 'gql').length >= 5, 'the session reads as a list of requests');
  for (const step of steps) {
    if (step.kind === 'sql') {
      await database.pool.query(step.text);
      continue;
    }
    const response = await api.gql(token, step.query);
    const answer = JSON.stringify({ data: response.data, errors: response.errors });
    t.is(response.errors !== undefined, step.answer.includes('"errors":'), `${step.query}\n→ ${answer}`);
    for (const pair of fixedPairs(step.answer)) t.true(answer.includes(pair), `${step.query}\n→ ${answer}\nshows ${pair}`);
  }
});
