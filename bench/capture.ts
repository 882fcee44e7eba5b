// `npm run bench:capture`: what the capture triggers cost a contact UPDATE.
//
// 8 concurrent clients (pgbench) update random contacts among 10,000 of 100 companies,
// with 1,000 webhooks, in four set-ups measured in the same run on the same server:
//   baseline      no triggers at all on crm.contacts
//   empty trigger a trigger that does nothing (the floor any trigger pays)
//   no match      the engine, where no webhook of the contact's companies wants updates
//                 (webhooks of other companies do, so the cheap first check passes)
//   every match   the engine, every update matching exactly one webhook (a delivery
//                 row, its payload, and a NOTIFY per transaction); again after the
//                 CRM added a column to contacts that sql/ was not applied for (the
//                 way capture takes until then: a jsonb diff, payloads from the keys)
//   conditions    the same webhook with conditions (docs/filters.md) that hold, and
//                 conditions that fail (nothing written: the cost of asking), each
//                 also as a ratio to its reference (every match, no match) and beside
//                 the conditions' evaluation alone, timed in the same session
//   Hasura-style  the peer: one AFTER UPDATE trigger writing the old and new rows as
//                 JSON to an event-log row with a text uuid key and a partial index on
//                 undelivered rows, as Hasura's event triggers do; "as generated" with
//                 Hasura's second function (insert_event_log) and the subtransaction
//                 its trigger opens per row, "lean" as one plain function
// Each set-up runs on a fresh clone of the same data, ROUNDS times, interleaved; the
// median rate is reported with its ratio to the baseline's. A round of nine set-ups
// takes about three minutes, and this machine's speed drifts over minutes (the empty
// trigger alone came out at 0.85–1.05× no triggers), so the targets' ratios are also
// taken in pairs: the two set-ups of a target (no match and no triggers, every match
// and the Hasura-style trigger, …) run in short slices back to back, A B then B A, and
// each adjacent pair gives a ratio; their median is reported beside its range.
//
// The server runs with Postgres's default, durable settings (BENCH_FAST=1 turns off
// fsync and synchronous_commit, which shows the triggers' CPU cost more starkly).
// Two more figures are less disturbed by a busy machine, each from one session: the
// time of each single UPDATE statement inside one transaction (min and median of
// 2,000), i.e. what the triggers add to the statement itself; and the session's own
// CPU time per update committed one by one (5,000 in a loop, read from /proc; the
// lowest of the rounds), i.e. what the triggers cost Postgres per transaction as
// pgbench's clients pay it, without the clients, the network and the scheduling of
// eight sessions on the machine's cores. (On a virtual machine the host's steal still
// counts as the session's time, and only makes it longer: hence the lowest.)
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { startEmbeddedPostgres } from '../tools/embedded-postgres.ts';
import { migrate } from '../tools/migrate.ts';

const run = promisify(execFile);
const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 1 : 3;
const SECONDS = quick ? 4 : 10;
// the paired slices: how many pairs of each target's two set-ups (odd: a median of
// its own), and how long a slice
const PAIRED_SLICES = quick ? 3 : 7;
const SLICE_SECONDS = quick ? 3 : 4;
const CLIENTS = 8;
const COMPANIES = 100;
const CONTACTS = 10_000;
const WEBHOOKS_PER_COMPANY = 10;
// the contacts every set-up updates: those of companies 1..50
const UPDATED_CONTACTS = CONTACTS / 2;

const OTHER_ACTIONS = "'{contact.created,contact.deleted,contact.status_added}'";
const ENGINE_TRIGGERS = ['"!webhooks_created"', '"!webhooks_updated"', '"!webhooks_deleted"'];

const DROP_ENGINE = ENGINE_TRIGGERS.map((t) => `drop trigger ${t} on crm.contacts;`).join('\n');

// Hasura's event log (hdb_catalog.event_log) and the index its fetch uses, in a schema
// of their own
const HASURA_EVENT_LOG = `
  ${DROP_ENGINE}
  create schema hasura_style;
  create table hasura_style.event_log (
    id            text default gen_random_uuid()::text primary key,
    schema_name   text not null,
    table_name    text not null,
    trigger_name  text not null,
    payload       jsonb not null,
    delivered     boolean not null default false,
    error         boolean not null default false,
    tries         integer not null default 0,
    created_at    timestamp default now(),
    locked        timestamptz,
    next_retry_at timestamp,
    archived      boolean not null default false
  );
  create index event_log_trigger_name_idx on hasura_style.event_log (trigger_name);
  create index event_log_fetch_events on hasura_style.event_log (locked nulls first, next_retry_at nulls first, created_at)
    where delivered = false and error = false and archived = false;`;

