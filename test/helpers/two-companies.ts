// Two companies for the isolation tests: A, whose admin asks, and B, with one of
// everything. B's rows are easy to spot in any answer: every id of B is numbered
// from B_IDS_FROM (each sequence is moved there before B is made, and past it after),
// and every text of B holds the word B_MARK.
import type pg from 'pg';
import { deliveriesOf, factories } from './factories.ts';

/** Where the ids of company B's rows start: 7770 followed by digits, found in no other answer. */
export const B_IDS_FROM = 777_000_000_000;
/** Where the sequences go after B, for rows made later (by the calls under test): past B's. */
const LATER_IDS_FROM = 912_000_000_000;
/** The room of one scene's ids of each kind: each scene of a database moves the sequences to
 *  ranges of its own, never entered again, so that scenes made at once give no id twice (their
 *  ids are then only sure to be in B's ranges when made one at a time). */
const SCENE_ROOM = 1_000_000;
let scenes = 0;
/** In every name, URL and contact text of company B. */
export const B_MARK = 'Zebulon';

/** An id of B (the first 4 digits of B_IDS_FROM, then any: SCENE_ROOM apart per scene, a thousand per sequence) or B's word. */
const B_TRACE = new RegExp(`${String(B_IDS_FROM).slice(0, 4)}\\d{8}|${B_MARK}`, 'gi');
/** An id made after B (by a call under test): differs from one call to the next. */
const LATER_ID = new RegExp(`${String(LATER_IDS_FROM).slice(0, 4)}\\d{8}`, 'g');

/** What in an answer is of company B: an id of its range, its word, one of its secrets. */
export function bTraces(text: string, secrets: string[]): string[] {
  const found = [...text.matchAll(B_TRACE)].map((match) => match[0]);
  return [...found, ...secrets.filter((secret) => text.includes(secret))];
}

/** Every bigint sequence of the CRM and the engine, moved to `from`, a thousand apart: ids of two kinds never meet. */
async function moveSequences(pool: pg.Pool, from: number): Promise<void> {
  await pool.query(
    `select setval(c.oid::regclass, $1::bigint + 1000 * row_number() over (order by c.oid), false)
     from pg_class c join pg_namespace n on n.oid = c.relnamespace join pg_sequence s on s.seqrelid = c.oid
     where n.nspname in ('crm', 'webhooks', 'webhooks_private') and s.seqmax > $1::bigint`, [from]);
}

/**
 * Company B with one of everything: an enabled and a disabled webhook, a failed
 * delivery with an attempt, a backfill, a status and a user, a deleted webhook whose
 * deliveries are still kept. Company A has its own webhook.
 */
