// A model check of the totals (docs/outbox.md "Totals that outlive the rows"): several
// connections at once capture contact writes (some in transactions held open across
// other work, some rolled back, some REPEATABLE READ), write deliveries into past days
// on either side of a UTC midnight and of the retention's edge, claim and settle
// deliveries as the relay does (relay/queries.ts: success, retry, failure), replay
// them (one, and a webhook's failed), roll the counts up, drop the days past the
// retention (tools/maintain.ts), and disable and delete a webhook. Beside it the test
// keeps what was committed (each delivery's webhook, time and state, as the engine's
// answers said it: a capture's rows as its transaction saw them, a settle's, a
// replay's), and at checkpoints asserts that webhooks.daily_counts, the report's counts
// (webhooks.webhook_report) and the history's counts (webhooks.webhooks_history_count)
// for several ranges equal it exactly, before and after a roll-up and a drop. The
// random choices come from a seed (TOTALS_MODEL_SEED to run one again), logged.
import test from 'ava';
import pg from 'pg';
import { maintain } from '../../tools/maintain.ts';
import { claimDeliveries, settleDeliveries } from '../../relay/queries.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories, type Webhook } from '../helpers/factories.ts';
import { utcDay } from '../helpers/days.ts';

const db = useTestDatabase(test);

const HOUR = 3_600_000;
const RETENTION_DAYS = 5;
const SESSIONS = 4;
const ROUNDS = 80;
const RELAY = 'totals-model-relay';

/** mulberry32: a small PRNG whose whole state is the seed */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)] };
}

type State = 'pending' | 'succeeded' | 'failed';
interface Known { webhookId: string; createdAt: Date; state: State }
type Counts = { fired: number; succeeded: number; failed: number; pending: number };

const dayOf = (at: Date) => at.toISOString().slice(0, 10);

/** What was committed: every delivery, by id (kept after its day is dropped). */
class Truth {
  deliveries = new Map<string, Known>();
  /** states an answer gave for a delivery not known yet (its capture's commit still on its way back) */
  early = new Map<string, State>();
  deleted = new Set<string>();
  dropped = new Set<string>();

  add(id: string, webhookId: string, createdAt: Date, state: State) {
    this.deliveries.set(id, { webhookId, createdAt, state: this.early.get(id) ?? state });
    this.early.delete(id);
  }

  set(id: string, state: State) {
    const known = this.deliveries.get(id);
    if (known) known.state = state;
    else this.early.set(id, state);
  }

  of(webhookId: string, since: Date | null, until: Date | null, keptOnly = false): Counts {
    const counts = { fired: 0, succeeded: 0, failed: 0, pending: 0 };
    for (const d of this.deliveries.values()) {
      if (d.webhookId !== webhookId) continue;
      if (since && d.createdAt < since) continue;
      if (until && d.createdAt >= until) continue;
      if (keptOnly && this.dropped.has(dayOf(d.createdAt))) continue;
      counts.fired++;
      counts[d.state]++;
    }
    return counts;
  }

  byDay(webhookIds: string[]): Record<string, Counts> {
    const days: Record<string, Counts> = {};
    for (const d of this.deliveries.values()) {
      if (!webhookIds.includes(d.webhookId)) continue;
      const counts = (days[`${d.webhookId} ${dayOf(d.createdAt)}`] ??= { fired: 0, succeeded: 0, failed: 0, pending: 0 });
      counts.fired++;
      counts[d.state]++;
    }
    return days;
  }
}

interface Session {
  client: pg.Client;
  pid: number;
  /** a capture's transaction held open: the contacts it wrote, the rounds it stays open, commit or roll back */
  open: { rows: Array<{ id: string; webhook_id: string; created_at: Date }>; rounds: number; commit: boolean } | null;
}

