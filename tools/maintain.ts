// The outbox's upkeep (docs/outbox.md): the partitions of the days ahead and the tail
// after them, the report's day counts rolled up, deleted webhooks' deliveries removed
// in batches (those written while a delete was open included), and the days past the
// retention dropped whole. `npm run maintain` runs it once; `npm start` every hour. It
// needs the tables' owner (migrate's DATABASE_URL): detaching a partition is the
// owner's right.
//
// Neither moving the tail nor dropping makes claims, settles or captures wait:
// DETACH PARTITION … CONCURRENTLY takes no lock that they take, and cannot run inside
// a transaction, which is why this is a client and not a function. Each statement
// waits at most LOCK_TIMEOUT for a lock and is tried again later; a detach
// interrupted half way is finished (FINALIZE) by the next run, before any other detach
// of its table (finishDetachLeftPending; of the results and attempts at the run's
// start, finishDetachesOfDayRows), and a table a run detached and stopped before
// dropping is dropped or attached back by the next (settleDetachedHistory,
// settleDetachedDayPartition; docs/outbox.md lists each step). The one exception is
// the tail that holds rows (maintenance had stopped for two weeks): it becomes a span
// of days in one transaction that holds the parent's lock for a moment (SQL decides
// how: webhooks.outbox_tails, 22_outbox.sql).
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { databaseUrlRefusal, EngineClient, ENGINE_SESSION_TIMEOUTS, isConnectionError } from '../relay/database.ts';
import { RUN_LOCK_WAIT_MS, RunLockBusy, runLockWaitMs, takeRunLock } from './run-lock.ts';

const LOCK_TIMEOUT = '1s';
const TRIES = 5;

/**
 * The advisory lock key that says "the outbox's upkeep is running" (one bigint key;
 * the engine's others are listed in sql/00_schemas.sql). A session lock serialises
 * whole runs: a second run (npm start's next hour while a detach still waits for a
 * long reader, or a DBA's npm run maintain beside it) would otherwise finish or
 * drop the first one's partitions under it, and fail.
 */
export const MAINTAIN_LOCK = 4_204_204_205;

export interface MaintainResult {
  partitionsMade: number;
  /** what was done to the tails: 'keep', 'detach' (moved ahead) or 'span' */
  tails: string;
  daysRolledUp: number;
  /** webhooks the roll-up visited: all of them once a day, else those with something new */
  webhooksRolledUp: number;
  /** deleted webhooks found with deliveries written while their delete was open (webhooks.recheck_deleted_webhooks) */
  deletedWebhooksFoundWithRows: number;
  /** deliveries of deleted webhooks removed (webhooks.purge_deleted_webhooks) */
  deliveriesPurged: number;
  /** audit trail rows past webhooks.audit_retention removed (webhooks.forget_audit_log) */
  auditRowsRemoved: number;
  /** backfill snapshots held for disabled webhooks, failed as their days passed the retention (webhooks.fail_held_snapshots_past_retention) */
  snapshotsFailed: number;
  daysDropped: string[];
  /** the deliveries still on their way that keep days past the retention, by day and webhook (webhooks.held_past_retention) */
  heldPastRetention: HeldDay[];
}

export interface HeldDay {
  day: string;
  companyId: string;
  webhookId: string;
  onTheirWay: number;
  nextAttemptAt: Date;
}

interface Tail {
  table_name: string;
  tail_name: string;
  detach_pending: boolean;
  action: 'keep' | 'detach' | 'span';
  span_until: string | null;
}

/** The database did not take maintain's connection: nothing was done (which its loss mid-run cannot say). */
export class MaintainNotConnected extends Error {
  override name = 'MaintainNotConnected';
}

/** afterStep: called after each step of a day's drop (tests stop a run there, as a crash would) */
export interface MaintainOptions {
  afterStep?: (step: string) => void | Promise<void>;
  /** how long another run is waited for (RUN_LOCK_WAIT_MS unless set: MAINTAIN_LOCK_WAIT_MS, tools/run-lock.ts) */
  lockWaitMs?: number;
}

