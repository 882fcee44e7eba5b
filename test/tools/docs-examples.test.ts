// The docs' walk-throughs, run as they are written: a reader who copies them after
// `npm start` and `npm run demo` gets the answers the text shows. The text is read
// from the files, so an example that drifts from what the product does fails here.
import test from 'ava';
import { createHmac } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Webhook } from 'standardwebhooks';
import { getNamedType, isInputObjectType, isObjectType, Kind, parse, print, typeFromAST, type GraphQLSchema } from 'postgraphile/graphql';
import { seedDemo } from '../../tools/demo/seed.ts';
import { startTestApi } from '../helpers/api.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { section } from '../helpers/docs.ts';
import { factories } from '../helpers/factories.ts';
import { roundingSlack, rowsRead } from '../helpers/plans.ts';
import { relayScene, testRelay } from '../helpers/relay.ts';
import { apiSchema } from '../helpers/schema-inputs.ts';

/** Deliveries waiting for another company's webhook while a DBA asks of one company's backlog. */
const BUSY_BACKLOG = 5_000;
const BUSY_WEBHOOKS = 40;

const root = new URL('../../', import.meta.url);

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

/** The fenced blocks of a language in a text. */
function blocksOf(text: string, lang: string): string[] {
  return [...text.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].filter(([, l]) => l === lang).map(([, , body]) => body!);
}

/** An object's shape: its keys, and the shapes of the objects under them. */
function shapeOf(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return typeof value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, shapeOf((value as Record<string, unknown>)[key])]));
}

test("the README's SQL configures the webhook of its payload example: a tag added in BPD sends that payload's shape", async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const demo = await seedDemo(database.pool, 'http://127.0.0.1:1');

  const [configure] = blocksOf(section('README.md', '### Configuring a webhook in SQL'), 'sql');
  const { rows: [webhook] } = await database.pool.query(`${configure!.trim().replace(/;$/, '')} returning id, status_id`);
  const { rows: [tag] } = await database.pool.query(`select id from crm.statuses where company_id = $1 and name = 'Thank You Note'`, [demo.companyId]);
  t.is(webhook.status_id, tag.id, "the README's company and tag are the demo's");

  const client = await database.pool.connect();
  try {
    await client.query('begin');
    await client.query(`set local webhooks.source = 'platform'`);
    await client.query(`insert into crm.contact_statuses (contact_id, status_id)
      select min(id), $1 from crm.contacts where company_id = $2`, [tag.id, demo.companyId]);
    await client.query('commit');
  } finally {
    client.release();
  }
  const { rows: [delivery] } = await database.pool.query('select payload from webhooks.deliveries where webhook_id = $1', [webhook.id]);
  const [shown] = blocksOf(section('README.md', '### The payload'), 'json');
  const example = JSON.parse(shown!);
  t.deepEqual(shapeOf(delivery.payload), shapeOf(example));
  t.is(delivery.payload.type, example.type);
  t.is(delivery.payload.data.source, example.data.source);
});

test('every type a receiver may get (webhooks.action) is named in the README', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const { rows } = await database.pool.query('select unnest(enum_range(null::webhooks.action))::text as type');
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  t.deepEqual(rows.map((r) => r.type).filter((type) => !readme.includes(`\`${type}\``)), []);
});

/** A value of each scalar a doc's operation may declare a variable of. */
const SAMPLE_VALUES: Record<string, unknown> = {
  BigInt: '1', Datetime: '2026-01-01T00:00:00Z', Int: 1, String: 'x', Boolean: false,
};

/** Each operation of a GraphQL text alone, with a sample value for each variable it declares. */
function operationsOf(text: string, schema: GraphQLSchema): Array<{ query: string; variables: Record<string, unknown> }> {
  return parse(text).definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION).map((operation) => ({
    query: print(operation),
    variables: Object.fromEntries((operation.variableDefinitions ?? []).map((definition) => {
      const type = getNamedType(typeFromAST(schema, definition.type)!);
      return [definition.variable.name.value, SAMPLE_VALUES[type.name] ?? null];
    })),
  }));
}

test('every GraphQL example of the docs is a document the API takes: each operation parses and validates', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const demo = await seedDemo(database.pool, 'http://127.0.0.1:1');
  const api = await startTestApi(database.url);
  t.teardown(() => api.stop());
  const token = await api.token(String(demo.companyId));
  const schema = await apiSchema(api, token);

  const files = ['README.md', ...readdirSync(new URL('docs/', root)).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  let operations = 0;
  for (const file of files) {
    for (const text of blocksOf(readFileSync(new URL(file, root), 'utf8'), 'graphql')) {
      for (const { query, variables } of operationsOf(text, schema)) {
        operations++;
        const response = await api.gql(token, query, variables);
        const refusals = (response.errors ?? []).filter((e) => /^GRAPHQL_(PARSE|VALIDATION)_FAILED$/.test(String(e.extensions?.code)));
        t.deepEqual(refusals, [], `${file}: ${query}`);
      }
    }
  }
  t.true(operations >= 10, `${operations} operations found`);
});

