// Transaction ids after years: a 32-bit id's age() wraps at 2^31 and 2^32, so a
// comparison kept past that reads a transaction long ended as running. Wraparound
// itself takes billions of transactions; these construct the ids instead: the
// 32-bit id of a transaction of now, and a "now" 2^31 or 2^32 transactions later, as
// a server that had run that long would read them (sql/22_outbox.sql).
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';

const db = useTestDatabase(test);

/** webhooks_private.xid_before_running of an id `behind` transactions before a "now" made from this one. */
async function beforeRunning(behind: bigint, oldestAge: number | null): Promise<boolean> {
  const { rows: [row] } = await db().pool.query(
    `select webhooks_private.xid_before_running(k.next, $2::integer, (k.next::text::numeric + $1::numeric)::text::xid8) as before
     from (select pg_snapshot_xmax(pg_current_snapshot()) as next) k`,
    [behind.toString(), oldestAge]);
  return row.before;
}

test('a deleted webhook noted 2^32 transactions ago is forgotten though its 32-bit id reads as one of now', async (t) => {
  // (its age() reads about 0, less than the oldest running transaction's 100)
  t.true(await beforeRunning(2n ** 32n, 100));
  t.true(await beforeRunning(2n ** 32n + 50n, 100));
});

test('a deleted webhook noted 2^31 transactions ago is forgotten though its 32-bit id reads as one of the future', async (t) => {
  t.true(await beforeRunning(2n ** 31n, 1_000_000));
  t.true(await beforeRunning(2n ** 31n + 1_000n, 1_000_000));
});

test('within 2^31, the 32-bit age decides: kept while a transaction older than the note runs', async (t) => {
  t.false(await beforeRunning(10n, 5), 'a transaction running since before the note');
  t.true(await beforeRunning(10n, null), 'none running');
  // a note of ten transactions ago, against the oldest running one's age
  const { rows: [{ noted }] } = await db().pool.query('select pg_current_xact_id()::text as noted');
  for (let i = 0; i < 10; i++) await db().pool.query('select pg_current_xact_id()');
  const { rows: [row] } = await db().pool.query(
    `select webhooks_private.xid_before_running($1::xid8, 3, pg_snapshot_xmax(pg_current_snapshot())) as younger_running,
            webhooks_private.xid_before_running($1::xid8, 100, pg_snapshot_xmax(pg_current_snapshot())) as older_running`,
    [noted]);
  t.deepEqual(row, { younger_running: true, older_running: false });
});

/** webhooks_private.xid8_near of a 32-bit id and a 64-bit "now", both as decimal text. */
async function xid8Near(xid: bigint, near: bigint): Promise<bigint> {
  const { rows: [row] } = await db().pool.query(
    'select webhooks_private.xid8_near($1::text::xid, $2::text::xid8)::text as full', [xid.toString(), near.toString()]);
  return BigInt(row.full);
}

test('a running transaction\'s 32-bit id is made 64-bit across the end of an epoch, before and after the snapshot', async (t) => {
  const EPOCH = 2n ** 32n;
  // the snapshot in the next epoch, the writer at the end of the one before
  t.is(await xid8Near(EPOCH - 6n, EPOCH + 5n), EPOCH - 6n);
  // the snapshot at an epoch's end, the writer given its id after it, in the next
  t.is(await xid8Near(2n, EPOCH - 5n), EPOCH + 2n);
  // 2^31 - 1 behind and 2^31 - 1 ahead, many epochs on
  const near = 7n * EPOCH + 100n;
  t.is(await xid8Near((near - (2n ** 31n - 1n)) % EPOCH, near), near - (2n ** 31n - 1n));
  t.is(await xid8Near((near + (2n ** 31n - 1n)) % EPOCH, near), near + (2n ** 31n - 1n));
  t.is(await xid8Near(100n, near), near);
});