// a webhook of each company's on contact.updated, with conditions
const matchingWebhooks = (conditions: string) => `
    insert into webhooks.webhooks (company_id, name, url, fields, actions, conditions)
    select c, 'hook ' || n, 'https://example.com/' || c || '/' || n, '{first_name,email,city}',
           case when n = 1 then '{contact.updated}' else ${OTHER_ACTIONS} end::webhooks.action[],
           case when n = 1 then '${conditions}'::jsonb end
    from generate_series(1, ${COMPANIES}) c, generate_series(1, ${WEBHOOKS_PER_COMPANY}) n;`;
// what the script writes holds the first, never the second (state is never set)
const CONDITIONS_HOLD = '{"all": [{"field": "city", "op": "starts_with", "value": "city"}, {"field": "email", "op": "contains", "value": "@example.com"}]}';
const CONDITIONS_FAIL = '{"all": [{"field": "state", "op": "in", "value": ["VA", "MD", "DC"]}, {"field": "email", "op": "contains", "value": "@example.com"}]}';

const BASELINE = 'baseline (no trigger)';
const NO_MATCH = 'engine, no webhook wants it';
const MATCH = 'engine, every update matches one';
const MATCH_NEW_COLUMN = 'engine, every update matches one, a contact column added since sql/ was applied';
const HOLD = 'engine, every update matches one, conditions hold';
const FAIL = 'engine, a webhook listens, its conditions fail';
const HASURA = 'Hasura-style event trigger, as generated';
const HASURA_LEAN = 'Hasura-style event trigger, lean';

const setups: Record<string, string> = {
  [BASELINE]: DROP_ENGINE,
  'empty trigger': `
    ${DROP_ENGINE}
    create function bench_nothing() returns trigger language plpgsql as $$ begin return null; end $$;
    create trigger _500_nothing after update on crm.contacts for each row execute function bench_nothing();`,
  [NO_MATCH]: `
    insert into webhooks.webhooks (company_id, name, url, fields, actions)
    select c, 'hook ' || n, 'https://example.com/' || c || '/' || n, '{first_name,email,city}',
           case when c > 50 then '{contact.updated}' else ${OTHER_ACTIONS} end::webhooks.action[]
    from generate_series(1, ${COMPANIES}) c, generate_series(1, ${WEBHOOKS_PER_COMPANY}) n;`,
  [MATCH]: `
    insert into webhooks.webhooks (company_id, name, url, fields, actions)
    select c, 'hook ' || n, 'https://example.com/' || c || '/' || n, '{first_name,email,city}',
           case when n = 1 then '{contact.updated}' else ${OTHER_ACTIONS} end::webhooks.action[]
    from generate_series(1, ${COMPANIES}) c, generate_series(1, ${WEBHOOKS_PER_COMPANY}) n;`,
  [MATCH_NEW_COLUMN]: `
    insert into webhooks.webhooks (company_id, name, url, fields, actions)
    select c, 'hook ' || n, 'https://example.com/' || c || '/' || n, '{first_name,email,city}',
           case when n = 1 then '{contact.updated}' else ${OTHER_ACTIONS} end::webhooks.action[]
    from generate_series(1, ${COMPANIES}) c, generate_series(1, ${WEBHOOKS_PER_COMPANY}) n;
    alter table crm.contacts add column ssn text;`,
  [HOLD]: matchingWebhooks(CONDITIONS_HOLD),
  [FAIL]: matchingWebhooks(CONDITIONS_FAIL),
  // Hasura's generated trigger: both rows as JSON, a row comparison, and the insert in
  // a second function called inside a BEGIN ... EXCEPTION block (a subtransaction)
  [HASURA]: `
    ${HASURA_EVENT_LOG}
    create function hasura_style.insert_event_log(p_schema text, p_table text, p_trigger text, p_op text, p_data json)
    returns text language plpgsql as $$
    declare
      v_id text := gen_random_uuid()::text;
    begin
      insert into hasura_style.event_log (id, schema_name, table_name, trigger_name, payload)
      values (v_id, p_schema, p_table, p_trigger,
              json_build_object('op', p_op, 'data', p_data,
                                'session_variables', current_setting('hasura.user', true)::json,
                                'trace_context', current_setting('hasura.tracecontext', true)::json));
      return v_id;
    end $$;
    create function hasura_style.notify_contacts_update() returns trigger language plpgsql as $$
    declare
      v_data json;
    begin
      v_data := json_build_object('old', row_to_json(old), 'new', row_to_json(new));
      begin
        if old is distinct from new then
          perform hasura_style.insert_event_log(tg_table_schema, tg_table_name, 'contacts_update', tg_op, v_data);
        end if;
      exception when undefined_function then
        perform hasura_style.insert_event_log(tg_table_schema, tg_table_name, 'contacts_update', tg_op, v_data);
      end;
      return null;
    end $$;
    create trigger contacts_update after update on crm.contacts
      for each row execute function hasura_style.notify_contacts_update();`,
  // the same event row from one plain function: the cheapest form of the idea
  [HASURA_LEAN]: `
    ${HASURA_EVENT_LOG}
    create function hasura_style.notify_contacts_update() returns trigger language plpgsql as $$
    begin
      insert into hasura_style.event_log (schema_name, table_name, trigger_name, payload)
      values (tg_table_schema, tg_table_name, 'contacts_update',
              json_build_object('op', tg_op, 'data', json_build_object('old', row_to_json(old), 'new', row_to_json(new)),
                                'session_variables', current_setting('hasura.user', true)::json));
      return null;
    end $$;
    create trigger contacts_update after update on crm.contacts
      for each row execute function hasura_style.notify_contacts_update();`,
};

