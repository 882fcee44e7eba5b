// A whole database dumped with pg_dump and restored into a new one (custom format with
// pg_restore, plain SQL with psql), as the superuser: the restore runs without an
// error, announces none of the rows it loads, and the restored engine goes on: its
// pending deliveries are sent by a relay under their message ids, a contact written
// there is announced once, the totals are the same, migrate and maintenance work
// (docs/operations.md, "Backups and copies"). Also the CRM's contacts alone, restored
// with --data-only where the engine runs, with and without triggers. pg_dump must be of the server's major
// version (PG_BIN names the folder of its binaries; else the PATH's): the embedded
// server's package ships none, so where the run's server has none at hand these run
// on a packaged Postgres of the machine's (onPackagedPostgres, below).
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { maintain } from '../../tools/maintain.ts';
import { migrate } from '../../tools/migrate.ts';
import { copyOfTestDatabase, createEmptyTestDatabase, createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { startReceiver } from '../helpers/receiver.ts';
import { testRelay, waitForRows } from '../helpers/relay.ts';
import { factories } from '../helpers/factories.ts';
import { packagedPostgresBin, startPackagedPostgres } from '../helpers/packaged-postgres.ts';

const run = promisify(execFile);
/** the folder of the client tools used (PG_BIN; else the PATH's, or a packaged Postgres's below) */
let bin = process.env.PG_BIN;
const tool = (name: string) => (bin ? join(bin, name) : name);

/** The major version of pg_dump at hand, null if there is none. */
function pgDumpMajor(): number | null {
  try {
    const out = execFileSync(tool('pg_dump'), ['--version'], { encoding: 'utf8' });
    return Number(/(\d+)\.\d+/.exec(out)![1]);
  } catch {
    return null;
  }
}

async function serverMajor(): Promise<number> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    return Math.floor(Number((await client.query('show server_version_num')).rows[0].server_version_num) / 10_000);
  } finally {
    await client.end();
  }
}

/**
 * Where the run's server has no pg_dump of its version at hand (the embedded one has
 * none, and the machine's is older), this file's databases go to a packaged Postgres
 * of the machine's (.ci/run installs Debian's), with its own tools and a template
 * migrated there as test/run.ts migrates the run's.
 */
let stopPackaged = async () => {};
async function onPackagedPostgres(packaged: string): Promise<void> {
  bin = packaged;
  const server = await startPackagedPostgres(packaged);
  stopPackaged = () => server.stop();
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  await admin.query('create database bpd_test_template');
  await admin.end();
  await migrate(server.url('bpd_test_template'));
  process.env.DATABASE_URL = server.url();
  process.env.TEST_TEMPLATE_DATABASE = 'bpd_test_template';
}

const sameMajor = pgDumpMajor() === (await serverMajor());
const packaged = sameMajor ? null : packagedPostgresBin();
const matches = sameMajor || packaged !== null;
if (packaged) test.before(() => onPackagedPostgres(packaged));
test.after.always(() => stopPackaged());
const dumpTest = matches ? test : test.skip;
if (!matches) console.log(`dump-restore: no pg_dump of the server's major version, and no packaged Postgres: skipped`);

