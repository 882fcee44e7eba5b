// Every statement the relay sends, one exported function each: the rest of the relay
// holds no SQL. Each calls one function of the engine (sql/30_delivery.sql,
// sql/20_wakeup.sql, sql/35_backfill.sql), which decides; the relay only asks. Claim and settle are named
// (prepared once per connection): they run thousands of times a second under load.
import pg from 'pg';
import { DatabaseClock } from './database-clock.ts';

type Db = Pick<pg.Pool | pg.Client, 'query'>;

const INT8 = pg.types.builtins.INT8;
/** text[] (pg's TypeId names base types only) */
const TEXT_ARRAY = 1009 as Parameters<typeof pg.types.getTypeParser>[0];
const keptAsText = (value: string) => value;
const textArray = pg.types.getTypeParser(TEXT_ARRAY, 'text');
const EMPTY_TEXT_ARRAY = '{}';

/**
 * How the claim's and the settle's answers are read: as pg reads them, with the same
 * values, but two of its parsers spared where they make each row cost more. A bigint
 * (the ids) is the text it arrives as, which pg's parser keeps too, after testing it
 * with a regular expression; an empty text[] (a webhook's previous secrets, nearly
 * always none) is an empty array without an array parser made for it. Together
 * about 400 bytes of heap a claimed delivery (BENCHMARKS.md, "What the relay
 * allocates per delivery").
 */