// --only=REGEX runs the baseline and the set-ups whose names match (for profiling)
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
if (only) {
  const pattern = new RegExp(only, 'i');
  for (const name of Object.keys(setups).slice(1)) if (!pattern.test(name)) delete setups[name];
}

// each target's two set-ups, the reference first; the ratio is the second's rate over
// the first's
const PAIRS: Array<{ reference: string; measured: string; target: string; least: number }> = [
  { reference: BASELINE, measured: 'empty trigger', target: '≈ 0.95 (floor)', least: 0 },
  { reference: BASELINE, measured: NO_MATCH, target: '≥ 0.90', least: 0.9 },
  { reference: BASELINE, measured: MATCH, target: '≥ 0.75', least: 0.75 },
  { reference: HASURA, measured: MATCH, target: '≥ 1.10', least: 1.1 },
].filter((pair) => pair.reference in setups && pair.measured in setups);

const data = `
  insert into crm.companies (id, name) select c, 'Company ' || c from generate_series(1, ${COMPANIES}) c;
  -- contacts 1..100 belong to company 1, 101..200 to company 2, ...
  insert into crm.contacts (id, company_id, first_name, last_name, email, city)
  select i, (i - 1) / ${CONTACTS / COMPANIES} + 1, 'First' || i, 'Last' || i, 'c' || i || '@example.com', 'Town'
  from generate_series(1, ${CONTACTS}) i;`;

const script = `\\set id random(1, ${UPDATED_CONTACTS})
\\set n random(1, 1000000000)
update crm.contacts set city = 'City ' || :n where id = :id;
`;

async function main() {
  const dataDir = await mkdtemp(join(tmpdir(), 'bpd-bench-capture-'));
  const server = await startEmbeddedPostgres({ dataDir, fast: process.env.BENCH_FAST === "1" });
  const scriptFile = join(dataDir, '..', `bpd-bench-capture-${process.pid}.sql`);
  await writeFile(scriptFile, script);
  try {
    const admin = new pg.Client({ connectionString: server.url() });
    admin.on('error', () => {}); // the server's stop at the end ends this session too
    await admin.connect();
    await admin.query('create database bench_template');
    await migrate(server.url('bench_template'));
    await sql(server.url('bench_template'), data);
    await sql(server.url('bench_template'), 'vacuum analyze');

    const rates: Record<string, number[]> = Object.fromEntries(Object.keys(setups).map((name) => [name, []]));
    const statementTimes: Record<string, { min: number; median: number }> = {};
    const committedCpu: Record<string, number[]> = Object.fromEntries(Object.keys(setups).map((name) => [name, []]));
    const evaluationTimes: Record<string, EvaluationTimes> = {};
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, setup] of Object.entries(setups)) {
        await cloneWithSetup(admin, server.url('bench_run'), setup);
        const tps = await pgbench(server.url('bench_run'), scriptFile);
        rates[name].push(tps);
        if (round === 1) statementTimes[name] = await timeStatements(server.url('bench_run'));
        committedCpu[name].push(await cpuPerCommittedUpdate(server.url('bench_run')));
        if (round === 1 && (name === FAIL || name === HOLD)) evaluationTimes[name] = await timeEvaluation(server.url('bench_run'), name === FAIL);
        process.stderr.write(`round ${round}: ${name}: ${tps.toFixed(0)} updates/s\n`);
      }
    }
    const paired: number[][] = [];
    for (const pair of PAIRS) {
      paired.push(await pairedRatios(admin, server.url('bench_pair_a'), server.url('bench_pair_b'), scriptFile, pair.reference, pair.measured));
    }
    await admin.end();
    report(rates, statementTimes, committedCpu, evaluationTimes);
    reportPaired(paired);
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(scriptFile, { force: true });
  }
}

