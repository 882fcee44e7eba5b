// `npm run bench:capture`: what the capture triggers cost a contact UPDATE.
//
// 8 concurrent clients (pgbench) update random contacts among 10,000 of 100 companies,
// with 1,000 webhooks, in four set-ups measured in the same run on the same server:
//   baseline      no triggers at all on crm.contacts
//   empty trigger a trigger that does nothing (the floor any trigger pays)
//   no match      the engine, where no webhook of the contact's companies wants updates
//                 (webhooks of other companies do, so the cheap first check passes)
//   every match   the engine, every update matching exactly one webhook (a delivery
//                 row, its payload, and a NOTIFY per transaction)
// Each set-up runs on a fresh clone of the same data, ROUNDS times, interleaved; the
// median rate is reported with its ratio to the baseline's.
//
// The server runs with Postgres's default, durable settings (BENCH_FAST=1 turns off
// fsync and synchronous_commit, which shows the triggers' CPU cost more starkly).
// A second figure is robust to a busy machine: inside one session, the time of each
// single UPDATE statement (min and median of 2,000), i.e. what the triggers add to
// the statement itself.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
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
const CLIENTS = 8;
const COMPANIES = 100;
const CONTACTS = 10_000;
const WEBHOOKS_PER_COMPANY = 10;
// the contacts every set-up updates: those of companies 1..50
const UPDATED_CONTACTS = CONTACTS / 2;

const OTHER_ACTIONS = "'{contact.created,contact.deleted,contact.status_added}'";
const ENGINE_TRIGGERS = ['_500_webhooks_created', '_500_webhooks_updated', '_900_webhooks_deleted'];

const setups: Record<string, string> = {
  'baseline (no trigger)': ENGINE_TRIGGERS.map((t) => `drop trigger ${t} on crm.contacts;`).join('\n'),
  'empty trigger': `
    ${ENGINE_TRIGGERS.map((t) => `drop trigger ${t} on crm.contacts;`).join('\n')}
    create function bench_nothing() returns trigger language plpgsql as $$ begin return null; end $$;
    create trigger _500_nothing after update on crm.contacts for each row execute function bench_nothing();`,
  'engine, no webhook wants it': `
    insert into webhooks.webhooks (company_id, name, url, fields, actions)
    select c, 'hook ' || n, 'https://example.com/' || c || '/' || n, '{first_name,email,city}',
           case when c > 50 then '{contact.updated}' else ${OTHER_ACTIONS} end::webhooks.action[]
    from generate_series(1, ${COMPANIES}) c, generate_series(1, ${WEBHOOKS_PER_COMPANY}) n;`,
  'engine, every update matches one': `
    insert into webhooks.webhooks (company_id, name, url, fields, actions)
    select c, 'hook ' || n, 'https://example.com/' || c || '/' || n, '{first_name,email,city}',
           case when n = 1 then '{contact.updated}' else ${OTHER_ACTIONS} end::webhooks.action[]
    from generate_series(1, ${COMPANIES}) c, generate_series(1, ${WEBHOOKS_PER_COMPANY}) n;`,
};

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
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, setup] of Object.entries(setups)) {
        await admin.query('drop database if exists bench_run with (force)');
        await admin.query('create database bench_run template bench_template strategy file_copy');
        await sql(server.url('bench_run'), setup);
        await sql(server.url('bench_run'), 'vacuum analyze');
        const tps = await pgbench(server.url('bench_run'), scriptFile);
        rates[name].push(tps);
        if (round === 1) statementTimes[name] = await timeStatements(server.url('bench_run'));
        process.stderr.write(`round ${round}: ${name}: ${tps.toFixed(0)} updates/s\n`);
      }
    }
    await admin.end();
    report(rates, statementTimes);
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(scriptFile, { force: true });
  }
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
          update crm.contacts set city = 'Timed ' || i where id = 1 + (i * 7919) % ${UPDATED_CONTACTS};
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

async function pgbench(url: string, scriptFile: string): Promise<number> {
  const { stdout } = await run('pgbench', ['-n', '-c', String(CLIENTS), '-j', '2', '-T', String(SECONDS), '-f', scriptFile, url]);
  const match = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
  if (!match) throw new Error(`pgbench printed no rate:\n${stdout}`);
  return Number(match[1]);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function report(rates: Record<string, number[]>, statementTimes: Record<string, { min: number; median: number }>) {
  const baseline = median(Object.values(rates)[0]);
  const target: Record<string, string> = {
    'empty trigger': '≈ 0.95 (floor)',
    'engine, no webhook wants it': '≥ 0.90',
    'engine, every update matches one': '≥ 0.70',
  };
  console.log(`\nContact UPDATE throughput, ${CLIENTS} clients, ${CONTACTS.toLocaleString('en')} contacts, ` +
    `${COMPANIES} companies, ${(COMPANIES * WEBHOOKS_PER_COMPANY).toLocaleString('en')} webhooks; ` +
    `median of ${ROUNDS} × ${SECONDS} s; ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB; ${new Date().toISOString().slice(0, 10)}\n`);
  console.log('| set-up | updates/s | × baseline | target | one UPDATE statement, min / median µs |');
  console.log('| --- | ---: | ---: | --- | ---: |');
  for (const [name, values] of Object.entries(rates)) {
    const rate = median(values);
    const took = statementTimes[name];
    console.log(`| ${name} | ${rate.toFixed(0)} | ${(rate / baseline).toFixed(2)} | ${target[name] ?? ''} | ${took.min.toFixed(0)} / ${took.median.toFixed(0)} |`);
  }
}

await main();