const ENGINE_ROWS: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) => {
    if (format === 'binary') return pg.types.getTypeParser(oid, 'binary');
    if (oid === INT8) return keptAsText;
    if (oid === TEXT_ARRAY) return (value: string) => (value === EMPTY_TEXT_ARRAY ? [] : textArray(value));
    return pg.types.getTypeParser(oid, 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** One delivery as leased: everything needed to send it. */
export interface DeliveryJob {
  deliveryId: string;
  messageId: string;
  webhookId: string;
  /** its webhook's company: the relay shares its free request slots between companies (slots.ts) */
  companyId: string;
  /** the number of this attempt, 1 for the first */
  attempt: number;
  url: string;
  /** the stored payload, serialised once by Postgres: sent and signed byte for byte */
  body: string;
  secret: string | null;
  /** the rotated-out secrets still valid (sql/15_secrets.sql): each signs too */
  previousSecrets: string[];
  /**
   * The webhook's rate_limit pacing (epoch ms on this relay's clock; null: not
   * paced): sent not before sendAt and before sendUntil, else handed back (the
   * claim's slots add up to the rate across the whole fleet). The database gives the
   * slot on its own clock; database-clock.ts places it on the relay's.
   */
  sendAt: number | null;
  sendUntil: number | null;
  /**
   * Its webhook changed (a webhook_changed notice: its URL, secret or state) while
   * this relay held it (holdings.ts): the request may have gone to a URL the webhook
   * no longer has, so its result carries the URL, a success's too (AttemptRecord.url).
   */
  webhookChanged?: boolean;
}

export interface ClaimRequest {
  relayId: string;
  /** at most this many deliveries, all webhooks together */
  limit: number;
  leaseMs: number;
  /**
   * at most this many deliveries of one webhook held by this relay once the claim is
   * done, counting `heldByWebhook`: its request slots plus its prefetch queue
   */
  perWebhookCap: number;
  /** webhooks held whose cap is not perWebhookCap, and their cap */
  capByWebhook: ReadonlyMap<string, number>;
  /** deliveries this relay holds now (in flight and queued), per webhook id */
  heldByWebhook: ReadonlyMap<string, number>;
  /** refill these webhooks only; null: discover due work of all webhooks */
  only: string[] | null;
  /** the relay's request slots: each company with work gets its share of them */
  slots: number;
  /** the bytes of the bodies this relay holds now, per webhook id (a key missing: none) */
  heldBytesByWebhook: ReadonlyMap<string, number>;
  /** the most bytes of bodies it may hold: each company with work gets its share (null: no bound) */
  byteBudget: number | null;
  /** the company of each webhook held (a key of heldByWebhook missing: the claim looks it up) */
  companyByWebhook: ReadonlyMap<string, string>;
}

export interface Claimed {
  jobs: DeliveryJob[];
  /** webhooks that took all the claim allowed them (their caps, their company's share, the batch): more may be due */
  filled: Set<string>;
  /** a discovery was cut off at the limit: more may be due now */
  moreDue: boolean;
  /** a webhook with due deliveries was at its fleet-wide cap: look again after a settle */
  atCap: boolean;
  /** nothing leased: every webhook the claim could serve was being claimed by another relay; look again shortly */
  lanesBusy: boolean;
  /** a discovery that began a round of fruitless discoveries: its token (discovery_round_note, sql/28_lanes.sql) */
  roundBegan: string | null;
  /** a discovery that ended a round begun fruitless: what a sleeping relay's poll checks before skipping its walk */
  roundQuiet: QuietRound | null;
}

/** A round of discoveries that came round finding no lane that may send (discovery_round_note). */
export interface QuietRound {
  /** the token of the discovery that began it (Claimed.roundBegan) */
  token: string;
  /** no lane it walked may send before this (epoch ms, the database's clock; Infinity: none waiting) */
  untilMs: number;
}

/** 'token until', as discovery_round_note says it, or null. */
function quietRound(said: string | null | undefined): QuietRound | null {
  const [token, until] = (said ?? '').split(' ');
  if (!token || until === undefined) return null;
  const untilMs = Number(until);
  return Number.isNaN(untilMs) ? null : { token, untilMs };
}

/**
 * Leases a batch of due deliveries to this relay (webhooks_relay.claim_deliveries);
 * `clock` notes the database's time of the answer and places the slots on this relay's.
 */
export async function claimDeliveries(db: Db, request: ClaimRequest, clock: DatabaseClock = new DatabaseClock()): Promise<Claimed> {
  const asked = Date.now();
  // the webhooks held, in one order for the four arrays that describe them
  const heldWebhooks = [...request.heldByWebhook.keys()];
  const { rows } = await db.query({
    name: 'bpd_webhooks_claim',
    types: ENGINE_ROWS,
    text: `
      select delivery_id, message_id, webhook_id, attempt, url, body, secret, previous_secrets,
             (extract(epoch from send_at) * 1000)::float8 as send_at,
             (extract(epoch from send_until) * 1000)::float8 as send_until, webhook_filled, more_due, at_cap,
             lanes_busy, company_id, (extract(epoch from clock_timestamp()) * 1000)::float8 as database_now,
             -- (what the claim's transaction noted of a round of fruitless discoveries:
             -- discovery_round_note, sql/28_lanes.sql)
             nullif(current_setting('bpd_webhooks.discovery_round_began', true), '') as round_began,
             nullif(current_setting('bpd_webhooks.discovery_round_quiet', true), '') as round_quiet
      -- (a row without a delivery when the claim returns none: the settings above
      -- are read after the claim has run, whatever it returned)
      from (select) answered
      left join lateral webhooks_relay.claim_deliveries($1, $2, make_interval(secs => $3::float8 / 1000), $4, $5::bigint[], $6::integer[], $7::bigint[], $8, $9::integer[],
                                                  null, $10::bigint[], $11, $12::bigint[]) on true`,
    values: [
      request.relayId,
      request.limit,
      request.leaseMs,
      request.perWebhookCap,
      heldWebhooks,
      [...request.heldByWebhook.values()],
      request.only,
      request.slots,
      heldWebhooks.map((id) => request.capByWebhook.get(id) ?? null),
      heldWebhooks.map((id) => request.heldBytesByWebhook.get(id) ?? 0),
      request.byteBudget,
      heldWebhooks.map((id) => request.companyByWebhook.get(id) ?? null),
    ],
  });
  // the database's time as the last row left it, between this relay's when it asked
  // and now that all have arrived: the slots' times as this relay's clock reads them
  if (rows.length > 0) clock.observe(Number(rows.at(-1)!.database_now), asked, Date.now());
  // a row without a delivery only says at_cap or lanes_busy, or carries the settings alone
  const jobs = rows.filter((row) => row.delivery_id !== null).map((row) => ({
    deliveryId: row.delivery_id,
    messageId: row.message_id,
    webhookId: row.webhook_id,
    companyId: row.company_id,
    attempt: row.attempt,
    url: row.url,
    body: row.body,
    secret: row.secret,
    previousSecrets: row.previous_secrets,
    sendAt: row.send_at === null ? null : clock.toLocal(Number(row.send_at)),
    sendUntil: row.send_until === null ? null : clock.toLocal(Number(row.send_until)),
    webhookChanged: false,
  }));
  const filled = new Set<string>(rows.filter((row) => row.webhook_filled).map((row) => row.webhook_id));
  return {
    jobs,
    filled,
    moreDue: rows.some((row) => row.more_due),
    atCap: rows.some((row) => row.at_cap),
    lanesBusy: rows.some((row) => row.lanes_busy),
    roundBegan: rows[0]?.round_began ?? null,
    roundQuiet: quietRound(rows[0]?.round_quiet),
  };
}

/**
 * Before a look's discoveries: the deliveries written so far, or null while a capture
 * that may be invisible to them is open (webhooks_relay.quiet_since, sql/20_wakeup.sql).
 */
export async function quietSince(db: Db): Promise<string | null> {
  const { rows } = await db.query({
    name: 'bpd_webhooks_quiet_since',
    types: ENGINE_ROWS,
    text: 'select webhooks_relay.quiet_since() as written',
  });
  return rows[0]?.written ?? null;
}

/**
 * Whether a sleeping relay's poll may skip its walk of the lanes after `round`, begun
 * with `written` deliveries written (webhooks_relay.poll_may_skip, sql/20_wakeup.sql):
 * none written since, no capture open, and none of its lanes may send yet.
 */
export async function pollMaySkip(db: Db, round: QuietRound, written: string): Promise<boolean> {
  const { rows } = await db.query({
    name: 'bpd_webhooks_poll_may_skip',
    text: 'select webhooks_relay.poll_may_skip($1::bigint, $2::float8) as skip',
    values: [written, round.untilMs],
  });
  return rows[0]?.skip === true;
}

/** What one attempt came to, as settle_deliveries takes it. */
export interface AttemptRecord {
  deliveryId: string;
  attempt: number;
  attemptedAt: Date;
  durationMs: number;
  /** null: no HTTP status (refused destination, timeout, reset, …) */
  statusCode: number | null;
  /** the transport error, or a note on the response (a redirect not followed) */
  error: string | null;
  responseBody: string | null;
  retryAfterSeconds: number | null;
  /**
   * the URL the attempt was sent to (the claim's), for an attempt that did not
   * succeed, and for a success whose webhook changed while it was held
   * (DeliveryJob.webhookChanged); else null. An attempt to a URL its webhook no longer
   * has counts towards nothing of its breaker nor its disabling (sql/30_delivery.sql).
   */
  url: string | null;
}

export interface SettledDelivery {
  state: 'succeeded' | 'pending' | 'failed';
  /** when a retry is due (null unless pending: nothing else needs it parsed) */
  nextAttemptAt: Date | null;
}

/**
 * An array parameter of numbers (or the decimal strings of bigints) as a Postgres
 * array literal, null as NULL. pg's own conversion quotes each element on its way;
 * for the settle's arrays, times included, it cost about 2 µs a delivery against 1
 * (BENCHMARKS.md). None of these values needs quoting; text keeps pg's conversion.
 */
export function numberArray(values: ReadonlyArray<number | string | null>): string {
  return `{${values.map((v) => v ?? 'NULL').join(',')}}`;
}

/** An array parameter of times as a Postgres array literal, each in ISO 8601 (UTC, ms). */
export function timeArray(values: readonly Date[]): string {
  return `{${values.map((d) => d.toISOString()).join(',')}}`;
}

/**
 * Writes a batch of attempts (webhooks_relay.settle_deliveries): SQL decides success,
 * retry or failure. The answer has a row for each delivery still leased to this
 * relay; one missing had its lease run out (another relay owns it now).
 */
export async function settleDeliveries(db: Db, relayId: string, batch: readonly AttemptRecord[]): Promise<Map<string, SettledDelivery>> {
  const { rows } = await db.query({
    name: 'bpd_webhooks_settle',
    types: ENGINE_ROWS,
    text: `
      select delivery_id, state, case when state = 'pending' then next_attempt_at end as next_attempt_at
      from webhooks_relay.settle_deliveries($1, $2::bigint[], $3::integer[], $4::timestamptz[], $5::integer[],
                                              $6::integer[], $7::text[], $8::text[], $9::integer[], $10::text[])`,
    values: [
      relayId,
      numberArray(batch.map((r) => r.deliveryId)),
      numberArray(batch.map((r) => r.attempt)),
      timeArray(batch.map((r) => r.attemptedAt)),
      numberArray(batch.map((r) => r.durationMs)),
      numberArray(batch.map((r) => r.statusCode)),
      batch.map((r) => r.error),
      batch.map((r) => r.responseBody),
      numberArray(batch.map((r) => r.retryAfterSeconds)),
      // (a batch of successes of webhooks that did not change sends none: nothing a delivery)
      batch.some((r) => r.url !== null) ? batch.map((r) => r.url) : null,
    ],
  });
  return new Map(rows.map((row) => [row.delivery_id as string, { state: row.state, nextAttemptAt: row.next_attempt_at }]));
}

/**
 * Hands deliveries claimed but never sent back (webhooks_relay.release_deliveries):
 * pending again, the attempt not counted. Returns how many were still this relay's.
 */
export async function releaseDeliveries(db: Db, relayId: string, deliveryIds: readonly string[]): Promise<number> {
  const { rows } = await db.query('select webhooks_relay.release_deliveries($1, $2::bigint[]) as released', [relayId, deliveryIds]);
  return rows[0].released as number;
}

/**
 * Hands back every delivery leased to this relay but not among `heldIds`: what a claim
 * whose answer was lost leased (webhooks_relay.release_unheld_leases). Returns how
 * many were released.
 */
export async function releaseUnheldLeases(db: Db, relayId: string, heldIds: readonly string[]): Promise<number> {
  const { rows } = await db.query('select webhooks_relay.release_unheld_leases($1, $2::bigint[]) as released', [relayId, numberArray(heldIds)]);
  return rows[0].released as number;
}

/** Returns deliveries whose lease ran out to pending (webhooks_relay.rescue_expired_leases). */
export async function rescueExpiredLeases(db: Db): Promise<number> {
  const { rows } = await db.query('select webhooks_relay.rescue_expired_leases() as rescued');
  return rows[0].rescued as number;
}

export interface BackfillStepped {
  /** the snapshots written, 0 when none had room or work */
  written: number;
  /** the webhooks whose backfill waits for room (its snapshots unfinished): a settle of theirs may make it */
  waiting: string[];
  /** the step served its limit of backfills, and running ones are left after them: step again at once */
  more: boolean;
}

/**
 * One step of the running backfills (webhooks_relay.backfill_step_waiting, or of
 * `only` alone).
 */
export async function backfillStep(db: Db, only: string | null = null): Promise<BackfillStepped> {
  const { rows } = await db.query({
    text: 'select written, waiting, more from webhooks_relay.backfill_step_waiting(p_only => $1::bigint)',
    values: [only],
    types: ENGINE_ROWS,
  });
  return { written: rows[0].written as number, waiting: rows[0].waiting as string[], more: rows[0].more as boolean };
}

/**
 * On the relay's idle connection: announces that the relay is going idle (from now
 * on captures notify). True when no capturing transaction that skipped its NOTIFY is
 * still open (webhooks_relay.going_idle).
 */
export async function goingIdle(db: Db): Promise<boolean> {
  const { rows } = await db.query('select webhooks_relay.going_idle() as safe');
  return rows[0].safe === true;
}

/**
 * On the relay's idle connection, while it holds relay_idle: true once every capturing
 * transaction that skipped its NOTIFY has ended (webhooks_relay.captures_done). Takes
 * no lock that outlives the call.
 */
export async function capturesDone(db: Db): Promise<boolean> {
  const { rows } = await db.query('select webhooks_relay.captures_done() as done');
  return rows[0].done === true;
}

/**
 * On the relay's idle connection: gives back relay_idle, taken once by goingIdle
 * (webhooks_relay.awake). Call it once per goingIdle that succeeded: no more.
 */
export async function awake(db: Db): Promise<void> {
  await db.query('select webhooks_relay.awake()');
}

/** An engine setting whose value as set is not the one in force (sql/02_settings.sql). */
export interface RefusedSetting {
  name: string;
  set_to: string;
  value: string;
  refusal: string;
}

/** The engine's settings whose value as set was refused (webhooks_ops.refused_settings). */
export async function refusedSettings(db: Db): Promise<RefusedSetting[]> {
  const { rows } = await db.query<RefusedSetting>('select name, set_to, value, refusal from webhooks_ops.refused_settings()');
  return rows;
}

/**
 * The switch that keeps a copy of a database (a restored backup, a staging copy, a
 * promoted standby) from sending what it holds: `alter database … set webhooks.sending
 * = off`. A relay reads it at start and exits; one running reads it on the rescuer's
 * timer, as its next start would have it, and stops (docs/operations.md, "Backups and
 * copies").
 */
export const SENDING_SETTING = 'webhooks.sending';

/**
 * SENDING_SETTING as a session of this relay's started now would have it (null:
 * unset). A session sees a change of `alter database … set` or `alter role … set` only
 * when it starts, and the relay keeps its sessions: this reads the catalog, where a
 * change shows at once, in the order Postgres applies it at a session's start: the
 * login role's setting in this database, else the login role's own, else this
 * database's, else every role's in every database. The login role is session_user,
 * not the role the relay's sessions switch to (RELAY_DB_ROLE): Postgres applies a
 * role's settings at login only. (Until 2026-12-07 the database's alone was read: a
 * relay stopped for one set for its login only at its next start.)
 */
export async function databaseSending(db: Db): Promise<string | null> {
  const { rows } = await db.query<{ sending: string | null }>(
    `select (select substr(setting, length($1) + 2)
               from pg_catalog.pg_db_role_setting, unnest(setconfig) as setting
              where setdatabase in (0, (select oid from pg_catalog.pg_database where datname = current_database()))
                and setrole in (0, (select oid from pg_catalog.pg_roles where rolname = session_user))
                and starts_with(setting, $1 || '=')
              order by setrole = 0, setdatabase = 0
              limit 1) as sending`,
    [SENDING_SETTING],
  );
  return rows[0]!.sending;
}

/**
 * The cheapest statement that proves the connection works under the relay's role, and
 * says whether its transactions are read-only (default_transaction_read_only = on for
 * the database or the user, or a standby): then every claim would fail; and what
 * SENDING_SETTING is set to (null: unset).
 */
export async function ping(db: Db): Promise<{ readOnly: boolean; sending: string | null }> {
  const { rows } = await db.query<{ read_only: boolean; sending: string | null }>(
    `select current_setting('transaction_read_only')::boolean as read_only, nullif(current_setting($1, true), '') as sending`,
    [SENDING_SETTING],
  );
  return { readOnly: rows[0]!.read_only, sending: rows[0]!.sending };
}

/**
 * Whether SENDING_SETTING lets the relay send: unset or on (Postgres's spellings of a
 * boolean); 'refused' for any other value, so that a typo stops a copy rather than lets
 * it send.
 */
export function sendingAllowed(value: string | null): boolean | 'refused' {
  if (value === null) return true;
  const word = value.trim().toLowerCase();
  if (['on', 'true', 'yes', '1'].includes(word)) return true;
  if (['off', 'false', 'no', '0'].includes(word)) return false;
  return 'refused';
}

/** Why the relay does not send, for a value of SENDING_SETTING that sendingAllowed does not allow. */
export function sendingRefusal(value: string | null, allowed: false | 'refused'): string {
  return `the relay does not send from this database: ${SENDING_SETTING} = '${value}'` +
    (allowed === 'refused' ? ', which is neither on nor off' : '') +
    ` (a copy of a database, docs/operations.md "Backups and copies"); where it should send: alter database … reset ${SENDING_SETTING}`;
}