/**
 * The options `env` sets for a maintain, read by `npm run maintain` and by `npm start`'s
 * hourly maintain alike: MAINTAIN_LOCK_WAIT_MS (until 2026-12-07 npm start did not read
 * it). A value not a whole number of ms is refused, naming it.
 */
export function maintainSettings(env = process.env): Required<Pick<MaintainOptions, 'lockWaitMs'>> {
  return { lockWaitMs: runLockWaitMs('maintain', env) };
}

export async function maintain(
  databaseUrl: string,
  log: (line: string) => void = () => {},
  { afterStep = () => {}, lockWaitMs = RUN_LOCK_WAIT_MS }: MaintainOptions = {},
): Promise<MaintainResult> {
  const client = new EngineClient({ connectionString: databaseUrl, options: ENGINE_SESSION_TIMEOUTS.join(' ') });
  await client.connect().catch((error: Error) => {
    throw new MaintainNotConnected(error.message, { cause: error });
  });
  // the engine's warnings (a partition not made now, the kept history taken back from
  // days a clock that ran ahead had dropped: 22_outbox.sql) are the run's to say
  client.on('notice', (notice) => {
    if (notice.severity === 'WARNING' && notice.message?.startsWith('bpd-webhooks: ')) log(notice.message);
  });
  try {
    // (its own bound on the wait for another run, whatever lock_timeout the database
    // sets: until 2026-12-07 the lock was asked for before lock_timeout was set, and
    // waited under the database's, 0 by default: without end, silently; then the
    // steps' own)
    await takeRunLock(client, { key: MAINTAIN_LOCK, command: 'maintain', waitMs: lockWaitMs, log });
    await client.query(`set lock_timeout = '${LOCK_TIMEOUT}'`);
    // (whatever the database's default: the steps read with a snapshot per statement,
    // webhooks.recheck_deleted_webhooks included)
    await client.query(`set default_transaction_isolation = 'read committed'`);
    let { rows: [{ n: made }] } = await client.query('select webhooks.create_partitions() as n');
    const hidden = await finishDetachesOfDayRows(client, log);
    const tails = await moveTails(client, log);
    if (tails !== 'keep') made += (await client.query('select webhooks.create_partitions() as n')).rows[0].n;
    // A stopped run's leftovers settled before the roll-up: a kept day's results or
    // attempts left detached hide its failures (a result row missing reads as
    // succeeded), and the roll-up counted that day so, for good, before they were
    // attached back (until 2026-12-07: test/sql/retention-hand-made.test.ts).
    const { rows: leftovers } = await client.query<DetachedHistory>(
      `select to_char(day, 'YYYY-MM-DD') as day, partition_name, by_hand from webhooks.detached_history_days()`,
    );
    for (const leftover of leftovers) await settleDetachedHistory(client, leftover, log);
    // (after the history's: a day's history attached back keeps its results and attempts)
    for (const left of await detachedDayPartitions(client)) await settleDetachedDayPartition(client, left, log);
    // (before the roll-up, which then counts their failures: their days can go this run)
    const { rows: [{ n: snapshotsFailed }] } = await client.query<{ n: number }>(
      'select webhooks.fail_held_snapshots_past_retention() as n');
    if (snapshotsFailed > 0) log(`failed ${snapshotsFailed} snapshots held for disabled webhooks, their days past the retention`);
    // (not while a pending detach hides a day's results or attempts: it would count the
    // day's failures as successes, for good; the next run counts)
    const counted = hidden ? { days: 0, visited: 0 } : (await client.query('call webhooks.roll_up_report_counts()')).rows[0];
    if (hidden) log('left the day counts to the next run: a detach left pending hides results or attempts they would count');
    // (a day past the retention goes whole, whatever deleted webhooks' rows it holds)
    const { rows: [rechecked] } = await client.query<{ n: number }>('select webhooks.recheck_deleted_webhooks() as n');
    if (rechecked!.n > 0) log(`found deliveries written for ${rechecked!.n} webhooks while their delete was open`);
    const { rows: [keys] } = await client.query<{ n: number }>('select webhooks.forget_create_requests() as n');
    if (keys!.n > 0) log(`forgot ${keys!.n} idempotency keys of Creates more than a day old`);
    const purged = await purgeDeletedWebhooks(client);
    if (purged > 0) log(`removed ${purged} deliveries of deleted webhooks`);
    const auditRowsRemoved = await forgetAuditLog(client);
    if (auditRowsRemoved > 0) log(`removed ${auditRowsRemoved} audit trail rows past webhooks.audit_retention`);
    const dropped: string[] = [];
    // (after the leftovers settled above: a day's results attached back are dropped with it)
    const { rows: days } = await client.query<{ day: string; parents: string[]; partitions: string[] }>(
      `select to_char(day, 'YYYY-MM-DD') as day, parents, partitions from webhooks.expired_days()`,
    );
    for (const { day, parents, partitions } of days) {
      // forgotten before any of it goes (webhooks.forget_day, 29_retention.sql, says
      // why). Until 2026-12-06 after its last drop: a run stopped between the two left
      // the day counted from its day counts while the history showed none of it, for
      // good (no later run names a day without partitions).
      if (!(await forgetDay(client, day))) {
        log(`kept the history of ${day}: a capture late in its transaction found it kept and has not written yet`);
        continue;
      }
      await afterStep(`forgot ${day}`);
      if (!(await dropDay(client, parents, partitions, afterStep, log))) {
        log(`kept the history of ${day}: a delivery of it went back on its way while it was being dropped`);
        continue;
      }
      log(`dropped the history of ${day}`);
      dropped.push(day);
    }
    const held = await heldPastRetention(client);
    for (const h of held) {
      log(`kept the history of ${h.day} past the retention: webhook ${h.webhookId} (company ${h.companyId}) has ${h.onTheirWay} of its deliveries on their way, the next try at ${h.nextAttemptAt.toISOString()}`);
    }
    const { rows: byHand } = await client.query<{ partition_name: string }>(
      `select h.partition_name
       from webhooks_private.outbox_partitioned() t
       cross join lateral webhooks_private.partitions_by_hand(t.table_name) h
       where h.ends <= webhooks_private.utc_day_start(webhooks_private.first_kept_day())
       order by 1`);
    for (const { partition_name: partition } of byHand) {
      log(`left ${partition} past the retention: it is not the engine's (a DBA's partition), so the DBA drops it`);
    }
    // (last: every other step done) a DBA's partition over the days ahead, by name
    await client.query('select webhooks_private.refuse_partitions_in_the_way()');
    return {
      partitionsMade: made, tails, daysRolledUp: counted.days, webhooksRolledUp: counted.visited,
      deletedWebhooksFoundWithRows: rechecked!.n, deliveriesPurged: purged, auditRowsRemoved, snapshotsFailed, daysDropped: dropped,
      heldPastRetention: held,
    };
  } finally {
    await client.end();
  }
}

