// A webhook's delete looked at again (webhooks.recheck_deleted_webhooks, sql/22_outbox.sql)
// with the roles a deployment has: the engine owned by a role that is no superuser
// and not a member of pg_read_all_stats, and the CRM writing as a role of its own
// (test/helpers/crm-role.ts). Such an owner is shown no start of the CRM's
// transactions in pg_stat_activity, but their backend_xid and backend_xmin, which
// the recheck reads, it is shown: a CRM transaction open across the delete keeps the
// webhook noted until it ends, and the delivery it wrote for the webhook is removed.
// (Until 2026-12-06 the recheck took the last transaction id completed + 1 for the
// next one to be given, whatever the roles: a writer given its id after the last one
// that completed was taken for ended, the webhook forgotten while it was open, and its
// delivery left behind, pending in a queue no relay serves.)
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { connectAs, crmAppRole, engineOwnerRole } from '../helpers/crm-role.ts';
import { factories } from '../helpers/factories.ts';
import { noDayDroppedBeforeEachTest } from '../helpers/days.ts';

const db = useTestDatabase(test);
noDayDroppedBeforeEachTest(test, db);

test.beforeEach(() => engineOwnerRole(db().pool));

/** Maintenance's recheck, as the engine's owner runs it, `times` times over. */
async function recheck(maintenance: pg.PoolClient, times = 3): Promise<number[]> {
  const found: number[] = [];
  for (let i = 0; i < times; i++) {
    found.push((await maintenance.query<{ n: number }>('select webhooks.recheck_deleted_webhooks() as n')).rows[0].n);
  }
  return found;
}

/** Whether the webhook is still noted for a recheck, and its deliveries in the queue and in the history. */
async function leftOf(webhookId: string) {
  const { rows: [left] } = await db().pool.query(
    `select (select count(*) from webhooks_private.webhooks_deleted_recently where webhook_id = $1)::int as noted,
            (select count(*) from webhooks.delivery_queue where webhook_id = $1)::int as queued,
            (select count(*) from webhooks.delivery_history where webhook_id = $1)::int as history`, [webhookId]);
  return left as { noted: number; queued: number; history: number };
}

/** The purge, as the owner runs it, until no deleted webhook waits. */
async function purge(maintenance: pg.PoolClient): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const { rows: [{ n }] } = await maintenance.query('select webhooks.purge_deleted_webhooks() as n');
    if (n === null) return;
  }
}

test.serial('the owner is no superuser and is shown no start of the CRM\'s transactions, but their transaction ids and snapshots', async (t) => {
  const owner = await connectAs(t, db().pool, await engineOwnerRole(db().pool));
  const writer = await connectAs(t, db().pool, await crmAppRole(db().pool));
  await writer.query('begin isolation level repeatable read');
  const { rows: [mine] } = await writer.query(
    `select pg_backend_pid() as pid, pg_current_xact_id()::text::xid::text as xid`);
  const { rows: [shown] } = await owner.query(
    `select (select rolsuper from pg_roles where rolname = current_user) as super,
            pg_has_role(current_user, 'pg_read_all_stats', 'member') as stats,
            a.xact_start, a.backend_xid::text as xid, a.backend_xmin is not null as has_xmin
     from pg_stat_activity a where a.pid = $1`, [mine.pid]);
  t.deepEqual(shown, { super: false, stats: false, xact_start: null, xid: mine.xid, has_xmin: true });
  await writer.query('rollback');
});

test.serial('a CRM transaction of its own role that wrote for a webhook while its delete was open keeps it noted until it ends; its delivery is then removed', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const maintenance = await connectAs(t, db().pool, await engineOwnerRole(db().pool));
  const writer = await connectAs(t, db().pool, await crmAppRole(db().pool));
  const dba = await db().pool.connect();
  t.teardown(() => dba.release());

  // the delete, open; the CRM's change meanwhile sees the webhook still there, and
  // its transaction stays open after the delete commits
  await dba.query('begin');
  await dba.query('delete from webhooks.webhooks where id = $1', [gone.id]);
  await writer.query('begin');
  await writer.query(`insert into crm.contacts (company_id, first_name) values ($1, 'Late')`, [company.id]);
  await dba.query('commit');
  t.deepEqual(await recheck(maintenance), [0, 0, 0]);
  t.is((await leftOf(gone.id)).noted, 1, 'kept while the CRM\'s transaction of that time is open');

  await writer.query('commit');
  t.deepEqual(await leftOf(gone.id), { noted: 1, queued: 1, history: 1 });
  t.is((await recheck(maintenance, 1))[0], 1, 'found with the delivery the CRM wrote');
  await purge(maintenance);
  t.like(await leftOf(gone.id), { queued: 0, history: 0 });
});

test.serial('a REPEATABLE READ transaction of the CRM\'s role whose snapshot predates the delete keeps the webhook noted; what it writes later is removed', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const gone = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const maintenance = await connectAs(t, db().pool, await engineOwnerRole(db().pool));
  const writer = await connectAs(t, db().pool, await crmAppRole(db().pool));

  // a snapshot only: no transaction id, no lock of any engine table
  await writer.query('begin isolation level repeatable read');
  await writer.query('select count(*) from crm.contacts');
  await db().pool.query('delete from webhooks.webhooks where id = $1', [gone.id]);
  t.deepEqual(await recheck(maintenance), [0, 0, 0]);
  t.is((await leftOf(gone.id)).noted, 1, 'kept while a snapshot from before the delete lives');

  await writer.query(`insert into crm.contacts (company_id, first_name) values ($1, 'Late')`, [company.id]);
  await writer.query('commit');
  t.deepEqual(await leftOf(gone.id), { noted: 1, queued: 1, history: 1 });
  t.is((await recheck(maintenance, 1))[0], 1);
  await purge(maintenance);
  t.like(await leftOf(gone.id), { queued: 0, history: 0 });
});
