// The session advisory lock that serialises whole runs of `npm run migrate`
// (MIGRATE_LOCK) and of `npm run maintain` (MAINTAIN_LOCK), waited for within a
// bound. Until 2026-12-07 a second run waited for it without end and said nothing:
// behind a run that was stuck (a session left holding the key, a migrate stopped at a
// prompt of its host) it waited forever, and its operator saw a silent terminal. Now
// it says at once which session holds the key, again every RUN_LOCK_SAY_EVERY_MS, and
// after its bound stops, naming the holder, having done nothing
// (test/sql/run-lock.test.ts).
import type pg from 'pg';

/** How long a run waits for another run of the same command, unless its setting (RUN_LOCK_WAIT_SETTINGS) says otherwise: 5 minutes. */
export const RUN_LOCK_WAIT_MS = 300_000;

/** The environment variable that sets each command's wait. */
export const RUN_LOCK_WAIT_SETTINGS = { migrate: 'MIGRATE_LOCK_WAIT_MS', maintain: 'MAINTAIN_LOCK_WAIT_MS' } as const;

export type RunCommand = keyof typeof RUN_LOCK_WAIT_SETTINGS;

/** How often a waiting run says again what it waits for. */
export const RUN_LOCK_SAY_EVERY_MS = 5_000;

/** The longest wait: node runs a timer longer than 2^31 - 1 ms after 1 ms. */
const RUN_LOCK_WAIT_MOST_MS = 2_147_483_647;

/** Another run held the key for the whole wait: nothing was done. */
export class RunLockBusy extends Error {
  override name = 'RunLockBusy';
}

/** The wait `env` sets for `command`, RUN_LOCK_WAIT_MS unless set; a value not a whole number of ms is refused, naming it. */
export function runLockWaitMs(command: RunCommand, env: NodeJS.ProcessEnv = process.env): number {
  const setting = RUN_LOCK_WAIT_SETTINGS[command];
  const value = env[setting];
  if (value === undefined || value === '') return RUN_LOCK_WAIT_MS;
  if (!/^[1-9][0-9]{0,9}$/.test(value) || Number(value) > RUN_LOCK_WAIT_MOST_MS) {
    throw new Error(`${setting}=${value}: not a whole number of milliseconds from 1 to ${RUN_LOCK_WAIT_MOST_MS}`);
  }
  return Number(value);
}

interface Holder {
  pid: number | null;
  application_name: string | null;
  backend_start: Date | null;
  state: string | null;
  state_change: Date | null;
}

/** The sessions of this database that hold `key` (a session advisory lock of one bigint), as pg_locks and pg_stat_activity show them. */
async function holders(client: pg.Client, key: number): Promise<Holder[]> {
  const { rows } = await client.query<Holder>(
    `select l.pid, a.application_name, a.backend_start, a.state, a.state_change
       from pg_catalog.pg_locks l
       left join pg_catalog.pg_stat_activity a on a.pid = l.pid
      where l.locktype = 'advisory' and l.granted
        and l.database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())
        and l.classid = (($1::bigint >> 32) & 4294967295)::oid and l.objid = ($1::bigint & 4294967295)::oid and l.objsubid = 1`,
    [key]);
  return rows;
}

function described(found: Holder[]): string {
  if (found.length === 0) return 'its holder has just ended';
  return found.map((holder) => {
    if (holder.pid === null) return 'held by a prepared transaction (pg_prepared_xacts)';
    const seen = [
      `application_name '${holder.application_name ?? ''}'`,
      holder.backend_start ? `connected since ${holder.backend_start.toISOString()}` : 'its start not shown to this role',
      holder.state ? `${holder.state} since ${holder.state_change?.toISOString() ?? '?'}` : null,
    ].filter(Boolean).join(', ');
    return `held by server process ${holder.pid} (pg_stat_activity: ${seen})`;
  }).join('; ');
}

/**
 * Takes the run lock `key` for `command` on `client` (a session advisory lock, kept
 * until the run unlocks it or its session ends), waiting at most `waitMs` for another
 * run that holds it, each step bounded by lock_timeout (whatever the database sets its
 * sessions: its lock_timeout is the caller's to set again after). Says at once, and
 * every `sayEveryMs` after, which session holds it; after `waitMs` throws RunLockBusy,
 * naming it.
 */
export async function takeRunLock(client: pg.Client, options: { key: number; command: RunCommand; waitMs: number;
  log: (line: string) => void; sayEveryMs?: number }): Promise<void> {
  const { key, command, waitMs, log } = options;
  const sayEveryMs = options.sayEveryMs ?? RUN_LOCK_SAY_EVERY_MS;
  const { rows: [first] } = await client.query<{ taken: boolean }>('select pg_catalog.pg_try_advisory_lock($1) as taken', [key]);
  if (first!.taken) return;
  const started = Date.now();
  for (;;) {
    const found = await holders(client, key);
    const waited = Date.now() - started;
    if (waited >= waitMs) {
      throw new RunLockBusy(`${command} waited ${waitMs} ms (${RUN_LOCK_WAIT_SETTINGS[command]}) for another ${command} to end, and stopped: ` +
        `nothing was done. The lock (advisory key ${key}) is ${described(found)}; run ${command} again once that one ends, ` +
        'or end it (pg_terminate_backend) if it is stuck');
    }
    log(`${command} waits for another ${command} to end (${Math.round(waited / 1000)} s of at most ${Math.round(waitMs / 1000)} s): ` +
      `the lock (advisory key ${key}) is ${described(found)}`);
    const step = Math.max(1, Math.min(sayEveryMs, waitMs - waited));
    await client.query('select pg_catalog.set_config($1, $2, false)', ['lock_timeout', `${step}ms`]);
    try {
      await client.query('select pg_catalog.pg_advisory_lock($1)', [key]);
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== '55P03') throw error; // lock_not_available: its step is over
    }
  }
}