/** What keeps days past the retention (webhooks.held_past_retention, sql/29_retention.sql). */
async function heldPastRetention(client: pg.Client): Promise<HeldDay[]> {
  const { rows } = await client.query<{ day: string; company_id: string; webhook_id: string; on_their_way: string; next_attempt_at: Date }>(
    `select to_char(day, 'YYYY-MM-DD') as day, company_id, webhook_id, on_their_way, next_attempt_at
     from webhooks.held_past_retention()`);
  return rows.map((r) => ({
    day: r.day, companyId: r.company_id, webhookId: r.webhook_id, onTheirWay: Number(r.on_their_way), nextAttemptAt: r.next_attempt_at,
  }));
}

// Deleted webhooks' deliveries, one batch (one day of one webhook) per transaction,
// until none is left. Each batch is short, and is followed by a pause as long as it
// took: a deleted webhook with millions of kept deliveries costs the database half a
// core for a while, never a whole one (the relay's claims and settles go on beside).
// (pause: how the wait is spent; tests record it)
export async function purgeDeletedWebhooks(
  client: Pick<pg.Client, 'query'>,
  pause: (ms: number) => Promise<unknown> = sleep,
): Promise<number> {
  let total = 0;
  for (;;) {
    const started = performance.now();
    const { rows: [batch] } = await client.query<{ n: number | null }>('select webhooks.purge_deleted_webhooks() as n');
    if (batch!.n === null) return total;
    total += batch!.n;
    await pause(performance.now() - started);
  }
}