/** The rows of a markdown table of a section: each row's cells. */
function tableRows(text: string): string[][] {
  return text.split('\n').filter((line) => line.startsWith('| `')).map((line) => line.slice(2, -2).split(' | '));
}

/** The backticked spans of a table cell. */
const spansOf = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map(([, span]) => span!);

test("docs/api.md's tables of queries and mutations name fields, arguments and inputs the schema has", async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const demo = await seedDemo(database.pool, 'http://127.0.0.1:1');
  const api = await startTestApi(database.url);
  t.teardown(() => api.stop());
  const schema = await apiSchema(api, await api.token(String(demo.companyId)));
  const query = schema.getQueryType()!.getFields();
  const mutation = schema.getMutationType()!.getFields();
  const missing: string[] = [];

  // `field(arg, arg)`, or `field(arg) { subfield }`
  const queries = tableRows(section('docs/api.md', '### Queries'));
  t.true(queries.length >= 15, `${queries.length} rows`);
  for (const [cell] of queries) {
    for (const span of spansOf(cell!)) {
      const [, name, args, subfield] = /^(\w+)(?:\(([^)]*)\))?(?: \{ (\w+) \})?$/.exec(span) ?? [];
      const field = name ? query[name] : undefined;
      if (!field) {
        missing.push(`Query.${span}`);
        continue;
      }
      for (const arg of args ? args.split(', ') : []) if (!field.args.some((a) => a.name === arg)) missing.push(`Query.${name}(${arg})`);
      const type = getNamedType(field.type);
      if (subfield && !(isObjectType(type) && type.getFields()[subfield])) missing.push(`${type.name}.${subfield}`);
    }
  }

  // the input cell: `a, b, c?`, `clearStatusId: true` / …
  const mutations = tableRows(section('docs/api.md', '### Mutations (admins only)'));
  t.true(mutations.length >= 10, `${mutations.length} rows`);
  for (const [cell, inputs] of mutations) {
    const name = spansOf(cell!)[0]!;
    const field = mutation[name];
    const input = field && getNamedType(field.args.find((a) => a.name === 'input')!.type);
    if (!field || !isInputObjectType(input)) {
      missing.push(`Mutation.${name}`);
      continue;
    }
    // its first sentence names the input; the rest may name other operations
    for (const span of spansOf(inputs!.split('. ')[0]!)) {
      for (const word of span.split(', ').map((w) => w.replace(/\?$|: true$/, ''))) {
        if (/^[a-z]\w*$/.test(word) && !input.getFields()[word]) missing.push(`${name}(input: { ${word} })`);
      }
    }
  }
  // every query the API has is named in the section (`query`, the root itself, aside)
  const operations = section('docs/api.md', '## Every operation');
  for (const name of Object.keys(query)) if (name !== 'query' && !new RegExp(`\`${name}\\b`).test(operations)) missing.push(`Query.${name} (not named)`);
  const listed = new Set(mutations.map(([cell]) => spansOf(cell!)[0]));
  for (const name of Object.keys(mutation)) if (!listed.has(name)) missing.push(`Mutation.${name} (no row)`);
  t.deepEqual(missing, []);
});

test("docs/sql.md names every table of webhooks_private that a role is granted", async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  // (the table, or some of its columns)
  const { rows } = await database.pool.query(`
    select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'webhooks_private' and c.relkind in ('r', 'p', 'v', 'm')
      and (exists (select from aclexplode(c.relacl) a where a.grantee <> c.relowner)
           or exists (select from pg_attribute col, aclexplode(col.attacl) a
                      where col.attrelid = c.oid and a.grantee <> c.relowner))
    order by 1`);
  const [row] = section('docs/sql.md', '## Schemas').split('\n').filter((line) => line.startsWith('| `webhooks_private` |'));
  const [, named = ''] = /no table is granted to anyone(?: but ([^;|]*))?/.exec(row ?? '') ?? [];
  t.deepEqual([...named.matchAll(/`(\w+)`/g)].map(([, name]) => name).filter((name) => !/^webhook_(viewer|admin)$|^bpd_/.test(name!)).sort(), rows.map((r) => r.relname));
});

test('every SQL example of the docs runs after npm run demo, each in a transaction rolled back', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  await seedDemo(database.pool, 'http://127.0.0.1:1');
  const files = ['README.md', ...readdirSync(new URL('docs/', root)).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  const client = await database.pool.connect();
  t.teardown(() => client.release());
  let examples = 0;
  for (const file of files) {
    for (const text of blocksOf(readFileSync(new URL(file, root), 'utf8'), 'sql')) {
      examples++;
      await client.query('begin');
      try {
        // a role an example configures is the reader's own: made here, gone with the rollback
        for (const [, role] of text.matchAll(/alter role (\w+)/g)) await client.query(`create role ${role}`);
        await client.query(text);
        t.pass();
      } catch (error) {
        t.fail(`${file}: ${text}\n→ ${(error as Error).message}`);
      } finally {
        await client.query('rollback');
      }
    }
  }
  t.true(examples >= 8, `${examples} examples found`);
});

