// A writer that commits in two phases (an XA transaction manager's: BEGIN; writes;
// PREPARE TRANSACTION; later COMMIT PREPARED or ROLLBACK PREPARED). Postgres refuses
// PREPARE in a transaction that has sent a NOTIFY, and capture notifies whenever a
// relay is asleep: such a writer sets webhooks.two_phase, and its transactions send
// none (sql/20_wakeup.sql, docs/relay.md#two-phase-writers).
import test from 'ava';
import { LOCK_CLASS, LOCK_KEYS } from '../../relay/engine-names.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { prepareTransaction, rollBackPrepared, transactionName, twoPhaseTest } from '../helpers/two-phase.ts';
import { relayConnection, sentinel } from '../helpers/wake.ts';

const db = useTestDatabase(test);
const twoPhase = twoPhaseTest(test);

test.afterEach.always(async () => {
  await rollBackPrepared(db().url);
});


const TWO_PHASE = 'set local webhooks.two_phase = on';

async function count(sql: string, values: unknown[]): Promise<number> {
  return (await db().pool.query(sql, values)).rows[0].n;
}

twoPhase('a relay asleep: a contact update a webhook wants prepares, sends no notification, and its delivery is there after COMMIT PREPARED', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const contact = await f.contact(company.id);
  const relay = await relayConnection(db().url);
  try {
    t.true(await relay.goingIdle(), 'the relay is asleep: captures notify');
    const name = transactionName();
    await prepareTransaction(db().pool, name, TWO_PHASE, (client) =>
      client.query(`update crm.contacts set city = 'Hampton' where id = $1`, [contact.id]));
    t.false(await relay.capturesDone(), 'the prepared transaction holds capturing: no relay falls asleep past it');
    t.is(await count('select count(*)::int as n from webhooks.deliveries where webhook_id = $1', [hook.id]), 0, 'not visible before COMMIT PREPARED');
    await db().pool.query(`commit prepared '${name}'`);
    const { rows } = await db().pool.query(
      `select action, state, payload #> '{data,contact,id}' as contact from webhooks.deliveries where webhook_id = $1`, [hook.id]);
    t.deepEqual(rows, [{ action: 'contact.updated', state: 'pending', contact: Number(contact.id) }]);
    t.true(await relay.capturesDone(), 'committed: capturing is free again');
    await sentinel(db().pool, 'end');
    t.is((await relay.next()).payload, 'end', 'no NOTIFY came from the prepared transaction');
  } finally {
    await relay.close();
  }
});

twoPhase('a relay asleep: without webhooks.two_phase, PREPARE is refused (the NOTIFY), and the change is rolled back', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const relay = await relayConnection(db().url);
  try {
    t.true(await relay.goingIdle());
    const error = await t.throwsAsync(prepareTransaction(db().pool, transactionName(), '', (client) =>
      client.query('insert into crm.contacts (company_id) values ($1)', [company.id])));
    t.regex(error.message, /cannot PREPARE a transaction that has executed LISTEN, UNLISTEN, or NOTIFY/);
    t.is(await count('select count(*)::int as n from webhooks.deliveries where webhook_id = $1', [hook.id]), 0);
  } finally {
    await relay.close();
  }
});

twoPhase('a relay asleep: every kind of capture prepares in a two-phase transaction, on plain, ordered and coalescing webhooks, and is there after COMMIT PREPARED', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id);
  const status = await f.status(company.id);
  const actions = ['contact.created', 'contact.updated', 'contact.deleted', 'contact.status_added', 'contact.status_removed',
    'contact.user_assigned', 'contact.first_company_user_assigned'];
  const plain = await f.webhook({ companyId: company.id, actions });
  const ordered = await f.webhook({ companyId: company.id, actions });
  const coalescing = await f.webhook({ companyId: company.id, actions });
  await db().pool.query('update webhooks.webhooks set ordered = true where id = $1', [ordered.id]);
  await db().pool.query(`update webhooks.webhooks set coalesce_window = '10 seconds' where id = $1`, [coalescing.id]);
  const old = await f.contact(company.id);
  const relay = await relayConnection(db().url);
  try {
    t.true(await relay.goingIdle());
    const name = transactionName();
    await prepareTransaction(db().pool, name, TWO_PHASE, async (client) => {
      const { rows: [c] } = await client.query(`insert into crm.contacts (company_id, city) values ($1, 'Hampton') returning id`, [company.id]);
      await client.query(`update crm.contacts set city = 'Norfolk' where id = $1`, [c.id]);
      await client.query(`update crm.contacts set city = 'Richmond' where id = $1`, [c.id]);
      await client.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [c.id, status.id]);
      await client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [c.id, user.id]);
      await client.query('delete from crm.contact_statuses where contact_id = $1', [c.id]);
      await client.query(`update crm.contacts set id = id + 1000000 where id = $1`, [old.id]);
      await client.query('delete from crm.contacts where id = $1', [c.id]);
    });
    await db().pool.query(`commit prepared '${name}'`);
    const { rows } = await db().pool.query(
      `select webhook_id::text, array_agg(distinct action::text order by action::text) as actions
       from webhooks.deliveries where webhook_id = any ($1::bigint[]) and contact_id <> $2 group by webhook_id`,
      [[plain.id, ordered.id, coalescing.id], old.id]);
    t.is(rows.length, 3);
    for (const row of rows) t.deepEqual(row.actions, [...actions].sort(), `webhook ${row.webhook_id}`);
    await sentinel(db().pool, 'end');
    t.is((await relay.next()).payload, 'end');
  } finally {
    await relay.close();
  }
});