/** The most audit trail rows one transaction of forgetAuditLog removes. */
export const AUDIT_FORGET_BATCH = 1000;

// The audit trail's rows past webhooks.audit_retention (sql/47_audit.sql), a batch of
// at most AUDIT_FORGET_BATCH rows per transaction until a batch removes none, each
// followed by a pause as long as it took, as purgeDeletedWebhooks: the API's writes
// and reads of the trail never wait for it (a DELETE of old rows takes no lock they
// take), and a trail of years removed at the first run costs half a core at most.
export async function forgetAuditLog(
  client: Pick<pg.Client, 'query'>,
  pause: (ms: number) => Promise<unknown> = sleep,
  batch = AUDIT_FORGET_BATCH,
): Promise<number> {
  let total = 0;
  for (;;) {
    const started = performance.now();
    const { rows: [{ n }] } = await client.query<{ n: number }>('select webhooks.forget_audit_log($1) as n', [batch]);
    if (n === 0) return total;
    total += n;
    await pause(performance.now() - started);
  }
}

// The tails, as webhooks.outbox_tails says: moved ahead (detached, the days made, rows
// written meanwhile put back), or made spans of the days they hold (three steps, each
// its own transaction). Returns what was done.
async function moveTails(client: pg.Client, log: (line: string) => void): Promise<Tail['action']> {
  const { rows: tails } = await client.query<Tail>(
    `select table_name, tail_name, detach_pending, action, to_char(span_until, 'YYYY-MM-DD') as span_until
     from webhooks.outbox_tails()`,
  );
  if (tails.some((tail) => tail.action === 'span')) {
    for (const tail of tails.filter((t) => t.action === 'span')) {
      await retried(() => client.query('select webhooks.bound_tail($1, $2::date)', [tail.table_name, tail.span_until]));
      await retried(() => client.query('select webhooks.validate_tail($1)', [tail.table_name]));
      const { rows: [span] } = await retried(() =>
        client.query<{ name: string }>('select webhooks.tail_to_span($1) as name', [tail.table_name]));
      log(`the tail ${tail.tail_name} held rows: it is now ${span!.name}`);
    }
    return 'span';
  }
  if (tails.some((tail) => tail.action === 'detach')) {
    for (const tail of tails.filter((t) => t.action === 'detach')) {
      await detachPartition(client, tail.table_name, tail.tail_name, log);
    }
    await client.query('select webhooks.create_partitions()');
    await client.query('select webhooks.readmit_detached_tails()');
    log(`the tails moved ahead`);
    return 'detach';
  }
  return 'keep';
}

async function detachPartition(
  client: pg.Client, parent: string, partition: string, log: (line: string) => void,
): Promise<void> {
  // names come from the catalog (webhooks.expired_days, webhooks.outbox_tails), quoted all the same
  const parentName = `webhooks.${pg.escapeIdentifier(parent)}`;
  const partitionName = `webhooks_partitions.${pg.escapeIdentifier(partition)}`;
  await finishDetachLeftPending(client, parent, partitionName, log);
  await retried(async () => {
    const { rows: [state] } = await client.query(
      `select i.inhdetachpending as pending
       from pg_inherits i
       where i.inhrelid = to_regclass($1) and i.inhparent = to_regclass($2)`,
      [partitionName, parentName],
    );
    if (state?.pending) {
      await client.query(`alter table ${parentName} detach partition ${partitionName} finalize`);
    } else if (state) {
      await client.query(`alter table ${parentName} detach partition ${partitionName} concurrently`);
    }
  });
}