/** A database restored from a dump of `source` in `format`: what the restore said, and the database. */
async function dumpAndRestore(source: TestDatabase, format: 'custom' | 'plain', role?: string): Promise<{ stderr: string; restored: TestDatabase }> {
  const folder = mkdtempSync(join(tmpdir(), 'bpd-dump-'));
  try {
    const file = join(folder, format === 'custom' ? 'dump.pgdump' : 'dump.sql');
    await run(tool('pg_dump'), [`--format=${format === 'custom' ? 'c' : 'p'}`, `--file=${file}`, `--dbname=${source.url}`]);
    const target = await createEmptyTestDatabase(role);
    const restoreAs = role ? ['--no-owner', `--role=${role}`] : ['--exit-on-error'];
    const { stderr } = format === 'custom'
      ? await run(tool('pg_restore'), [...restoreAs, `--dbname=${target.url}`, file]).catch((e) => ({ stderr: String(e.stderr) }))
      : await run(tool('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', `--dbname=${target.url}`, '-f', file]).catch((e) => ({ stderr: String(e.stderr) }));
    return { stderr, restored: target };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

for (const format of ['custom', 'plain'] as const) {
  dumpTest(`a whole database restored from a ${format} dump: no error, nothing announced by the load, pending deliveries sent under their message ids, writes announced once, same totals, migrate and maintenance work`, async (t) => {
    const source = await createTestDatabase();
    t.teardown(() => source.drop());
    const receiver = await startReceiver();
    t.teardown(() => receiver.close());
    const f = factories(source.pool);
    const company = await f.company();
    const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], url: receiver.url('/hook') });
    receiver.route('/hook', { secret: webhook.secret });
    for (let i = 0; i < 5; i++) await f.contact(company.id, { first_name: `Before ${i}` });
    await maintain(source.url);
    const deliveries = 'select id::text, message_id, action::text, contact_id::text, state, attempts, payload from webhooks.deliveries where webhook_id = $1 order by id';
    const before = (await source.pool.query(deliveries, [webhook.id])).rows;
    t.is(before.length, 5);
    const counts = 'select to_char(day, \'YYYY-MM-DD\') as day, fired::int, succeeded::int, failed::int, pending::int from webhooks.daily_counts where webhook_id = $1 order by day';
    const totalsBefore = (await source.pool.query(counts, [webhook.id])).rows;

    const { stderr, restored } = await dumpAndRestore(source, format);
    t.teardown(() => restored.drop());
    t.is(stderr.trim(), '', 'the restore said nothing');
    t.deepEqual((await restored.pool.query(deliveries, [webhook.id])).rows, before, 'the load announced nothing');
    t.deepEqual((await restored.pool.query(counts, [webhook.id])).rows, totalsBefore);
    const { rows: events } = await restored.pool.query(`select evtname from pg_event_trigger where evtname like 'bpd_webhooks_%' order by 1`);
    t.deepEqual(events.map((e) => e.evtname), ['bpd_webhooks_contacts_partitions', 'bpd_webhooks_crm_owners_after', 'bpd_webhooks_crm_owners_before',
      'bpd_webhooks_crm_row_security', 'bpd_webhooks_outbox_days_in_use']);

    await migrate(restored.url);
    const said = await maintain(restored.url);
    t.truthy(said);
    const { rows: [upkeep] } = await restored.pool.query('select days_ahead from webhooks_ops.upkeep()');
    t.is(upkeep.days_ahead, 14);

    const [contact] = (await restored.pool.query(`insert into crm.contacts (company_id, first_name) values ($1, 'After') returning id`, [company.id])).rows;
    const fired = (await restored.pool.query('select action::text from webhooks.deliveries where webhook_id = $1 and contact_id = $2', [webhook.id, contact.id])).rows;
    t.deepEqual(fired, [{ action: 'contact.created' }]);

    const relay = testRelay(restored.url, { RELAY_ID: `relay-restored-${format}` });
    t.teardown(() => relay.stop());
    await relay.start();
    const requests = await receiver.waitFor(6, { path: '/hook' });
    t.deepEqual(requests.map((r) => r.headers['webhook-id']).sort(),
      [...before.map((d) => d.message_id), (await restored.pool.query('select message_id from webhooks.deliveries where contact_id = $1', [contact.id])).rows[0].message_id].sort());
    t.true(requests.every((r) => r.verified));
    await waitForRows(restored.pool, 'select state from webhooks.deliveries where webhook_id = $1', [webhook.id],
      (rows) => rows.length === 6 && rows.every((r) => r.state === 'succeeded'));
  });
}

/** A DBA's role that is no superuser: made if missing (roles belong to the whole cluster). */
async function dbaRole(pool: pg.Pool): Promise<string> {
  await pool.query(`do $$ begin create role bpd_test_restoring_dba nologin nosuperuser;
                    exception when duplicate_object or unique_violation then null; end $$`);
  return 'bpd_test_restoring_dba';
}

