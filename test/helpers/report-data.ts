// Report data for the page tests: a company as the BPD help article tells it, and
// firings in the past as the relay leaves them (delivery rows with their attempts).
import type pg from 'pg';
import { factories, type Contact, type Webhook } from './factories.ts';

export type Outcome = 'succeeded' | 'failed' | 'pending';

export interface FiringInput {
  webhook: Webhook;
  contact: Contact;
  action: string;
  daysAgo: number;
  outcome: Outcome;
  /** HTTP attempts made so far; each failed one got `statusCode` or `error` */
  attempts: number;
  statusCode?: number | null;
  error?: string | null;
  data?: Record<string, unknown>;
}

/**
 * Writes one firing as the relay leaves it: the delivery row and one row per HTTP
 * attempt (all failed but the last of a success). Written directly so that its time
 * can lie in the past; the payload has the shape the capture triggers build.
 */
export async function fire(pool: pg.Pool, input: FiringInput): Promise<string> {
  const { webhook, contact } = input;
  const payloadContact = Object.fromEntries(['id', ...webhook.fields].map((f) => [f, contact[f] ?? null]));
  const final = input.outcome !== 'pending';
  // the day's partitions made and committed first, by a statement of its own: the
  // view's write trigger makes a missing day itself, but an insert racing another
  // test's making of the same past day was seen to miss the new partition
  await pool.query(`select webhooks_private.ensure_day(webhooks_private.utc_day(now() - make_interval(days => $1::int, mins => 5)))`,
    [input.daysAgo]);
  const { rows } = await pool.query(
    `with firing as (select now() - make_interval(days => $7::int, mins => 5) as at)
     insert into webhooks.deliveries
       (webhook_id, company_id, action, contact_id, payload, state, attempts,
        last_attempt_at, last_status_code, last_error, completed_at, created_at, next_attempt_at)
     select $1, $2, $3::webhooks.action, $4,
            jsonb_build_object('type', $3::text, 'timestamp', firing.at, 'data', $5::jsonb),
            $6, $8, case when $8 > 0 then firing.at + interval '1 minute' end, $9, $10,
            case when $11 then firing.at + interval '1 minute' end, firing.at, firing.at
     from firing
     -- (as text: to the microsecond, as the relay writes it into the attempts)
     returning id, created_at::text`,
    [
      webhook.id, webhook.company_id, input.action, contact.id,
      JSON.stringify({ contact: payloadContact, source: 'platform', ...input.data }),
      input.outcome, input.daysAgo, input.attempts,
      // the last attempt's outcome: a success ends on 200, whatever came before it
      input.outcome === 'succeeded' ? 200 : (input.statusCode ?? null),
      input.outcome === 'succeeded' ? null : (input.error ?? null),
      final,
    ],
  );
  const delivery = rows[0];
  for (let attempt = 1; attempt <= input.attempts; attempt++) {
    const last = attempt === input.attempts;
    const succeeded = last && input.outcome === 'succeeded';
    await pool.query(
      `insert into webhooks.delivery_attempts
         (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code, error, response_body)
       values ($1, $5, $2, $3, $4, $5::timestamptz + make_interval(secs => $4::int * 10), 120, $6, $7, $8)`,
      [
        delivery.id, webhook.id, webhook.company_id, attempt, delivery.created_at,
        succeeded ? 200 : (input.statusCode ?? null),
        succeeded ? null : (input.error ?? (input.statusCode ? null : 'connection refused')),
        // what a receiver answers, as the relay keeps an excerpt of it
        succeeded ? '{"ok":true}' : (input.statusCode ? '{"error":"upstream unavailable"}' : null),
      ],
    );
  }
  return delivery.id;
}

// the days seedCompany fires on (days ago), and how far back fireMany reaches (10,000
// firings a minute apart: seven days)
const SEED_DAYS_AGO = { succeeded: 1, failed: 2, assigned: 3, gone: 45, history: [20, 25, 28, 40, 55, 70, 85] };
const SEEDED_DAYS_AGO = [SEED_DAYS_AGO.succeeded, SEED_DAYS_AGO.failed, SEED_DAYS_AGO.assigned, SEED_DAYS_AGO.gone, ...SEED_DAYS_AGO.history];
const FIRE_MANY_DAYS = 8;

/**
 * Makes the partitions of every past day the seeds write, in one go, once per pool:
 * tests that seed side by side wait for the same making. Each firing makes its own
 * day too (fire, fireMany), but with several tests making the same past days at once,
 * an insert was seen to miss a day's partition that another test's ensure_day had
 * just attached and committed (CI, 2026-12-01: three tests at once, "no partition of
 * relation delivery_history found for row"). A firing's time is 5 minutes before its
 * day's moment: the day before is made too.
 */
function seededDays(pool: pg.Pool): Promise<void> {
  let making = seededDaysMade.get(pool);
  if (!making) {
    const days = new Set<number>();
    for (const d of SEEDED_DAYS_AGO) days.add(d).add(d + 1);
    for (let d = 0; d <= FIRE_MANY_DAYS; d++) days.add(d);
    making = pool
      .query(`select webhooks_private.ensure_day((now() at time zone 'utc')::date - d) from unnest($1::int[]) d`, [[...days]])
      .then(() => undefined);
    seededDaysMade.set(pool, making);
  }
  return making;
}
const seededDaysMade = new WeakMap<pg.Pool, Promise<void>>();

export interface ReportCompany {
  companyId: string;
  notes: Webhook;
  jane: Webhook;
  sheet: Webhook;
  ada: Contact;
  grace: Contact;
  failedId: string;
  succeededId: string;
}

