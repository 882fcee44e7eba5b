// Who holds the relays awake (webhooks_ops.capturing, sql/58_operations.sql) with the
// roles a deployment has: the engine owned by a role that is no superuser and not a
// member of pg_read_all_stats, and the CRM writing as a role of its own
// (test/helpers/crm-role.ts). Such an owner is not shown the start of a CRM
// transaction (pg_stat_activity): a CRM session left idle in transaction after
// capturing is counted, its age in seconds is not known, and the operator is told
// so, with what is known of every role: how many transaction ids were given since its
// own (until 2026-12-06: counted, and the oldest's age 0, as if it had just begun).
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { connectAs, crmAppRole, engineOwnerRole } from '../helpers/crm-role.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

test.beforeEach(() => engineOwnerRole(db().pool));

/** The answer as the relay's role asks it, and the age in transaction ids of `xid` read with it. */
async function ask(t: { teardown: (fn: () => void) => void }, xid: string) {
  const relay = await connectAs(t, db().pool, 'bpd_webhooks_relay');
  const { rows: [row] } = await relay.query(
    `select c.transactions::int, c.oldest_seconds, c.prepared::int, c.oldest_prepared_seconds,
            c.ages_unknown::int, c.oldest_xid_age::int, age($1::xid) as age
     from webhooks_ops.capturing() c`, [xid]);
  const { age, ...answer } = row;
  return { answer, age: age as number };
}

test.serial('a CRM transaction of its own role left open after a capture: counted, its age in seconds told unknown, its age in transaction ids told', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const writer: pg.PoolClient = await connectAs(t, db().pool, await crmAppRole(db().pool));
  await writer.query('begin');
  await writer.query(`insert into crm.contacts (company_id, first_name) values ($1, 'Ada')`, [company.id]);
  const { rows: [{ xid }] } = await writer.query(`select pg_current_xact_id()::text::xid::text as xid`);
  // transactions given ids since, as a busy CRM's are
  for (let i = 0; i < 3; i++) await db().pool.query('select pg_current_xact_id()');

  const { answer, age } = await ask(t, xid);
  t.true(age >= 4);
  t.deepEqual(answer, {
    transactions: 1, oldest_seconds: 0, prepared: 0, oldest_prepared_seconds: 0, ages_unknown: 1, oldest_xid_age: age,
  });
  await writer.query('commit');
  t.deepEqual((await ask(t, xid)).answer, {
    transactions: 0, oldest_seconds: 0, prepared: 0, oldest_prepared_seconds: 0, ages_unknown: 0, oldest_xid_age: 0,
  });
});