// A fresh clone of the bench's data at url (its database made again), with a set-up.
async function cloneWithSetup(admin: pg.Client, url: string, setup: string) {
  const database = new URL(url).pathname.slice(1);
  await admin.query(`drop database if exists ${database} with (force)`);
  await admin.query(`create database ${database} template bench_template strategy file_copy`);
  await sql(url, setup);
  await sql(url, 'vacuum analyze');
}

async function sql(url: string, text: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

// Times 2,000 single UPDATE statements in one transaction (rolled back), in microseconds.
// The city written starts with "City", as pgbench's does: the conditions that hold
// must hold here too.
async function timeStatements(url: string): Promise<{ min: number; median: number }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('begin');
    await client.query(`
      do $$
      declare t0 timestamptz; took float8[] := '{}';
      begin
        for i in 1..2000 loop
          t0 := clock_timestamp();
          update crm.contacts set city = 'City timed ' || i where id = 1 + (i * 7919) % ${UPDATED_CONTACTS};
          took := took || extract(epoch from clock_timestamp() - t0) * 1e6;
        end loop;
        perform set_config('bench.took', (select format('%s %s', min(x), percentile_cont(0.5) within group (order by x)) from unnest(took) x), true);
      end $$`);
    const { rows } = await client.query("select current_setting('bench.took') as took");
    const [min, median] = String(rows[0].took).split(' ').map(Number);
    await client.query('rollback');
    return { min, median };
  } finally {
    await client.end();
  }
}

// The session's CPU time (from /proc/<pid>/schedstat, the time the scheduler ran it,
// in nanoseconds: the server runs on this machine) per UPDATE, each committed on its
// own, in microseconds: 5,000 in one DO loop, after 500 not counted (the session's
// first calls plan and compile), with synchronous_commit off: a commit that waits for
// its flush would add the disk's time to the session's (system CPU in fdatasync),
// which varies more than the triggers.
const COMMITTED_UPDATES = 5_000;

async function cpuPerCommittedUpdate(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query('select pg_backend_pid() as pid');
    await client.query('set synchronous_commit = off');
    const cpu = async () => Number((await readFile(`/proc/${rows[0].pid}/schedstat`, 'utf8')).split(' ')[0]) / 1_000;
    const loop = (first: number, count: number) => client.query(`
      do $$
      begin
        for i in ${first}..${first + count - 1} loop
          update crm.contacts set city = 'City committed ' || i where id = 1 + (i * 7919) % ${UPDATED_CONTACTS};
          commit;
        end loop;
      end $$`);
    await loop(1, 500);
    const before = await cpu();
    await loop(501, COMMITTED_UPDATES);
    return ((await cpu()) - before) / COMMITTED_UPDATES;
  } finally {
    await client.end();
  }
}

// Times the conditions' evaluation alone, two ways, in microseconds (min, median):
// - inQuery: as a query pays it (the contact as JSON, the call, the walk), the probe's
//   query on one contact row with and without the condition term, interleaved;
// - inTrigger (conditions that fail only: for those that hold, the difference would
//   be a whole match): as the capture trigger pays it, UPDATE statements whose webhook
//   turns the change away by its source, before its conditions (ignore_sources, set
//   inside this rolled-back transaction), against the same UPDATEs evaluating them.
// Each is a difference of 2,000 interleaved timings.
interface EvaluationTimes { inQuery: { min: number; median: number }; inTrigger?: { min: number; median: number } }

function parse(text: string): { min: number; median: number } {
  const [min, median] = text.split(' ').map(Number);
  return { min, median };
}

