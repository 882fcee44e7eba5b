// The roles as a deployment has them: the engine owned by a role that is no superuser
// and not a member of pg_read_all_stats, the roll-up called by the API server's login,
// and the CRM writing as a role of its own (test/helpers/crm-role.ts). Postgres shows
// such an owner no start of another role's transaction in pg_stat_activity: the
// roll-up must still count no hour a CRM transaction still open may write into
// (sql/50_report_counts.sql, roll_up_bounds). Its clock is passed in (p_now).
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { connectAs, crmAppRole, engineOwnerRole } from '../helpers/crm-role.ts';
import { factories } from '../helpers/factories.ts';
import { hourCounts } from '../helpers/report-counts.ts';

const db = useTestDatabase(test);

// (the engine made the owner's once for the file, before its first test)
let OWNER: string;
test.beforeEach(async () => {
  OWNER = await engineOwnerRole(db().pool);
});

/** A roll-up as the API server runs it, its clock `later` after `started`. */
async function rollUp(started: Date, later: string): Promise<void> {
  const api = await db().pool.connect();
  try {
    await api.query('set role webhook_authenticator');
    await api.query('call webhooks.roll_up_report_counts(p_now => $1::timestamptz + $2::interval)', [started, later]);
  } finally {
    api.release(true);   // (its role set: not back into the pool)
  }
}

test.serial('the owner runs no superuser and reads no other role\'s transactions', async (t) => {
  const { rows: [owner] } = await db().pool.query(
    `select r.rolsuper as super, pg_has_role(r.oid, 'pg_read_all_stats', 'member') as stats,
            (select p.proowner::regrole::text from pg_proc p where p.oid = 'webhooks.roll_up_report_counts_after'::regproc) as runs_as
     from pg_roles r where r.rolname = $1`, [OWNER]);
  t.deepEqual(owner, { super: false, stats: false, runs_as: OWNER });
});

test.serial('a delivery of an open transaction of the CRM\'s own role is counted in its hour once it commits', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const writer = await connectAs(t, db().pool, await crmAppRole(db().pool));
  await writer.query('begin');
  const { rows: [{ started }] } = await writer.query('select now() as started');
  await writer.query('insert into crm.contacts (company_id, first_name) values ($1, $2)', [company.id, 'Ada']);
  // (one more delivery of the same hour, committed at once)
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, now(), $3)`, [webhook.id, company.id, started]);
  await rollUp(started, '3 hours');
  t.deepEqual((await hourCounts(db().pool, webhook, started)).hourRow, [], 'the hour is not counted while the writer is open');
  await writer.query('commit');
  await db().pool.query(
    `update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
     where webhook_id = $1 and state = 'pending'`, [webhook.id]);
  await rollUp(started, '3 hours');
  t.deepEqual(await hourCounts(db().pool, webhook, started), { hourRow: [2], report: 2 });
});

// A snapshot lists the transactions running below its xmax, the last one completed
// + 1: one given its id after that, while none ended, is not listed. Read from the
// snapshot's list (roll_up_bounds for a few hours of 2026-12-06), such a writer was missed.
test.serial('the oldest transaction that wrote is found whatever its role, though none ended since it began', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const writers: pg.PoolClient[] = [];
  for (let i = 0; i < 2; i++) {
    const writer = await connectAs(t, db().pool, await crmAppRole(db().pool));
    await writer.query('begin');
    await writer.query('insert into crm.contacts (company_id, first_name) values ($1, $2)', [company.id, 'Ada']);
    writers.push(writer);
  }
  const ids = await Promise.all(writers.map(async (w) => (await w.query('select pg_current_xact_id()::text as id')).rows[0].id));
  const api = await connectAs(t, db().pool, OWNER);
  const { rows: [{ oldest }] } = await api.query('select webhooks_private.oldest_writer_xid()::text as oldest');
  t.is(oldest, ids.sort((a, b) => Number(a) - Number(b))[0]);
  for (const writer of writers) await writer.query('rollback');
});