interface DetachedHistory { day: string; partition_name: string; by_hand: boolean }

// A day's history left detached by a run that stopped (webhooks.detached_history_days):
// on its way again, attached back; else dropped (or by a DBA: attached back only if the
// engine needs it, else left alone).
async function settleDetachedHistory(
  client: pg.Client, { day, partition_name: partition, by_hand: byHand }: DetachedHistory, log: (line: string) => void,
): Promise<void> {
  const { rows: [{ kept }] } = await retried(() => client.query<{ kept: boolean }>(
    'select webhooks.keep_day_on_its_way($1) as kept', [partition]));
  if (kept) {
    log(`attached back the history of ${day}, left detached by ${byHand ? 'hand' : 'a run that stopped'}: a delivery of it is on its way`);
    return;
  }
  if (byHand) return;
  if (!(await forgetDay(client, day))) {
    log(`kept the history of ${day}, left detached by a run that stopped: a capture late in its transaction holds the day`);
    return;
  }
  await client.query(`drop table if exists webhooks_partitions.${pg.escapeIdentifier(partition)}`);
  log(`dropped the history of ${day}, left detached by a run that stopped`);
}

interface DetachedDayPartition { table_name: string; partition_name: string; settle: 'drop' | 'attach'; bound: string }

/** a day's results and attempts attached to nothing, and what becomes of them (webhooks.detached_day_partitions) */
async function detachedDayPartitions(client: pg.Client, name: string | null = null): Promise<DetachedDayPartition[]> {
  const { rows } = await client.query<DetachedDayPartition>(
    `select table_name, partition_name, settle, bound from webhooks.detached_day_partitions()
     where $1::text is null or partition_name = $1`, [name]);
  return rows;
}

// A day's results or attempts left detached by a run stopped before their drop: dropped
// when their day's history is gone (the day forgotten, its totals in the day counts),
// attached back when it is kept. Until 2026-12-07 they were left so for good.
async function settleDetachedDayPartition(
  client: pg.Client, { table_name: parent, partition_name: partition, settle, bound }: DetachedDayPartition,
  log: (line: string) => void,
): Promise<void> {
  const name = `webhooks_partitions.${pg.escapeIdentifier(partition)}`;
  if (settle === 'drop') {
    // (what depends on it, a DBA's view: the run that left it failed on it; the next
    // ones say so each time and go on with the retention)
    const refused = await refusedWith('2BP01', () => client.query(`drop table if exists ${name}`)); // dependent_objects_still_exist
    log(refused
      ? `left ${partition} detached, its day's history gone: ${refused.message}; drop what depends on it, and the next run drops it`
      : `dropped ${partition}, left detached by a run that stopped: its day's history gone`);
  } else {
    // (bound: the engine's own times, from webhooks.detached_day_partitions; a DBA's
    // table attached over them in its place, 42P17, is the DBA's to settle: said, and
    // the run goes on)
    const refused = await refusedWith('42P17', () => // invalid_object_definition: would overlap
      retried(() => client.query(`alter table webhooks.${pg.escapeIdentifier(parent)} attach partition ${name} ${bound}`)));
    log(refused
      ? `left ${partition} detached, its day kept: ${refused.message}`
      : `attached ${partition} back, left detached: its day's history is kept`);
  }
}

/** null once run succeeded; its error if Postgres refused it with SQLSTATE code (any other is thrown) */
async function refusedWith(code: string, run: () => Promise<unknown>): Promise<Error | null> {
  try {
    await run();
    return null;
  } catch (error) {
    if ((error as { code?: string }).code !== code) throw error;
    return error as Error;
  }
}