twoPhase('ROLLBACK PREPARED leaves no delivery and no lock', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const relay = await relayConnection(db().url);
  try {
    t.true(await relay.goingIdle());
    const name = transactionName();
    await prepareTransaction(db().pool, name, TWO_PHASE, (client) =>
      client.query('insert into crm.contacts (company_id) values ($1)', [company.id]));
    await db().pool.query(`rollback prepared '${name}'`);
    t.is(await count('select count(*)::int as n from webhooks.deliveries where webhook_id = $1', [hook.id]), 0);
    t.is(await count('select count(*)::int as n from crm.contacts where company_id = $1', [company.id]), 0);
    // (this database's: the other test files' capturing transactions hold it on the same server)
    t.is(await count(`select count(*)::int as n from pg_locks where locktype = 'advisory' and classid = $1 and objid = $2
                        and database = (select oid from pg_database where datname = current_database())`,
      [LOCK_CLASS, LOCK_KEYS.capturing]), 0);
    t.true(await relay.capturesDone());
    await sentinel(db().pool, 'end');
    t.is((await relay.next()).payload, 'end');
  } finally {
    await relay.close();
  }
});

twoPhase('a relay awake: a two-phase capture holds capturing until COMMIT PREPARED, so a relay going idle waits for it', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const relay = await relayConnection(db().url);
  try {
    const name = transactionName();
    await prepareTransaction(db().pool, name, TWO_PHASE, (client) =>
      client.query('insert into crm.contacts (company_id) values ($1)', [company.id]));
    t.false(await relay.goingIdle(), 'prepared, not committed: look again');
    await db().pool.query(`commit prepared '${name}'`);
    t.true(await relay.capturesDone(), 'committed: one more claim sees its delivery');
    t.is(await count('select count(*)::int as n from webhooks.deliveries where webhook_id = $1', [hook.id]), 1);
  } finally {
    await relay.close();
  }
});

twoPhase('a relay asleep: a replay and a test send through webhooks.deliveries, and a CRM delete that disables a webhook, prepare in a two-phase transaction', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const user = await f.user(company.id);
  const filtered = await f.webhook({ companyId: company.id, actions: ['contact.user_assigned'], userId: user.id });
  await f.contact(company.id);
  const { rows: [delivery] } = await db().pool.query('select id from webhooks.deliveries where webhook_id = $1', [hook.id]);
  await db().pool.query(`update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now() where id = $1`, [delivery.id]);
  const relay = await relayConnection(db().url);
  try {
    t.true(await relay.goingIdle());
    const asAdmin = `select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', '${company.id}', true)`;
    const name = transactionName();
    await prepareTransaction(db().pool, name, TWO_PHASE, async (client) => {
      await client.query(asAdmin);
      await client.query('select webhooks.replay_delivery($1)', [delivery.id]);
      await client.query('select webhooks.send_test_webhook($1)', [hook.id]);
      await client.query('reset role');
      await client.query('delete from crm.users where id = $1', [user.id]);
    });
    await db().pool.query(`commit prepared '${name}'`);
    t.is(await count(`select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state = 'pending'`, [hook.id]), 2, 'the replay and the test send');
    const { rows: [disabled] } = await db().pool.query('select enabled, disabled_by from webhooks.webhooks where id = $1', [filtered.id]);
    t.deepEqual(disabled, { enabled: false, disabled_by: 'crm' });
    await sentinel(db().pool, 'end');
    t.is((await relay.next()).payload, 'end', 'no NOTIFY, not even the webhook-changed notice');
  } finally {
    await relay.close();
  }
});

test.serial('webhooks.two_phase is read as a boolean: on, true, yes and 1 turn it on; anything else, or unset, leaves it off', async (t) => {
  const client = await db().pool.connect();
  try {
    const on: string[] = [];
    for (const v of ['on', 'ON', 'true', 'yes', '1', ' on ', 'off', 'false', '0', '', 'onn']) {
      await client.query(`select set_config('webhooks.two_phase', $1, false)`, [v]);
      if ((await client.query('select webhooks_private.two_phase_writer() as on')).rows[0].on) on.push(v);
    }
    await client.query('reset webhooks.two_phase');
    t.deepEqual(on, ['on', 'ON', 'true', 'yes', '1', ' on ']);
  } finally {
    client.release();
  }
});