test("docs/relay.md's two ways of verifying a signature, run as written, verify a delivery the relay sent", async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, url: receiver.route('/hook'), actions: ['contact.created'] });
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id, { first_name: 'Grace' });
  const [delivery] = await receiver.waitFor(1, { path: '/hook' });
  const headers = delivery!.headers as Record<string, string>;

  const text = section('docs/relay.md', '## What the receiver gets');
  // the recipe in words: base64 HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>.<body>`,
  // keyed with the base64-decoded part of the secret after `whsec_`
  t.regex(text, /base64 HMAC-SHA256 of\s+`<webhook-id>\.<webhook-timestamp>\.<body>`, keyed with the base64-decoded part of the\s+webhook's secret after `whsec_`/);
  const key = Buffer.from(webhook.secret.slice('whsec_'.length), 'base64');
  const signature = createHmac('sha256', key).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${delivery!.body}`).digest('base64');
  t.true(headers['webhook-signature']!.split(' ').includes(`v1,${signature}`), headers['webhook-signature']);

  // the snippet with the standardwebhooks package, its import given
  const [snippet] = blocksOf(section('docs/relay.md', '## Verifying a signature (receiving side)'), 'js');
  const body = snippet!.replace(/^import .*$/m, '') + '\nreturn event;';
  const verify = new Function('Webhook', 'process', 'rawBody', 'req', body);
  const event = verify(Webhook, { env: { BPD_WEBHOOK_SECRET: webhook.secret } }, delivery!.body, { headers });
  t.is(event.type, 'contact.created');
  t.is(event.data.contact.first_name, 'Grace');
  const forged = { headers: { ...headers, 'webhook-signature': `v1,${Buffer.alloc(32).toString('base64')}` } };
  t.throws(() => verify(Webhook, { env: { BPD_WEBHOOK_SECRET: webhook.secret } }, delivery!.body, forged));
});

test("docs/sql.md's backlog of one company, run as written, answers what webhooks.backlog_by_webhook() answers: in flight apart from due and later; it reads that company's queue, not another's backlog", async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const row = section('docs/sql.md', '## Reading fire history').split('\n').find((line) => line.startsWith('| What is waiting to be sent'));
  const [, query] = /for one company `([^`]+)`/.exec(row ?? '') ?? [];
  t.truthy(query, "the table's row of the backlog names a query for one company");
  const f = factories(database.pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await database.pool.query(`insert into crm.contacts (company_id, first_name) select $1, 'C' || n from generate_series(1, 6) n`, [company.id]);
  // two in flight (their first attempt), one due later (a retry waiting), three due now
  const claimed = await database.pool.query(
    `select delivery_id from webhooks_relay.claim_deliveries('docs-relay', 2, '5 minutes', 2, p_only_webhooks => array[$1::bigint])`, [webhook.id]);
  t.is(claimed.rowCount, 2);
  await database.pool.query(
    `update webhooks.deliveries set next_attempt_at = now() + interval '1 hour'
     where id = (select min(id) from webhooks.deliveries where webhook_id = $1 and state = 'pending')`, [webhook.id]);

  // another company's backlog, far larger than this one's (its receivers down for hours)
  const busy = await f.company();
  for (let i = 0; i < BUSY_WEBHOOKS; i++) await f.webhook({ companyId: busy.id, actions: ['contact.created'] });
  await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
     select w.id, w.company_id, 'contact.created', n, '{}' from webhooks.webhooks w, generate_series(1, $2::int) n
     where w.company_id = $1`, [busy.id, BUSY_BACKLOG / BUSY_WEBHOOKS]);
  await database.pool.query('analyze webhooks.delivery_queue');

  const asked = query!.replace(/company_id = 7\b/, `company_id = ${Number(company.id)}`);
  const { rows: [byHand] } = await database.pool.query(asked);
  const { rows: [byFunction] } = await database.pool.query(
    'select due, later, in_flight from webhooks.backlog_by_webhook() where webhook_id = $1', [webhook.id]);
  t.deepEqual(byFunction, { due: '3', later: '1', in_flight: '2' });
  t.like(byHand, { id: webhook.id, ...byFunction });
  const { rows: [{ 'QUERY PLAN': [explained] }] } = await database.pool.query(`explain (analyze, format json) ${asked}`);
  const read = rowsRead(explained.Plan).get('delivery_queue') ?? 0;
  t.true(read <= 6 + (roundingSlack(explained.Plan).get('delivery_queue') ?? 0), `queue rows read: ${read}, of the company's 6 and ${6 + BUSY_BACKLOG} queued`);
});