dumpTest('restored by a DBA who is no superuser (pg_restore --no-owner --role): five errors, the event triggers; the rest restored, owned by the DBA, and working', async (t) => {
  const source = await createTestDatabase();
  t.teardown(() => source.drop());
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const f = factories(source.pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  const pending = await f.contact(company.id);
  const role = await dbaRole(source.pool);

  const { stderr, restored } = await dumpAndRestore(source, 'custom', role);
  t.teardown(() => restored.drop());
  const errors = stderr.split('\n').filter((line) => line.includes('ERROR:'));
  t.deepEqual(errors.sort(), ['bpd_webhooks_contacts_partitions', 'bpd_webhooks_crm_owners_after', 'bpd_webhooks_crm_owners_before',
    'bpd_webhooks_crm_row_security', 'bpd_webhooks_outbox_days_in_use']
    .map((name) => `pg_restore: error: could not execute query: ERROR:  permission denied to create event trigger "${name}"`), stderr);
  t.regex(stderr, /errors ignored on restore: 5\b/);
  const { rows: [owner] } = await restored.pool.query(`select pg_get_userbyid(nspowner) as owner from pg_namespace where nspname = 'webhooks'`);
  t.is(owner.owner, role);

  const [contact] = (await restored.pool.query(`insert into crm.contacts (company_id, first_name) values ($1, 'After') returning id`, [company.id])).rows;
  const relay = testRelay(restored.url, { RELAY_ID: 'relay-restored-dba' });
  t.teardown(() => relay.stop());
  await relay.start();
  const requests = await receiver.waitFor(2, { path: '/hook' });
  t.deepEqual(requests.map((r) => JSON.parse(r.body).data.contact.id).sort(), [Number(pending.id), Number(contact.id)].sort());
  t.true(requests.every((r) => r.verified));
});

for (const way of ['as is', '--disable-triggers', 'session_replication_role = replica'] as const) {
  dumpTest(`the CRM's contacts alone restored where the engine runs (pg_dump --data-only, pg_restore --data-only) ${way}: ${way === 'as is' ? 'each announced to every webhook' : 'none announced'}`, async (t) => {
    const source = await createTestDatabase();
    t.teardown(() => source.drop());
    const f = factories(source.pool);
    const company = await f.company();
    const hooks = [await f.webhook({ companyId: company.id, actions: ['contact.created'] }),
                   await f.webhook({ companyId: company.id, actions: ['contact.created'] })];
    // the engine's database, its companies and webhooks there before the contacts come
    const target = await copyOfTestDatabase(source);
    t.teardown(() => target.drop());
    for (let i = 0; i < 10; i++) await f.contact(company.id, { first_name: `Moved ${i}` });

    const folder = mkdtempSync(join(tmpdir(), 'bpd-dump-'));
    t.teardown(() => rmSync(folder, { recursive: true, force: true }));
    const file = join(folder, 'contacts.pgdump');
    await run(tool('pg_dump'), ['--format=c', '--data-only', '--table=crm.contacts', `--file=${file}`, `--dbname=${source.url}`]);
    const args = ['--data-only', '--exit-on-error', ...(way === '--disable-triggers' ? ['--disable-triggers'] : []), `--dbname=${target.url}`, file];
    const env = way === 'session_replication_role = replica'
      ? { ...process.env, PGOPTIONS: '-c session_replication_role=replica' } : process.env;
    const { stderr } = await run(tool('pg_restore'), args, { env });
    t.is(stderr.trim(), '');
    t.is((await target.pool.query(`select count(*)::int as n from crm.contacts where first_name like 'Moved %'`)).rows[0].n, 10);
    const { rows: [fired] } = await target.pool.query(
      'select count(*)::int as n from webhooks.deliveries where webhook_id = any ($1::bigint[])', [hooks.map((h) => h.id)]);
    t.is(fired.n, way === 'as is' ? 20 : 0);
  });
}
