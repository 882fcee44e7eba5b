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
import { rollBackPrepared, transactionName, twoPhaseTest } from '../helpers/two-phase.ts';
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
}

/** The roles that ask it: the relay's, and the API's login (sql/60_access.sql). */
const ASKERS = ['bpd_webhooks_relay', 'webhook_authenticator'] as const;

/**
 * The answer as `role` gets it, and what the oldest's age must be in the same
 * transaction (its now()) for a holder since `since` (a timestamptz as text: a Date
 * would lose the microseconds).
 */
async function ask(role: string, since: string | null): Promise<{ answer: Capturing; expected: number | null }> {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query(`set local role ${role}`);
    const { rows: [answer] } = await client.query<Capturing>(
      'select transactions::int, oldest_seconds, prepared::int from webhooks_ops.capturing()');
    const { rows: [{ expected }] } = await client.query<{ expected: number | null }>(
      'select extract(epoch from now() - $1::timestamptz)::double precision as expected', [since]);
    return { answer, expected };
  } finally {
    await client.query('rollback').catch(() => {});
    client.release();
  }
}

/** A transaction left open after capturing a new contact's delivery; its start as text. */
async function openCapture(companyId: string): Promise<{ client: pg.PoolClient; started: string; ended?: boolean }> {
  const client = await db().pool.connect();
  await client.query('begin');
  const { rows: [{ started }] } = await client.query<{ started: string }>('select now()::text as started');
  await client.query('insert into crm.contacts (company_id) values ($1)', [companyId]);
  return { client, started };
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

test.serial('none held: nothing counted, and an age of 0', async (t) => {
  for (const role of ASKERS) {
    t.deepEqual((await ask(role, null)).answer, { transactions: 0, oldest_seconds: 0, prepared: 0 }, role);
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
      const { answer, expected } = await ask(role, open.started);
      t.deepEqual(answer, { transactions: 1, oldest_seconds: expected!, prepared: 0 }, role);
      t.true(answer.oldest_seconds > 0, role);
    }
  } finally {
    await endOpen(open, 'commit');
  }
  t.deepEqual((await ask('bpd_webhooks_relay', null)).answer, { transactions: 0, oldest_seconds: 0, prepared: 0 });
});

twoPhase('a prepared transaction holding capturing is counted as prepared, aged from its PREPARE; an older open one is the oldest until it ends', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const open = await openCapture(company.id);
  const name = transactionName();
  try {
    const writer = await db().pool.connect();
    try {
      await writer.query('begin');
      await writer.query('set local webhooks.two_phase = on');
      await writer.query('insert into crm.contacts (company_id) values ($1)', [company.id]);
      await writer.query(`prepare transaction '${name}'`);
    } catch (error) {
      await writer.query('rollback').catch(() => {});
      throw error;
    } finally {
      writer.release();
    }
    const { rows: [{ prepared }] } = await db().pool.query<{ prepared: string }>(
      'select prepared::text from pg_prepared_xacts where gid = $1', [name]);

    for (const role of ASKERS) {
      const { answer, expected } = await ask(role, open.started);
      t.deepEqual(answer, { transactions: 2, oldest_seconds: expected!, prepared: 1 }, role);
    }
    await endOpen(open, 'commit');
    for (const role of ASKERS) {
      const { answer, expected } = await ask(role, prepared);
      t.deepEqual(answer, { transactions: 1, oldest_seconds: expected!, prepared: 1 }, role);
      t.true(answer.oldest_seconds > 0, role);
    }
    await db().pool.query(`commit prepared '${name}'`);
    t.deepEqual((await ask('webhook_authenticator', null)).answer, { transactions: 0, oldest_seconds: 0, prepared: 0 });
  } finally {
    await endOpen(open, 'rollback').catch(() => {});
  }
});