// A detach of a day's results or attempts left pending hides them from every query
// (the day's failures read as successes: a result row missing means succeeded; its
// deliveries' attempts are gone from their history) until it is finished: so each run
// finishes one at its start (after the days of today and ahead are made: one of them
// webhooks.create_partitions attaches back itself), and settles it as a stopped
// run's leftovers are. Until 2026-12-07 only that table's next detach did, a day past
// the retention or a tail moved ahead, perhaps days later
// (test/sql/retention-pending-detach.test.ts). (A day's history a run left pending is
// of a day past the retention, which expired_days names: finished by that day's drop
// in this run. One a DBA left pending still waits for the history's next detach.)
// A FINALIZE waits for the readers older than it, as the detach did: one that outlasts
// its tries is said, and the run goes on (the purges, the days it drops: not the
// roll-up, which would count the hidden rows' day wrong); the table's next detach
// tries again, or the next run. True: one is still pending.
async function finishDetachesOfDayRows(client: pg.Client, log: (line: string) => void): Promise<boolean> {
  const { rows: tables } = await client.query<{ table_name: string }>(
    `select table_name from webhooks_private.outbox_partitioned() where table_name <> 'delivery_history'`);
  let pending = false;
  for (const { table_name: table } of tables) {
    const refused = await refusedWith('55P03', () => finishDetachLeftPending(client, table, null, log)); // lock_not_available
    if (refused) log(`left a detach of ${table} pending: ${refused.message}; a later detach of it or the next run finishes it`);
    pending ||= refused !== null;
  }
  return pending;
}

// Postgres keeps one detach pending per partitioned table, and fails any other detach
// of it (55000, naming the pending one): a DETACH … CONCURRENTLY given up half way (its
// wait for an older reader ended at lock_timeout, and the run with it) is finished
// (FINALIZE) before the table's next detach, and what it leaves is treated as a stopped
// run's leftovers are (settleFinishedDetach). Until 2026-12-07 every later run failed
// on it, hourly, until a DBA finished it by hand (test/sql/retention-pending-detach.test.ts).
async function finishDetachLeftPending(
  client: pg.Client, parent: string, detaching: string | null, log: (line: string) => void,
): Promise<void> {
  const { rows: pending } = await client.query<{ partition: string; name: string; ours: boolean; bound: string }>(
    `select c.oid::regclass::text as partition, c.relname::text as name,
            c.relnamespace = 'webhooks_partitions'::regnamespace as ours, pg_get_expr(c.relpartbound, c.oid) as bound
     from pg_inherits i join pg_class c on c.oid = i.inhrelid
     where i.inhparent = $1::regclass and i.inhdetachpending and c.oid is distinct from to_regclass($2)`,
    [`webhooks.${pg.escapeIdentifier(parent)}`, detaching]);
  for (const left of pending) {
    await retried(() => client.query(
      `alter table webhooks.${pg.escapeIdentifier(parent)} detach partition ${left.partition} finalize`));
    log(`finished the detach of ${left.name}, left pending by a run that gave up`);
    await settleFinishedDetach(client, parent, left, log);
  }
}

// A partition whose pending detach was just finished, as a stopped run's leftovers are:
// a day's history past the retention as webhooks.detached_history_days names it; a
// tail's rows put back (webhooks.readmit_detached_tails, once the days are made); a
// day's results or attempts as webhooks.detached_day_partitions says (dropped when the
// engine was dropping their day and its history is gone), and anything else (a day
// kept, a DBA's) attached back where it was.
async function settleFinishedDetach(
  client: pg.Client, parent: string, left: { partition: string; name: string; ours: boolean; bound: string },
  log: (line: string) => void,
): Promise<void> {
  const { rows: [{ history, tail }] } = await client.query<{ history: DetachedHistory | null; tail: boolean }>(
    `select (select row_to_json(h) from (select to_char(d.day, 'YYYY-MM-DD') as day, d.partition_name, d.by_hand
                                         from webhooks.detached_history_days() d
                                         where $3 and $1 = 'delivery_history' and d.partition_name = $2) h) as history,
            $3 and $2 ~ ('^' || $1 || '_from_[0-9]{8}$') as tail`,
    [parent, left.name, left.ours]);
  const dayPartition = left.ours && parent !== 'delivery_history' ? (await detachedDayPartitions(client, left.name))[0] : undefined;
  if (history) {
    await settleDetachedHistory(client, history, log);
  } else if (tail) {
    await client.query('select webhooks.create_partitions()');
    await client.query('select webhooks.readmit_detached_tails()');
  } else if (dayPartition) {
    await settleDetachedDayPartition(client, dayPartition, log);
  } else {
    await retried(() => client.query(`alter table webhooks.${pg.escapeIdentifier(parent)} attach partition ${left.partition} ${left.bound}`));
    log(`attached ${left.name} back: its day is kept`);
  }
}