test('the totals equal what was committed, under concurrent captures, settles, replays, roll-ups and drops', async (t) => {
  const seed = Number(process.env.TOTALS_MODEL_SEED ?? Math.floor(Math.random() * 2 ** 31));
  t.log(`seed ${seed} (TOTALS_MODEL_SEED=${seed} runs it again)`);
  const rnd = random(seed);
  const pool = db().pool;
  await pool.query(`alter database ${db().name} set webhooks.retention = '${RETENTION_DAYS} days'`);
  const f = factories(pool);
  const company = await f.company();
  // two that fail at the first error, one that retries; created and updated contacts
  const webhooks: Webhook[] = [
    await f.webhook({ companyId: company.id, actions: ['contact.created'], maxAttempts: 1 }),
    await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], maxAttempts: 1 }),
    await f.webhook({ companyId: company.id, actions: ['contact.updated'] }),
    await f.webhook({ companyId: company.id, actions: ['contact.created'], maxAttempts: 1 }),
  ];
  const [toDisable, toDelete] = [webhooks[1], webhooks[3]];
  const disabled = new Set<string>();
  const truth = new Truth();
  const live = () => webhooks.filter((w) => !truth.deleted.has(w.id)).map((w) => w.id);
  const sessions: Session[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const client = new pg.Client({ connectionString: db().url });
    await client.connect();
    t.teardown(() => client.end());
    const { rows: [{ pid }] } = await client.query('select pg_backend_pid() as pid');
    sessions.push({ client, open: null, pid });
  }
  const ops: Record<string, number> = {};
  // what each connection does now (said with an error, for what another was doing)
  const doing: string[] = [];
  const count = (op: string) => { ops[op] = (ops[op] ?? 0) + 1; };

  // A webhook's delete beside a settle of its deliveries in flight can deadlock (each
  // takes the other's queue rows; the API answers TRY_AGAIN): tried again, and
  // counted, as the relay and an admin do
  async function againOnDeadlock<T>(what: string, run: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await run();
      } catch (error) {
        if ((error as { code?: string }).code !== '40P01' || attempt >= 3) throw error;
        count(`deadlock, ${what} tried again`);
      }
    }
  }

  async function capture(s: Session) {
    const isolation = rnd.pick(['read committed', 'read committed', 'repeatable read']);
    await s.client.query(`begin isolation level ${isolation}`);
    const { rows: contacts } = await s.client.query(
      `insert into crm.contacts (company_id, first_name, email)
       select $1, 'Model ' || n, 'model.' || n || '.' || md5(random()::text) || '@example.com'
       from generate_series(1, $2::int) n returning id`, [company.id, 1 + rnd.int(3)]);
    const ids = contacts.map((c) => c.id);
    if (rnd.next() < 0.4) await s.client.query(`update crm.contacts set last_name = 'Updated' where id = $1`, [ids[0]]);
    // the deliveries as the transaction sees them, before anyone can claim them
    const { rows } = await s.client.query(
      'select id, webhook_id, created_at from webhooks.deliveries where company_id = $1 and contact_id = any ($2::bigint[])',
      [company.id, ids]);
    s.open = { rows, rounds: rnd.next() < 0.3 ? 1 + rnd.int(4) : 0, commit: rnd.next() < 0.8 };
    count(`capture (${isolation}${s.open.rounds ? ', held open' : ''}${s.open.commit ? '' : ', rolled back'})`);
    if (s.open.rounds === 0) await finish(s);
  }

  async function finish(s: Session) {
    const open = s.open!;
    s.open = null;
    if (!open.commit) {
      await s.client.query('rollback');
      return;
    }
    await s.client.query('commit');
    for (const row of open.rows) truth.add(row.id, row.webhook_id, row.created_at, 'pending');
  }

  /**
   * deliveries written into a past day (as a DBA does), around its midnight: not into a
   * day dropped (of contact 0, which no capture's contact is)
   */
  async function writePast(s: Session) {
    const day = -1 - rnd.int(RETENTION_DAYS + 3);
    const at = new Date(utcDay(day).getTime() + (rnd.next() < 0.5 ? -1 : 1) * rnd.int(90) * 60_000 + rnd.int(59_000));
    if (truth.dropped.has(dayOf(at))) return;
    const webhookId = rnd.pick(live().filter((id) => !disabled.has(id)));
    if (!webhookId) return;
    const states = Array.from({ length: 1 + rnd.int(3) }, () => rnd.pick(['succeeded', 'failed', 'pending'] as const));
    count('write into a past day');
    const { rows } = await s.client.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
       select $1, $2, 'contact.created', 0, '{}', st, case when st = 'pending' then 0 else 1 end,
              case when st = 'pending' then null else $3::timestamptz end, $3::timestamptz
       from unnest($4::text[]) st
       returning id, created_at, state`, [webhookId, company.id, at, states]).catch((error) => {
      const { constraint } = error as { constraint?: string };
      // a webhook another session deleted meanwhile takes no writes by hand
      if (constraint === 'delivery_webhook_of_company' && truth.deleted.has(webhookId)) {
        count('write into a past day refused (delivery_webhook_of_company: its webhook deleted meanwhile)');
        return { rows: [] };
      }
      // a day dropped meanwhile (or one without deliveries, dropped all the same) takes no writes
      if (constraint !== 'delivery_past_retention') throw error;
      count('write into a past day refused (delivery_past_retention)');
      return { rows: [] };
    });
    for (const row of rows) truth.add(row.id, webhookId, row.created_at, row.state);
  }

  async function claimAndSettle(s: Session, { limit = 1 + rnd.int(6), status }: { limit?: number; status?: number } = {}) {
    count('claim and settle');
    const claimed = await claimDeliveries(s.client, {
      relayId: RELAY, limit, leaseMs: 60_000, perWebhookCap: 10, capByWebhook: new Map(),
      heldByWebhook: new Map(), only: null, slots: 10, heldBytesByWebhook: new Map(), byteBudget: null,
      companyByWebhook: new Map(),
    });
    // a disabled webhook's deliveries a claim came upon are failed by it, unsent
    if (disabled.size > 0) await readBackDisabled(s);
    if (claimed.jobs.length === 0) return;
    const settled = await againOnDeadlock('the settle', () => settleDeliveries(s.client, RELAY, claimed.jobs.map((job) => ({
      deliveryId: job.deliveryId, attempt: job.attempt, attemptedAt: new Date(), durationMs: 5,
      statusCode: status ?? (rnd.next() < 0.6 ? 200 : 500), error: null, responseBody: null, retryAfterSeconds: null, url: job.url,
    }))));
    for (const [id, { state }] of settled) truth.set(id, state);
  }

  async function readBackDisabled(s: Session) {
    const pending = [...truth.deliveries].filter(([, d]) => disabled.has(d.webhookId) && d.state === 'pending').map(([id]) => id);
    const { rows } = await s.client.query(`select id, state from webhooks.deliveries where id = any ($1::bigint[]) and state = 'failed'`, [pending]);
    for (const row of rows) truth.set(row.id, 'failed');
  }

  async function replayOne(s: Session) {
    const finished = [...truth.deliveries].filter(([, d]) =>
      d.state !== 'pending' && !disabled.has(d.webhookId) && !truth.deleted.has(d.webhookId));
    if (finished.length === 0) return;
    const [id] = rnd.pick(finished);
    count('replay a delivery');
    try {
      const { rows: [row] } = await s.client.query('select (webhooks.replay_delivery($1)).state', [id]);
      truth.set(id, row.state);
    } catch (error) {
      // refused: past the retention, gone with its day, in flight, or its webhook
      // disabled or deleted beside it
      const constraint = (error as { constraint?: string }).constraint;
      if (!['delivery_past_retention', 'delivery_not_found', 'delivery_in_flight', 'webhook_disabled', 'webhook_not_found']
        .includes(constraint ?? '')) throw error;
      count(`replay refused (${constraint})`);
    }
  }

  async function replayFailed(s: Session) {
    const webhookId = rnd.pick(live().filter((id) => !disabled.has(id)));
    if (!webhookId) return;
    count('replay a webhook\'s failed');
    try {
      const { rows } = await s.client.query('select id, state from webhooks.replay_failed($1, $2)', [webhookId, utcDay(-RETENTION_DAYS + 1)]);
      for (const row of rows) truth.set(row.id, row.state);
    } catch (error) {
      // its webhook disabled or deleted beside it
      const constraint = (error as { constraint?: string }).constraint;
      if (!['webhook_disabled', 'webhook_not_found'].includes(constraint ?? '')) throw error;
      count(`replay refused (${constraint})`);
    }
  }

  async function rollUp(s: Session) {
    count('roll-up');
    await s.client.query('call webhooks.roll_up_report_counts()');
  }

  // (a drop waits for the transactions open: one held open across rounds makes the
  // run give up, as it does every hour, and the next one finishes it)
  let dropHeldUp = false;
  async function drop(_s?: Session) {
    count('maintenance (roll-up and drop)');
    try {
      const result = await maintain(db().url);
      for (const day of result.daysDropped) truth.dropped.add(day);
      dropHeldUp = false;
    } catch (error) {
      if ((error as { code?: string }).code !== '55P03') throw error;
      count('maintenance held up by an open transaction');
      dropHeldUp = true;
    }
  }

  async function disableOrDelete(s: Session) {
    if (!disabled.has(toDisable.id)) {
      count('disable a webhook');
      disabled.add(toDisable.id);
      await s.client.query('select webhooks.disable_webhook($1)', [toDisable.id]);
    } else if (!truth.deleted.has(toDelete.id)) {
      count('delete a webhook');
      truth.deleted.add(toDelete.id);
      await againOnDeadlock('the delete', () => s.client.query('select webhooks.delete_webhook($1)', [toDelete.id]));
    }
  }

  // the ranges asked: a day, one across a midnight, one reaching past the retention, all
  const ranges: Array<[string, Date | null, Date | null]> = [
    ['yesterday', utcDay(-1), utcDay(0)],
    ['today', utcDay(0), utcDay(1)],
    ['across a midnight', new Date(utcDay(-2).getTime() - 12 * HOUR), new Date(utcDay(-2).getTime() + 12 * HOUR)],
    ['the days past the retention\'s edge', utcDay(-RETENTION_DAYS - 4), utcDay(-RETENTION_DAYS + 1)],
    ['all', null, null],
  ];

  async function check(when: string) {
    const ids = live();
    const where = `seed ${seed}, ${when}`;
    const { rows: daily } = await pool.query(
      `select webhook_id, to_char(day, 'YYYY-MM-DD') as day, fired::int, succeeded::int, failed::int, pending::int
       from webhooks.daily_counts where company_id = $1`, [company.id]);
    const said: Record<string, Counts> = {};
    for (const r of daily) said[`${r.webhook_id} ${r.day}`] = { fired: r.fired, succeeded: r.succeeded, failed: r.failed, pending: r.pending };
    const expected = truth.byDay(ids);
    const saidOf = (key: string) => JSON.stringify(said[key]);
    const keys = new Set([...Object.keys(said), ...Object.keys(expected)]);
    {
      // what the rows kept say of each day that differs, and what the truth holds of it
      for (const key of keys) {
        if (saidOf(key) === JSON.stringify(expected[key])) continue;
        const [webhookId, day] = key.split(' ');
        const { rows: kept } = await pool.query(
          `select id, state, created_at from webhooks.deliveries where webhook_id = $1 and created_at >= $2::date and created_at < $2::date + 1 order by id`,
          [webhookId, day]);
        const known = [...truth.deliveries].filter(([, d]) => d.webhookId === webhookId && dayOf(d.createdAt) === day);
        t.log(key, 'rows:', JSON.stringify(kept), 'truth:', JSON.stringify(known));
      }
    }
    t.deepEqual(said, expected, `webhooks.daily_counts, ${where}`);
    for (const [name, since, until] of ranges) {
      const { rows: report } = await pool.query(
        `select webhook_id::text as id, times_fired::int as fired, times_succeeded::int as succeeded, times_failed::int as failed
         from webhooks.webhook_report(since => $1, until => $2) where webhook_id = any ($3::bigint[])`, [since, until, ids]);
      for (const id of ids) {
        const expected = truth.of(id, since, until);
        t.deepEqual(report.find((r) => r.id === id), { id, fired: expected.fired, succeeded: expected.succeeded, failed: expected.failed },
          `the report of ${name} for webhook ${id}, ${where}`);
        // the history counts the days kept only
        const kept = truth.of(id, since, until, true);
        const { rows: [history] } = await pool.query(
          `select webhooks.webhooks_history_count(w, $2, $3)::int as all,
                  webhooks.webhooks_history_count(w, $2, $3, 'succeeded')::int as succeeded,
                  webhooks.webhooks_history_count(w, $2, $3, 'failed')::int as failed
           from webhooks.webhooks w where w.id = $1`, [id, since, until]);
        t.deepEqual(history, { all: kept.fired, succeeded: kept.succeeded, failed: kept.failed },
          `the history's counts of ${name} for webhook ${id}, ${where}`);
      }
    }
  }

  async function operate(s: Session, i: number, roll: number) {
    const op = roll < 0.35 ? capture : roll < 0.5 ? writePast : roll < 0.75 ? claimAndSettle : roll < 0.83 ? replayOne
      : roll < 0.86 ? replayFailed : roll < 0.97 && i === 0 ? drop : rollUp;
    doing[i] += ` ${op.name} (backend ${s.pid})`;
    await op(s);
  }

  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all(sessions.map(async (s, i) => {
      if (s.open) {
        doing[i] = `round ${round}: a capture held open`;
        if (--s.open.rounds <= 0) await finish(s);
        return;
      }
      const roll = rnd.next();
      doing[i] = `round ${round}: ${roll}`;
      try {
        // a webhook disabled half way, another deleted later, beside the others' work
        if (i === 1 && (round === ROUNDS / 2 || round === (ROUNDS * 3) / 4)) await disableOrDelete(s);
        else await operate(s, i, roll);
      } catch (error) {
        const { detail, where: context } = error as { detail?: string; where?: string };
        throw new Error(`seed ${seed}, session ${i}: ${(error as Error).message} (${detail}; ${context}); the sessions: ${JSON.stringify(doing)}`,
          { cause: error });
      }
    }));
    if (round % 20 === 19) {
      for (const s of sessions) if (s.open) await finish(s);
      if (dropHeldUp) await drop();
      await check(`after round ${round + 1}`);
    }
  }
  for (const s of sessions) if (s.open) await finish(s);
  await check('at the end');
  await pool.query('call webhooks.roll_up_report_counts()');
  await check('after a roll-up');
  // everything on its way sent once more, and succeeding (a retry's wait and an open
  // breaker's pause cut short), then counted and dropped
  const onTheirWay = () => [...truth.deliveries.values()].filter((d) => d.state === 'pending' && !truth.deleted.has(d.webhookId)).length;
  for (let i = 0; i < 100 && onTheirWay() > 0; i++) {
    await pool.query('update webhooks.delivery_queue set next_attempt_at = now() where locked_by is null and next_attempt_at > now()');
    await pool.query('update webhooks_private.lanes set open_until = null where open_until is not null');
    await claimAndSettle(sessions[0], { limit: 100, status: 200 });
  }
  await check('all settled');
  await drop();
  await check('after a drop');
  t.log(`operations: ${JSON.stringify(ops)}; days dropped: ${[...truth.dropped].sort().join(', ')}`);
  t.true(truth.dropped.size > 0, 'a day was dropped');
});