export async function twoCompanies(pool: pg.Pool) {
  const f = factories(pool);
  const scene = scenes++;
  const a = await f.company('A');
  const aHook = await f.webhook({ companyId: a.id, actions: ['contact.created'] });
  await moveSequences(pool, B_IDS_FROM + scene * SCENE_ROOM);
  const b = await f.company(`${B_MARK} Inc`);
  const bStatus = await f.status(b.id, `${B_MARK} status`);
  const bUser = await f.user(b.id, `${B_MARK} user`);
  const bHook = await f.webhook({ companyId: b.id, actions: ['contact.created'], name: `${B_MARK} hook`, url: 'https://zebulon.example.com/hook' });
  const bDisabled = await f.webhook({ companyId: b.id, actions: ['contact.created'], enabled: false, name: `${B_MARK} off`, url: 'https://zebulon.example.com/off' });
  const bGone = await f.webhook({ companyId: b.id, actions: ['contact.created'], name: `${B_MARK} gone`, url: 'https://zebulon.example.com/gone' });
  const bContact = await f.contact(b.id, { first_name: B_MARK, last_name: `${B_MARK}son`, email: 'ada@zebulon.example.com' });
  const [bDelivery] = await deliveriesOf(pool, [bHook.id]);
  await pool.query(
    `update webhooks.deliveries set state = 'failed', attempts = 1, completed_at = now(), last_status_code = 500 where id = $1`,
    [bDelivery.id]);
  const { rows: [bAttempt] } = await pool.query(
    `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code, response_body)
     values ($1, $2, $3, $4, 1, now(), 12, 500, $5) returning id`, [bDelivery.id, bDelivery.created_at, bHook.id, b.id, `${B_MARK} says no`]);
  const { rows: [bBackfill] } = await pool.query(
    'insert into webhooks.backfills (webhook_id, company_id) values ($1, $2) returning id', [bHook.id, b.id]);
  // a deleted webhook whose deliveries maintenance has not removed yet
  await pool.query('delete from webhooks.webhooks where id = $1', [bGone.id]);
  await pool.query('insert into webhooks_private.webhooks_to_purge (webhook_id, company_id) values ($1, $2) on conflict do nothing', [bGone.id, b.id]);
  const { rows: [bAudit] } = await pool.query(
    'select id from webhooks.audit_log where company_id = $1 order by id limit 1', [b.id]);
  await moveSequences(pool, LATER_IDS_FROM + scene * SCENE_ROOM);
  return {
    a, b, aHook, bHook, bDisabled, bGone, bStatus, bUser, bContact, bDelivery, bAttempt: bAttempt.id as string,
    bAttemptCreatedAt: bDelivery.created_at as Date, bBackfill: bBackfill.id as string, bAudit: bAudit.id as string,
    bSecrets: [bHook.secret, bDisabled.secret, bGone.secret],
  };
}

export type TwoCompanies = Awaited<ReturnType<typeof twoCompanies>>;

/** Every row of company B in the CRM's and the engine's tables, found in the catalog, as the owner reads them. */
export async function snapshotOf(db: Pick<pg.Pool, 'query'>, companyId: string): Promise<Record<string, unknown>> {
  const { rows: tables } = await db.query(
    `select c.oid::regclass::text as name,
            exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'company_id' and not a.attisdropped) as by_company
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p') and not c.relispartition and n.nspname in ('crm', 'webhooks', 'webhooks_private')
       and (exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname in ('company_id', 'webhook_id') and not a.attisdropped)
            or c.oid = 'crm.companies'::regclass)
     order by 1`);
  const parts = tables.map(({ name, by_company }) => {
    const where = name === 'crm.companies' ? 'r.id = $1'
      : by_company ? 'r.company_id = $1'
      // (by its webhooks, and those deleted whose rows are still kept)
      : `r.webhook_id in (select w.id from webhooks.webhooks w where w.company_id = $1
                          union all select p.webhook_id from webhooks_private.webhooks_to_purge p where p.company_id = $1
                          union all select d.webhook_id from webhooks_private.webhooks_deleted_recently d where d.company_id = $1)`;
    return `'${name}', (select coalesce(jsonb_agg(to_jsonb(r) order by to_jsonb(r)::text), '[]') from ${name} r where ${where})`;
  });
  const { rows: [snapshot] } = await db.query(`select jsonb_build_object(${parts.join(', ')}) as rows`, [companyId]);
  return snapshot.rows;
}

/** What B has more of in the second round: a count of B's rows shows as a different answer. */
export async function moreOfB(pool: pg.Pool, w: TwoCompanies): Promise<void> {
  await pool.query(`insert into crm.contacts (company_id, first_name) select $1, 'Zebulon ' || n from generate_series(1, 3) n`, [w.b.id]);
  await pool.query(`insert into crm.users (company_id, name, email) values ($1, 'Zebulon two', 'two@zebulon.example.com')`, [w.b.id]);
  await pool.query(`insert into crm.statuses (company_id, name) values ($1, 'Zebulon two')`, [w.b.id]);
}

/** An answer with what differs from one call to the next taken out: times, and ids and secrets made by the call. */
export function comparable(text: string): string {
  return text.replace(/\d{4}-\d\d-\d\d[T ][\d:.]+(Z|[+-]\d\d(:\d\d)?)?/g, '<time>').replace(LATER_ID, '<new id>')
    .replace(/whsec_[A-Za-z0-9_-]+/g, '<secret>');
}