async function timeEvaluation(url: string, inTrigger: boolean): Promise<EvaluationTimes> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('begin');
    // "min(a) - min(b) median(a) - median(b)"
    await client.query(`
      create function pg_temp.bench_difference(a float8[], b float8[]) returns text language sql as $f$
        select format('%s %s',
          (select min(x) from unnest(a) x) - (select min(x) from unnest(b) x),
          (select percentile_cont(0.5) within group (order by x) from unnest(a) x)
            - (select percentile_cont(0.5) within group (order by x) from unnest(b) x))
      $f$`);
    await client.query(`
      do $$
      declare t0 timestamptz; t1 timestamptz; t2 timestamptz; with_them float8[] := '{}'; without float8[] := '{}';
              v_contact crm.contacts; v_wanted boolean;
      begin
        select * into v_contact from crm.contacts where id = 1;
        v_contact.city := 'City timed';
        for i in 1..2000 loop
          t0 := clock_timestamp();
          v_wanted := exists (select 1 from webhooks_private.subscriptions s
                              where s.action = 'contact.updated' and s.company_id = v_contact.company_id
                                and webhooks_private.condition_holds(s.conditions, (select webhooks_private.condition_subject(to_jsonb(v_contact))),
                                                                     null, array[null]::text[])
                                    is not false);
          t1 := clock_timestamp();
          v_wanted := exists (select 1 from webhooks_private.subscriptions s
                              where s.action = 'contact.updated' and s.company_id = v_contact.company_id
                                and s.conditions is null);
          t2 := clock_timestamp();
          with_them := with_them || extract(epoch from t1 - t0) * 1e6;
          without := without || extract(epoch from t2 - t1) * 1e6;
        end loop;
        perform set_config('bench.in_query', pg_temp.bench_difference(with_them, without), true);
      end $$`);
    if (!inTrigger) {
      const { rows } = await client.query("select current_setting('bench.in_query') as q");
      await client.query('rollback');
      return { inQuery: parse(String(rows[0].q)) };
    }
    await client.query(`update webhooks.webhooks set ignore_sources = '{bench-ignored}' where conditions is not null`);
    await client.query(`
      do $$
      declare t0 timestamptz; t1 timestamptz; evaluated float8[] := '{}'; ignored float8[] := '{}';
      begin
        for i in 1..2000 loop
          perform set_config('webhooks.source', 'bench-ignored', true);
          t0 := clock_timestamp();
          update crm.contacts set city = 'City ignored ' || i where id = 1 + (i * 7919) % ${UPDATED_CONTACTS};
          t1 := clock_timestamp();
          ignored := ignored || extract(epoch from t1 - t0) * 1e6;
          perform set_config('webhooks.source', 'bench-other', true);
          t0 := clock_timestamp();
          update crm.contacts set city = 'City evaluated ' || i where id = 1 + (i * 7927) % ${UPDATED_CONTACTS};
          t1 := clock_timestamp();
          evaluated := evaluated || extract(epoch from t1 - t0) * 1e6;
        end loop;
        perform set_config('bench.in_trigger', pg_temp.bench_difference(evaluated, ignored), true);
      end $$`);
    const { rows } = await client.query("select current_setting('bench.in_query') as q, current_setting('bench.in_trigger') as t");
    await client.query('rollback');
    return { inQuery: parse(String(rows[0].q)), inTrigger: parse(String(rows[0].t)) };
  } finally {
    await client.end();
  }
}

// The two set-ups of a target, each on a fresh clone, in PAIRED_SLICES pairs of
// slices back to back (A B, then B A, …): the measured set-up's rate over the
// reference's, one ratio a pair.
async function pairedRatios(admin: pg.Client, urlA: string, urlB: string, scriptFile: string, reference: string, measured: string): Promise<number[]> {
  await cloneWithSetup(admin, urlA, setups[reference]);
  await cloneWithSetup(admin, urlB, setups[measured]);
  const ratios: number[] = [];
  for (let slice = 0; slice < PAIRED_SLICES; slice++) {
    const referenceFirst = slice % 2 === 0;
    const first = await pgbench(referenceFirst ? urlA : urlB, scriptFile, SLICE_SECONDS);
    const second = await pgbench(referenceFirst ? urlB : urlA, scriptFile, SLICE_SECONDS);
    ratios.push(referenceFirst ? second / first : first / second);
  }
  process.stderr.write(`paired: ${measured} × ${reference}: ${ratios.map((r) => r.toFixed(2)).join(', ')}\n`);
  return ratios;
}