// A day's partitions, history's first: once it is detached no one can find the day's
// deliveries, and webhooks.keep_day_on_its_way looks again for one on its way (a
// replay let through after expired_days looked), attaching it back if so. False: the
// day is kept, its results and attempts untouched.
async function dropDay(
  client: pg.Client, parents: string[], partitions: string[], afterStep: (step: string) => void | Promise<void>,
  log: (line: string) => void,
): Promise<boolean> {
  const order = [...partitions.keys()].sort((a, b) =>
    Number(parents[b] === 'delivery_history') - Number(parents[a] === 'delivery_history'));
  for (const i of order) {
    const [parent, partition] = [parents[i]!, partitions[i]!];
    await detachPartition(client, parent, partition, log);
    await afterStep(`detached ${partition}`);
    if (parent === 'delivery_history') {
      const { rows: [{ kept }] } = await retried(() => client.query<{ kept: boolean }>(
        'select webhooks.keep_day_on_its_way($1) as kept', [partition]));
      if (kept) return false;
      await afterStep(`looked again at ${partition}`);
    }
    await client.query(`drop table if exists webhooks_partitions.${pg.escapeIdentifier(partition)}`);
    await afterStep(`dropped ${partition}`);
  }
  return true;
}

/** webhooks.forget_day: false when a late capture holds the day (it stays this run). */
async function forgetDay(client: pg.Client, day: string): Promise<boolean> {
  const { rows: [{ forgotten }] } = await client.query<{ forgotten: boolean }>(
    'select webhooks.forget_day($1::date) as forgotten', [day]);
  return forgotten;
}

// a statement that gave up waiting for a lock (lock_timeout) is tried again, a few times
async function retried<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if ((error as { code?: string }).code !== '55P03' || attempt >= TRIES) throw error; // lock_not_available
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}

// `npm run maintain`
if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('DATABASE_URL is not set: point it at the database as its owner (as for npm run migrate)');
    process.exit(2);
  }
  if (databaseUrlRefusal(url)) {
    console.error(databaseUrlRefusal(url));
    process.exit(2);
  }
  let settings: ReturnType<typeof maintainSettings>;
  try {
    settings = maintainSettings();
  } catch (error) {
    console.error((error as Error).message);
    process.exit(2);
  }
  const result = await maintain(url, (line) => console.log(line), settings).catch((error: Error) => {
    // its sentence says what happened and what to do; a stack would bury it
    console.error(error instanceof RunLockBusy
      ? error.message
      : error instanceof MaintainNotConnected
      ? `maintain could not connect to the database (${error.message}): nothing was done; run it again once the database answers`
      : isConnectionError(error)
      ? `maintain lost its connection to the database (${error.message}): the steps it finished are kept; run it again to finish`
      : `maintain failed: ${error.message}`);
    process.exit(1);
  });
  console.log(
    `partitions made: ${result.partitionsMade}; tails: ${result.tails}; day counts rolled up: ${result.daysRolledUp} (of ${result.webhooksRolledUp} webhooks visited); ` +
      `deleted webhooks' deliveries removed: ${result.deliveriesPurged}; ` +
      `days dropped: ${result.daysDropped.length ? result.daysDropped.join(', ') : 'none'}`,
  );
}
