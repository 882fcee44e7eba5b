// Relays for tests: in-process (new Relay) or as a child process (`npm run relay`'s
// entry point), each against a database of its own so that relays with different
// settings never drain each other's outbox.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import pino, { type Logger } from 'pino';
import { LOCK_CLASS, LOCK_KEYS } from '../../relay/engine-names.ts';
import { RELAY_NODE_FLAGS } from '../../relay/node-flags.ts';
import { Relay } from '../../relay/loop.ts';
import { relaySettings } from '../../relay/settings.ts';
import type { ExecutionContext } from 'ava';
import { createTestDatabase, type TestDatabase } from './db.ts';
import { factories } from './factories.ts';
import { startReceiver } from './receiver.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Settings every test relay shares: loopback allowed, quick polling, quiet logs. */
export function testRelayEnvironment(databaseUrl: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    RELAY_ALLOW_NETWORKS: '127.0.0.0/8,::1/128',
    RELAY_POLL_INTERVAL_MS: '50',
    RELAY_RESCUE_INTERVAL_MS: '100',
    RELAY_BACKFILL_INTERVAL_MS: '50',
    RELAY_LOG_LEVEL: process.env.RELAY_TEST_LOG_LEVEL ?? 'silent',
    ...overrides,
  };
}

export function testRelay(databaseUrl: string, overrides: Record<string, string> = {}, options: { log?: Logger } = {}): Relay {
  return new Relay(relaySettings(testRelayEnvironment(databaseUrl, overrides)), options);
}

/** A relay's log kept in memory (the last `keep` lines), to show when a test fails. */
export function rememberedLog(keep = 200): { log: Logger; lines: () => string[] } {
  const lines: string[] = [];
  const log = pino({ name: 'bpd-webhooks-relay', level: 'debug' }, {
    write(line: string) {
      lines.push(line.trimEnd());
      if (lines.length > keep) lines.shift();
    },
  });
  return { log, lines: () => [...lines] };
}

/**
 * The relay as its own process, as `npm run relay` starts it (`nodeArgs`: more of
 * node's own arguments; `release`: the folder of another release's code).
 */
export function spawnRelay(databaseUrl: string, overrides: Record<string, string> = {}, nodeArgs: string[] = [],
                           release = root): ChildProcess {
  return spawn(process.execPath, [...RELAY_NODE_FLAGS, ...nodeArgs, join(release, 'relay/main.ts')], {
    cwd: release,
    env: { PATH: process.env.PATH, ...testRelayEnvironment(databaseUrl, overrides) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/**
 * A fresh database for one test, with the retry backoff shortened to `retryBase`
 * (a Postgres setting of that database: every relay connection picks it up).
 */
export async function relayTestDatabase(options: { retryBase?: string } = {}): Promise<TestDatabase> {
  const database = await createTestDatabase();
  const retryBase = options.retryBase ?? '20 milliseconds';
  await database.pool.query(`alter database ${database.name} set webhooks.retry_base = '${retryBase}'`);
  return database;
}

/** A relay test's scene: a fresh database, a receiver and a company, gone with the test. */
export async function relayScene(t: Pick<ExecutionContext, 'teardown'>, options: { retryBase?: string } = {}) {
  const database = await relayTestDatabase(options);
  t.teardown(() => database.drop());
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const f = factories(database.pool);
  const company = await f.company();
  return { database, receiver, f, company };
}

/** Polls a query until `done(rows)` holds (every 20 ms, for at most `timeoutMs`). */
export async function waitForRows<T = Record<string, any>>(
  pool: Pick<pg.Pool, 'query'>,
  sql: string,
  params: unknown[],
  done: (rows: T[]) => boolean,
  timeoutMs = 30_000,
): Promise<T[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool.query(sql, params);
    if (done(rows as T[])) return rows as T[];
    if (Date.now() > deadline) {
      const seen = JSON.stringify(rows);
      throw new Error(`waitForRows: condition not met within ${timeoutMs} ms; last rows (${rows.length}): ` +
        (seen.length > 4_000 ? `${seen.slice(0, 4_000)}…` : seen));
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Waits until every delivery of these webhooks is final (succeeded or failed). */
export async function waitForFinalDeliveries(pool: Pick<pg.Pool, 'query'>, webhookIds: string[], count: number, timeoutMs?: number) {
  // counted until they are there, then read once: every row read every 20 ms, in the
  // process where a test's receiver answers, is the likely reason that receiver answered
  // past the relay's request timeout under a full run's load; and a timeout's rows
  // filled a CI log
  await waitForRows<{ states: Record<string, number> | null }>(
    pool,
    `select jsonb_object_agg(state, n) as states
     from (select state, count(*)::int as n from webhooks.deliveries where webhook_id = any ($1::bigint[]) group by state) s`,
    [webhookIds],
    ([{ states }]) => {
      const all = Object.values(states ?? {}).reduce((sum, n) => sum + n, 0);
      return all >= count && (states?.succeeded ?? 0) + (states?.failed ?? 0) === all;
    },
    timeoutMs,
  );
  return (await pool.query('select * from webhooks.deliveries where webhook_id = any ($1::bigint[]) order by id', [webhookIds])).rows;
}

/**
 * True once the relay's idle connection holds relay_idle. The relay may still be taking
 * its last look (relay/wakeup.ts, last_look): a discovery, up to once round the lanes,
 * that a change committed meanwhile may not meet. An in-process relay's own phase says
 * when it sleeps: relayAsleepInProcess.
 */
export function relayAsleep(pool: Pick<pg.Pool, 'query'>) {
  return waitForRows(
    pool,
    `select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid
     where l.locktype = 'advisory' and l.classid = $1 and l.objid = $2 and l.granted
       and a.application_name = 'bpd-webhooks-relay-idle'
       -- (this database's relay: the other test files' relays sleep on the same server)
       and a.datname = current_database()`,
    [LOCK_CLASS, LOCK_KEYS.relayIdle],
    (rows) => rows.length > 0,
    10_000,
  );
}

/**
 * An in-process relay asleep: relay_idle held (relayAsleep) and its last look over, so
 * that the next discovery is the one a NOTIFY starts. Its phase is read every 10 ms:
 * the relay has no event for it.
 */
export async function relayAsleepInProcess(relay: Relay, pool: Pick<pg.Pool, 'query'>, timeoutMs = 10_000) {
  await relayAsleep(pool);
  const phase = () => (relay as unknown as { wakeUp: { phase: string } }).wakeUp.phase;
  const deadline = Date.now() + timeoutMs;
  while (phase() !== 'asleep') {
    if (Date.now() > deadline) throw new Error(`relayAsleepInProcess: the relay is ${phase()} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