async function pgbench(url: string, scriptFile: string, seconds = SECONDS): Promise<number> {
  const { stdout } = await run('pgbench', ['-n', '-c', String(CLIENTS), '-j', '2', '-T', String(seconds), '-f', scriptFile, url]);
  const match = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
  if (!match) throw new Error(`pgbench printed no rate:\n${stdout}`);
  return Number(match[1]);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function report(
  rates: Record<string, number[]>,
  statementTimes: Record<string, { min: number; median: number }>,
  committedCpu: Record<string, number[]>,
  evaluationTimes: Record<string, EvaluationTimes>,
) {
  const baseline = median(Object.values(rates)[0]);
  const hasura = rates[HASURA] ? median(rates[HASURA]) : undefined;
  const target: Record<string, string> = {
    'empty trigger': '≈ 0.95 (floor)',
    [NO_MATCH]: '≥ 0.90',
    [MATCH]: '≥ 0.75; ≥ 1.10 × Hasura-style',
    [MATCH_NEW_COLUMN]: 'as every match',
    [HOLD]: '≥ 0.75; ≥ 1.10 × Hasura-style',
    [FAIL]: 'no-match + the conditions',
  };
  console.log(`\nContact UPDATE throughput, ${CLIENTS} clients, ${CONTACTS.toLocaleString('en')} contacts, ` +
    `${COMPANIES} companies, ${(COMPANIES * WEBHOOKS_PER_COMPANY).toLocaleString('en')} webhooks; ` +
    `median of ${ROUNDS} × ${SECONDS} s; ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB; ${new Date().toISOString().slice(0, 10)}\n`);
  console.log('| set-up | updates/s | × baseline | × Hasura-style | target | one UPDATE statement, min / median µs | Postgres CPU µs per committed update (lowest round) |');
  console.log('| --- | ---: | ---: | ---: | --- | ---: | ---: |');
  for (const [name, values] of Object.entries(rates)) {
    const rate = median(values);
    const took = statementTimes[name];
    const toHasura = hasura && name !== HASURA ? (rate / hasura).toFixed(2) : '';
    console.log(`| ${name} | ${rate.toFixed(0)} | ${(rate / baseline).toFixed(2)} | ${toHasura} | ${target[name] ?? ''} | ${took.min.toFixed(0)} / ${took.median.toFixed(0)} | ${Math.min(...committedCpu[name]).toFixed(0)} |`);
  }
  if (rates[FAIL] && rates[NO_MATCH] && rates[HOLD] && rates[MATCH]) {
    const us = (n: number) => `${n.toFixed(0)} µs`;
    const pair = (t: { min: number; median: number }) => `${us(t.min)} / ${us(t.median)}`;
    console.log('\n| conditions | updates/s | × its reference | one UPDATE, min / median | the reference\'s | their evaluation alone, in the trigger | in a query |');
    console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const [name, reference, label] of [[FAIL, NO_MATCH, 'fail (reference: no match)'], [HOLD, MATCH, 'hold (reference: every match)']]) {
      const evaluation = evaluationTimes[name];
      console.log(`| ${label} | ${median(rates[name]).toFixed(0)} | ${(median(rates[name]) / median(rates[reference])).toFixed(2)} | ` +
        `${pair(statementTimes[name])} | ${pair(statementTimes[reference])} | ${evaluation.inTrigger ? pair(evaluation.inTrigger) : '(a match)'} | ${pair(evaluation.inQuery)} |`);
    }
    const fail = statementTimes[FAIL].min;
    const inTrigger = evaluationTimes[FAIL].inTrigger!;
    const budget = statementTimes[NO_MATCH].min + inTrigger.min;
    console.log(`\nConditions that fail: ${us(fail)} a statement (min) against no match + their evaluation in the trigger = ` +
      `${us(statementTimes[NO_MATCH].min)} + ${us(inTrigger.min)} = ${us(budget)}: ` +
      `target (at most that) ${fail <= budget ? 'met' : `not met by ${us(fail - budget)}`}.`);
  }
}

function reportPaired(paired: number[][]) {
  if (PAIRS.length === 0) return;
  console.log(`\nThe targets' ratios in pairs: the two set-ups in ${PAIRED_SLICES} pairs of ${SLICE_SECONDS} s slices back to back ` +
    '(A B, then B A, …), a ratio a pair; the median, and the range\n');
  console.log('| set-up | × | median | range | target | met? |');
  console.log('| --- | --- | ---: | ---: | --- | --- |');
  PAIRS.forEach((pair, i) => {
    const ratios = paired[i];
    const middle = median(ratios);
    const met = pair.least === 0 ? '' : middle >= pair.least ? 'met' : '**not met**';
    console.log(`| ${pair.measured} | ${pair.reference} | ${middle.toFixed(2)} | ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)} | ${pair.target} | ${met} |`);
  });
}

await main();