/**
 * A company as the help article tells it: a "Thank You Note" status that posts to a
 * handwritten-letters service, a webhook for Jane Doe's assignments, and a disabled
 * one. The notes webhook fired 2 times in the last 7 days (one success after a
 * retry, one failure), 5 in the last 30, 9 in the last 90.
 */
export async function seedCompany(pool: pg.Pool, companyName = 'Purple Realty'): Promise<ReportCompany> {
  await seededDays(pool);
  const make = factories(pool);
  const company = await make.company(companyName);
  const jane = await make.user(company.id, 'Jane Doe');
  const thankYou = await make.status(company.id, 'Thank You Note');
  const ada = await make.contact(company.id, { first_name: 'Ada', last_name: 'Lovelace', street: '12 St James Sq', city: 'London' });
  const grace = await make.contact(company.id, { first_name: 'Grace', last_name: 'Hopper', city: 'Arlington' });

  const notes = await make.webhook({
    companyId: company.id,
    name: 'Handwritten thank-you notes',
    url: 'https://api.handwritten.example.com/v1/bpd/thank-you',
    actions: ['contact.status_added'],
    statusId: thankYou.id,
    fields: ['first_name', 'last_name', 'street', 'city', 'postal_code'],
  });
  const janeHook = await make.webhook({
    companyId: company.id,
    name: 'Jane’s new contacts to Asana',
    url: 'https://hooks.asana.example.com/bpd/tasks',
    actions: ['contact.user_assigned'],
    userId: jane.id,
  });
  const sheet = await make.webhook({
    companyId: company.id,
    name: 'Contacts spreadsheet',
    url: 'https://sheets.example.com/macros/s/AKfy/exec',
    actions: ['contact.created', 'contact.saved'],
    enabled: false,
  });
  // as the relay leaves a webhook whose receiver answered 410 Gone
  await pool.query(
    `update webhooks.webhooks set disabled_by = 'relay', disabled_reason = 'The receiver answered 410 Gone'
     where id = $1`,
    [sheet.id],
  );

  const status = { status: { id: thankYou.id, name: thankYou.name } };
  const succeededId = await fire(pool, {
    webhook: notes, contact: ada, action: 'contact.status_added', daysAgo: SEED_DAYS_AGO.succeeded,
    outcome: 'succeeded', attempts: 2, statusCode: 503, data: status,
  });
  const failedId = await fire(pool, {
    webhook: notes, contact: grace, action: 'contact.status_added', daysAgo: SEED_DAYS_AGO.failed,
    outcome: 'failed', attempts: 5, statusCode: 500, error: 'HTTP 500 Internal Server Error', data: status,
  });
  for (const daysAgo of SEED_DAYS_AGO.history) {
    // 3 of these fall in the last 30 days, all of them in the last 90
    await fire(pool, {
      webhook: notes, contact: daysAgo % 2 ? ada : grace, action: 'contact.status_added', daysAgo,
      outcome: 'succeeded', attempts: 1, data: status,
    });
  }
  await fire(pool, {
    webhook: janeHook, contact: ada, action: 'contact.user_assigned', daysAgo: SEED_DAYS_AGO.assigned, outcome: 'succeeded', attempts: 1,
    data: { user: { id: jane.id, name: jane.name, email: jane.email, company_id: company.id } },
  });
  await fire(pool, {
    webhook: sheet, contact: grace, action: 'contact.created', daysAgo: SEED_DAYS_AGO.gone, outcome: 'failed', attempts: 1,
    statusCode: 410, error: 'HTTP 410 Gone',
  });
  return { companyId: company.id, notes, jane: janeHook, sheet, ada, grace, failedId, succeededId };
}

/**
 * `count` firings of one webhook, one a minute back from now: every tenth failed
 * (HTTP 502 after 3 attempts), the rest succeeded at the first attempt. In one
 * statement, so that a history of 10,000 firings takes a moment to write.
 */
export async function fireMany(pool: pg.Pool, webhook: Webhook, contact: Contact, count: number): Promise<void> {
  await seededDays(pool);
  // in bulk, into the outbox's tables themselves (a write to the view of deliveries
  // costs a trigger call per row); the partitions of the days first
  await pool.query(
    `select webhooks_private.ensure_day(d::date)
     from generate_series(((now() - make_interval(mins => $1::int)) at time zone 'utc')::date,
                          (now() at time zone 'utc')::date, interval '1 day') d`,
    [count],
  );
  await pool.query(
    `with fired as (
       select now() - make_interval(mins => g) as at, g % 10 = 0 as failed
       from generate_series(1, $4::int) g
     ),
     history as (
       insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
       select $1, $2, 'contact.created', $3,
              jsonb_build_object('type', 'contact.created', 'timestamp', t.at,
                'data', jsonb_build_object('source', 'api', 'contact',
                  jsonb_build_object('id', $3::bigint, 'first_name', 'Ada', 'last_name', 'Lovelace'))),
              t.at
       from fired t
       returning id, created_at
     )
     insert into webhooks.delivery_results
       (delivery_id, created_at, webhook_id, company_id, state, attempts, last_attempt_at, last_status_code,
        last_error, completed_at)
     select h.id, h.created_at, $1, $2,
            case when t.failed then 'failed' else 'succeeded' end,
            case when t.failed then 3 else 1 end,
            t.at, case when t.failed then 502 else 200 end,
            case when t.failed then 'HTTP 502 Bad Gateway' end,
            t.at
     from history h
     join fired t on t.at = h.created_at`,
    [webhook.id, webhook.company_id, contact.id, count],
  );
}
