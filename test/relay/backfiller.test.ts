// The relay's backfiller (relay/backfiller.ts) steps running backfills on its timer,
// and again at once when the relay settles deliveries of a webhook whose backfill the
// last step left waiting for room. Counted here: the steps it takes, with its timer at
// an hour, so that every step but its first is one a settle (or the step itself) asked
// for. A step it need not take costs a query serving every company's backfills.
// Its own database: a step without p_only steps every backfill there is.
import test from 'ava';
import pino from 'pino';
import { Backfiller } from '../../relay/backfiller.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const HOUR = 3_600_000;

function backfiller(): Backfiller {
  return new Backfiller({ db: db().pool, log: pino({ level: 'silent' }), intervalMs: HOUR });
}

/** A settle batch of n deliveries of a webhook, as the settler hands it to the backfiller. */
function settles(webhookId: string, n = 1) {
  return Array.from({ length: n }, () => ({ job: { webhookId } }));
}

async function clearRunning(): Promise<void> {
  await db().pool.query("update webhooks.backfills set state = 'cancelled', finished_at = now() where state = 'running'");
}

test.serial('a backfill its step finished is not stepped again when its snapshots settle', async (t) => {
  await clearRunning();
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  await f.contact(company.id);
  const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const stepper = backfiller();
  t.teardown(() => stepper.stop());
  t.is(await stepper.runOnce(), 1);
  t.is((await db().pool.query('select state from webhooks.backfills where id = $1', [id])).rows[0].state, 'done');
  stepper.settled(settles(hook.id));
  await stepper.idle();
  t.deepEqual(stepper.stats, { steps: 1, stepsOnSettle: 0 });
});

test.serial('a backfill held by a writer of its next contact is stepped by the timer, not by every settle of its webhook', async (t) => {
  await clearRunning();
  const f = factories(db().pool);
  const company = await f.company();
  const held = await f.contact(company.id);
  const other = await f.contact(company.id);
  const ordered = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [ordered.id]);
  const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [ordered.id]);
  const writer = await db().pool.connect();
  t.teardown(async () => {
    await writer.query('rollback');
    writer.release();
  });
  await writer.query('begin');
  await writer.query(`update crm.contacts set city = 'Open' where id = $1`, [held.id]);
  const stepper = backfiller();
  t.teardown(() => stepper.stop());
  t.is(await stepper.runOnce(), 0);
  // the webhook's live deliveries (of its other contact) settle, twenty batches
  for (let i = 0; i < 20; i++) {
    await db().pool.query(`update crm.contacts set city = $2 where id = $1`, [other.id, `City ${i}`]);
    stepper.settled(settles(ordered.id, 3));
    await stepper.idle();
  }
  t.deepEqual(stepper.stats, { steps: 1, stepsOnSettle: 0 });
  // the writer gone, the timer's next step writes its snapshots
  await writer.query('rollback');
  t.is(await stepper.runOnce(), 2);
  t.like((await db().pool.query('select state, queued from webhooks.backfills where id = $1', [id])).rows[0], { state: 'done', queued: '2' });
});

test.serial('50 backfills of 50 webhooks: a step that served its limit of them is followed at once by the next, not by the timer', async (t) => {
  await clearRunning();
  const f = factories(db().pool);
  const ids: string[] = [];
  for (let i = 0; i < 50; i++) {
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
    await f.contact(company.id);
    ids.push((await db().pool.query('select webhooks.backfill($1) as id', [hook.id])).rows[0].id);
  }
  const stepper = backfiller();
  t.teardown(() => stepper.stop());
  // no relay sends their snapshots: no settle asks for a step
  stepper.start();
  await stepper.idle();
  const { rows } = await db().pool.query('select state, count(*)::int as n from webhooks.backfills where id = any ($1) group by state', [ids]);
  t.deepEqual(rows, [{ state: 'done', n: 50 }]);
  // 16 a step at most: 16, 16, 16 and 2, or more steps where one ended on its time
  // (backfill_batch_time: 16 batches of one contact take longer on a loaded machine);
  // each asked for by the step before it, the timer being an hour
  t.is(stepper.stats.stepsOnSettle, 0);
  t.true(stepper.stats.steps >= 4, `steps: ${stepper.stats.steps}`);
});
