// `npm test`: start a throwaway Postgres (unless DATABASE_URL names one), migrate a
// template database once, then run ava; each test file clones the template
// (test/helpers/db.ts), so files run in parallel on databases of their own.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PostgresCannotRun, startEmbeddedPostgres } from '../tools/embedded-postgres.ts';
import { migrate } from '../tools/migrate.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const TEMPLATE = 'bpd_test_template';
/** enough for the tests of two-phase writers (test/helpers/two-phase.ts), which run one at a time per file */
const PREPARED_TRANSACTIONS = 4;

let serverUrl = process.env.DATABASE_URL;
let stopServer = async () => {};
let dataDir: string | undefined;
if (!serverUrl) {
  dataDir = await mkdtemp(join(tmpdir(), 'bpd-test-pg-'));
  const server = await startEmbeddedPostgres({ dataDir, fast: true, preparedTransactions: PREPARED_TRANSACTIONS }).catch(async (error) => {
    if (!(error instanceof PostgresCannotRun)) throw error;
    console.error(error.message);
    await rm(dataDir!, { recursive: true, force: true });
    process.exit(1);
  });
  serverUrl = server.url();
  stopServer = () => server.stop();
}

const admin = new pg.Client({ connectionString: serverUrl });
await admin.connect();
await admin.query(`drop database if exists ${TEMPLATE} with (force)`);
await admin.query(`create database ${TEMPLATE}`);
// read once here: ava wants every test declared at once, before any query could answer
const preparedAllowed = (await admin.query('show max_prepared_transactions')).rows[0].max_prepared_transactions as string;
await admin.end();
const templateUrl = new URL(serverUrl);
templateUrl.pathname = `/${TEMPLATE}`;
await migrate(templateUrl.toString());

const code = await new Promise<number>((resolve) => {
  const child = spawn(join(root, 'node_modules/.bin/ava'), process.argv.slice(2), {
    stdio: 'inherit',
    env: { ...process.env, DATABASE_URL: serverUrl, TEST_TEMPLATE_DATABASE: TEMPLATE, TEST_MAX_PREPARED_TRANSACTIONS: preparedAllowed },
  });
  child.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0)));
});

await stopServer();
if (dataDir) await rm(dataDir, { recursive: true, force: true });
process.exit(code);
