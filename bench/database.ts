// The benchmark's Postgres: one embedded instance with default durability (fsync and
// synchronous commit on, as in production), one migrated template database holding
// the CRM rows, and a fresh clone of it for every contender and every phase so that
// no contender inherits another's bloat.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres, type RunningPostgres } from '../tools/embedded-postgres.ts';
import { migrate } from '../tools/migrate.ts';
import { processGone } from './cpu.ts';
import { topStatements } from './statements.ts';

const TEMPLATE = 'bench_template';

/** How many contacts the template holds; changes cycle through them. */
export const CONTACTS = 1000;

export interface BenchPostgres {
  server: RunningPostgres;
  /** the postmaster's pid, for CPU accounting */
  pid: number;
  /** whether pg_stat_statements is loaded */
  statements: boolean;
  /** with statements: the top statements of each clone, taken before it was dropped */
  statementReports: Array<{ database: string; table: string }>;
  clone(label: string): Promise<Clone>;
  stop(): Promise<void>;
}

export interface Clone {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/**
 * One connection for `work`, closed after it; returns once its backend has exited
 * (bench/cpu.ts, processGone): the bench's Postgres is on this machine, and the
 * backlog's writer closes just before a measured window opens.
 */
export async function onDatabase<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const backend = (client as unknown as { processID: number }).processID;
  try {
    return await work(client);
  } finally {
    await client.end();
    await processGone(backend);
  }
}

export async function startBenchPostgres(options: { statements: boolean }): Promise<BenchPostgres> {
  const dataDir = await mkdtemp(join(tmpdir(), 'bpd-bench-pg-'));
  let server = await startEmbeddedPostgres({ dataDir, persistent: true });
  if (options.statements) {
    // pg_stat_statements must be preloaded: set it, then restart on the same folder
    await onDatabase(server.url(), (c) => c.query("alter system set shared_preload_libraries = 'pg_stat_statements'").then(() => c.query("alter system set pg_stat_statements.track = 'all'")).then(() => c.query("alter system set pg_stat_statements.track_planning = on")));
    await server.stop();
    server = await startEmbeddedPostgres({ dataDir, port: server.port, persistent: true });
  }
  await onDatabase(server.url(), async (c) => {
    await c.query(`drop database if exists ${TEMPLATE}`);
    await c.query(`create database ${TEMPLATE}`);
  });
  // the first line of postmaster.pid
  const postmaster = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  await migrate(server.url(TEMPLATE));
  await onDatabase(server.url(TEMPLATE), seed);

  let clones = 0;
  const reports: Array<{ database: string; table: string }> = [];
  return {
    statementReports: reports,
    server,
    pid: postmaster,
    statements: options.statements,
    async clone(label) {
      const name = `bench_${label.replace(/[^a-z0-9]+/gi, '_').toLowerCase()}_${++clones}`;
      await onDatabase(server.url(), (c) => c.query(`create database ${name} template ${TEMPLATE} strategy file_copy`));
      if (options.statements) {
        await onDatabase(server.url(name), (c) => c.query('create extension if not exists pg_stat_statements'));
      }
      return {
        name,
        url: server.url(name),
        drop: async () => {
          if (options.statements) reports.push({ database: name, table: await topStatements(server.url(name)) });
          await onDatabase(server.url(), (c) => c.query(`drop database if exists ${name} with (force)`));
        },
      };
    },
    async stop() {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

// One company and CONTACTS contacts whose delivered payload (with every field chosen)
// is about 1 KiB. custom.seq is what each change sets; custom.note pads the body.
async function seed(client: pg.Client): Promise<void> {
  await client.query(`insert into crm.companies (id, name) values (1, 'Bench Company')`);
  await client.query(
    `insert into crm.contacts (company_id, first_name, last_name, email, phone, street, city, state, postal_code, birthday, custom)
     select 1, 'Ada' || i, 'Lovelace' || i, 'ada' || i || '@example.com', '+1 555 0100 ' || i,
            i || ' Analytical Engine Street', 'London', 'Greater London', 'NW1 ' || i, date '1815-12-10',
            jsonb_build_object('seq', 0, 'note', repeat('x', 560))
     from generate_series(1, $1::int) i`,
    [CONTACTS],
  );
  await client.query('vacuum analyze crm.contacts');
}

export const WEBHOOK_FIELDS = ['first_name', 'last_name', 'email', 'phone', 'street', 'city', 'state', 'postal_code', 'birthday', 'custom'];

/**
 * Writes changes number from..to (inclusive): change s sets custom.seq = s on one
 * contact, fired by the capture triggers of whatever contender owns the database.
 * Batched in statements of at most CONTACTS rows (a statement changes a row once);
 * atOnce: all in one transaction, so that every change becomes visible together.
 */
export async function writeChanges(url: string, from: number, to: number, options: { atOnce?: boolean } = {}): Promise<void> {
  await onDatabase(url, async (client) => {
    if (options.atOnce) await client.query('begin');
    for (let start = from; start <= to; start += CONTACTS) {
      const end = Math.min(to, start + CONTACTS - 1);
      await client.query(
        `update crm.contacts c set custom = jsonb_set(c.custom, '{seq}', to_jsonb(v.seq))
         from (select s as seq, 1 + (s % $3::bigint) as id from generate_series($1::bigint, $2::bigint) s) v
         where c.id = v.id`,
        [start, end, CONTACTS],
      );
    }
    if (options.atOnce) await client.query('commit');
  });
}

/**
 * After a warm-up (bench/fleet.ts, burn-down --warm): the warm-up left dead rows (its
 * changed contacts, its finished queue rows or jobs), which autovacuum, as it keeps up
 * with a system running for days, would otherwise clean in the middle of the measured
 * burn-down. (A run with Postgres CPU per delivery at 0.49 s/1k, 0.14 in the one
 * before, was put down to it; such outliers were later found to be the accounting race
 * that bench/cpu.ts now avoids, so that run may have been one of them.)
 */
export async function vacuumAfterWarmUp(url: string): Promise<void> {
  await onDatabase(url, (client) => client.query('vacuum (analyze)'));
}

/** One change as its own transaction: the open-loop writer's statement. */
export const SINGLE_CHANGE = `update crm.contacts set custom = jsonb_set(custom, '{seq}', to_jsonb($2::bigint)) where id = $1`;
export const contactOf = (seq: number) => 1 + (seq % CONTACTS);

/**
 * A body like the ones the contenders send for change 0 of contact 1: the payload the
 * capture trigger builds, serialised by JSON.stringify. The HTTP limit posts it.
 */
export async function sampleBody(url: string): Promise<string> {
  return await onDatabase(url, async (client) => {
    const { rows } = await client.query(`select jsonb_build_object('id', id, 'first_name', first_name,
      'last_name', last_name, 'email', email, 'phone', phone, 'street', street, 'city', city,
      'state', state, 'postal_code', postal_code, 'birthday', birthday, 'custom', custom) as contact
      from crm.contacts where id = 1`);
    return JSON.stringify({
      type: 'contact.updated',
      timestamp: new Date().toISOString(),
      data: { contact: rows[0].contact, source: 'unknown', changed_fields: ['custom'] },
    });
  });
}
