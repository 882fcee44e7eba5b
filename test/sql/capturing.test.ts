// Who holds the relays awake (webhooks_ops.capturing, sql/58_operations.sql): every
// transaction that captured a delivery holds the advisory lock capturing until it ends,
// and no relay sleeps meanwhile (sql/20_wakeup.sql). A transaction left open, or left
// prepared by a two-phase writer whose transaction manager went away, holds it for
// hours and its deliveries wait: the operator sees how many hold it, since when, and how
// many of them are prepared, asked as the relay and as the API's login ask it.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { prepareTransaction, rollBackPrepared, transactionName, twoPhaseTest } from '../helpers/two-phase.ts';
import { relayConnection } from '../helpers/wake.ts';

const db = useTestDatabase(test);
const twoPhase = twoPhaseTest(test);

test.afterEach.always(async () => {
  await rollBackPrepared(db().url);
});

interface Capturing {
  transactions: number;
  oldest_seconds: number;
  prepared: number;
  oldest_prepared_seconds: number;
}

/** The roles that ask it: the relay's, and the API's login (sql/60_access.sql). */
const ASKERS = ['bpd_webhooks_relay', 'webhook_authenticator'] as const;

/**
 * The answer as `role` gets it, and the ages in the same transaction (its now()) of
 * holders since each of `since` (timestamptz as text: a Date would lose the
 * microseconds).
 */
async function ask(role: string, ...since: string[]): Promise<{ answer: Capturing; ages: number[] }> {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query(`set local role ${role}`);
    const { rows: [answer] } = await client.query<Capturing>(
      'select transactions::int, oldest_seconds, prepared::int, oldest_prepared_seconds from webhooks_ops.capturing()');
    const { rows: [{ ages }] } = await client.query<{ ages: number[] }>(
      'select array(select extract(epoch from now() - s)::double precision from unnest($1::timestamptz[]) s) as ages', [since]);
    return { answer, ages };
  } finally {
    await client.query('rollback').catch(() => {});
    client.release();
  }
}

/** A transaction left open after capturing a new contact's delivery; its start as text. */
async function openCapture(companyId: string): Promise<{ client: pg.PoolClient; started: string; ended?: boolean }> {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    const { rows: [{ started }] } = await client.query<{ started: string }>('select now()::text as started');
    await client.query('insert into crm.contacts (company_id) values ($1)', [companyId]);
    return { client, started };
  } catch (error) {
    await client.query('rollback').catch(() => {});
    client.release();
    throw error;
  }
}

/** Ends an open capture once (a test's finally ends it again when a check failed first). */
async function endOpen(open: { client: pg.PoolClient; ended?: boolean }, how: 'commit' | 'rollback') {
  if (open.ended) return;
  open.ended = true;
  try {
    await open.client.query(how);
  } finally {
    open.client.release();
  }
}

test.serial('none held: nothing counted, and an age of 0; a relay asking whether captures are done (capturing held exclusively) is not a holder', async (t) => {
  for (const role of ASKERS) {
    t.deepEqual((await ask(role)).answer, { transactions: 0, oldest_seconds: 0, prepared: 0, oldest_prepared_seconds: 0 }, role);
  }
  // captures_done() holds it so for an instant; held so for the length of the question
  const relay = await db().pool.connect();
  try {
    await relay.query('begin');
    await relay.query('select pg_advisory_xact_lock(webhooks_private.lock_space(), webhooks_private.capturing_lock())');
    t.deepEqual((await ask('bpd_webhooks_relay')).answer, { transactions: 0, oldest_seconds: 0, prepared: 0, oldest_prepared_seconds: 0 });
  } finally {
    await relay.query('rollback').catch(() => {});
    relay.release();
  }
});

test.serial('a transaction left open after a capture is counted with its age, as the relay and the API ask; a relay waiting for work is not', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const relay = await relayConnection(db().url);
  t.teardown(() => relay.close());
  t.true(await relay.goingIdle(), 'a relay holds relay_idle, and took capturing for an instant');
  const open = await openCapture(company.id);
  try {
    t.false(await relay.capturesDone(), 'the open transaction holds capturing');
    for (const role of ASKERS) {
      const { answer, ages: [age] } = await ask(role, open.started);
      t.deepEqual(answer, { transactions: 1, oldest_seconds: age, prepared: 0, oldest_prepared_seconds: 0 }, role);
      t.true(answer.oldest_seconds > 0, role);
    }
    // what the roles are shown of it themselves: its lock, not its start (hence the
    // question runs as the engine's owner)
    const { rows: [{ pid }] } = await open.client.query<{ pid: number }>('select pg_backend_pid() as pid');
    for (const role of ASKERS) {
      const client = await db().pool.connect();
      try {
        await client.query('begin');
        await client.query(`set local role ${role}`);
        const { rows: [shown] } = await client.query(
          `select (select count(*)::int from pg_locks where pid = $1 and locktype = 'advisory') as locks,
                  (select xact_start from pg_stat_activity where pid = $1) as started`, [pid]);
        t.deepEqual(shown, { locks: 1, started: null }, role);
      } finally {
        await client.query('rollback').catch(() => {});
        client.release();
      }
    }
  } finally {
    await endOpen(open, 'commit');
  }
  t.deepEqual((await ask('bpd_webhooks_relay')).answer, { transactions: 0, oldest_seconds: 0, prepared: 0, oldest_prepared_seconds: 0 });
});

twoPhase('a prepared transaction holding capturing is counted as prepared, aged from its PREPARE; an older open one is the oldest until it ends', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const open = await openCapture(company.id);
  const name = transactionName();
  try {
    await prepareTransaction(db().pool, name, 'set local webhooks.two_phase = on', (writer) =>
      writer.query('insert into crm.contacts (company_id) values ($1)', [company.id]));
    const { rows: [{ prepared }] } = await db().pool.query<{ prepared: string }>(
      'select prepared::text from pg_prepared_xacts where gid = $1', [name]);

    for (const role of ASKERS) {
      const { answer, ages: [opened, preparedAge] } = await ask(role, open.started, prepared);
      t.true(opened > preparedAge, 'the open one began first');
      t.deepEqual(answer, { transactions: 2, oldest_seconds: opened, prepared: 1, oldest_prepared_seconds: preparedAge }, role);
    }
    await endOpen(open, 'commit');
    for (const role of ASKERS) {
      const { answer, ages: [preparedAge] } = await ask(role, prepared);
      t.deepEqual(answer, { transactions: 1, oldest_seconds: preparedAge, prepared: 1, oldest_prepared_seconds: preparedAge }, role);
      t.true(answer.oldest_seconds > 0, role);
    }
    // its age in transaction ids, from the id pg_prepared_xacts names; no age unknown
    const { rows: [byId] } = await db().pool.query(
      `select c.oldest_xid_age::int as oldest, c.ages_unknown::int as unknown, age(p.transaction) as age
       from webhooks_ops.capturing() c, pg_prepared_xacts p where p.gid = $1`, [name]);
    t.true(byId.age > 0);
    t.deepEqual(byId, { oldest: byId.age, unknown: 0, age: byId.age });
    await db().pool.query(`commit prepared '${name}'`);
    t.deepEqual((await ask('webhook_authenticator')).answer, { transactions: 0, oldest_seconds: 0, prepared: 0, oldest_prepared_seconds: 0 });
  } finally {
    await endOpen(open, 'rollback').catch(() => {});
  }
});
