// One step of every running backfill (webhooks_relay.backfill_step, sql/35_backfill.sql)
// serves at most p_limit of them. Those that can do nothing now (a disabled webhook's,
// paused; one whose receiver has not taken its last batch yet) must not take those
// places: else a few companies' paused backfills held every other company's still.
// Nor may one whose batch fails: it stops alone, with its reason.
// Its own database: a step without p_only steps every backfill there is.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { untimed } from '../helpers/backfill-step.ts';

const db = useTestDatabase(test);

test.serial('backfills that can do nothing now do not hold the others back', async (t) => {
  const f = factories(db().pool);
  const start = async (webhookId: string) =>
    (await db().pool.query('select webhooks.backfill($1) as id', [webhookId])).rows[0].id as string;
  // two companies whose webhooks were disabled while their backfills ran
  for (let i = 0; i < 2; i++) {
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
    await f.contact(company.id);
    await start(hook.id);
    await db().pool.query('update webhooks.webhooks set enabled = false, disabled_at = now() where id = $1', [hook.id]);
  }
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const contact = await f.contact(company.id);
  const id = await start(hook.id);

  const { rows: [stepped] } = await db().pool.query('select webhooks_relay.backfill_step(p_limit => 2) as written');
  t.is(stepped.written, 1);
  const snapshots = (await deliveriesOf(db().pool, [hook.id])).filter((d) => d.action === 'contact.snapshot');
  t.deepEqual(snapshots.map((d) => d.contact_id), [contact.id]);
  const { rows: [backfill] } = await db().pool.query('select state from webhooks.backfills where id = $1', [id]);
  t.is(backfill.state, 'done');
});

test.serial('a backfill whose batch fails stops with the reason, its batch unwritten; the other companies\' backfills go on', async (t) => {
  const f = factories(db().pool);
  const start = async (webhookId: string) =>
    (await db().pool.query('select webhooks.backfill($1) as id', [webhookId])).rows[0].id as string;
  const broken = await f.company();
  const brokenHook = await f.webhook({ companyId: broken.id, actions: ['contact.created'] });
  await f.contact(broken.id);
  const healthy = await f.company();
  const healthyHook = await f.webhook({ companyId: healthy.id, actions: ['contact.created'] });
  const contact = await f.contact(healthy.id);
  // whatever the reason, the broken company's snapshots cannot be written
  await db().pool.query(`
    create function public.refuse_snapshot() returns trigger language plpgsql as $$
    begin
      if new.action = 'contact.snapshot' and new.webhook_id = ${Number(brokenHook.id)} then
        raise exception 'a value no payload can hold' using errcode = 'program_limit_exceeded';
      end if;
      return new;
    end $$`);
  await db().pool.query('create trigger refuse_snapshot before insert on webhooks.delivery_history for each row execute function public.refuse_snapshot()');
  t.teardown(() => db().pool.query('drop trigger refuse_snapshot on webhooks.delivery_history'));
  const brokenId = await start(brokenHook.id);
  const healthyId = await start(healthyHook.id);

  const { rows: [stepped] } = await db().pool.query('select webhooks_relay.backfill_step() as written');
  t.is(stepped.written, 1);
  t.deepEqual((await deliveriesOf(db().pool, [healthyHook.id])).filter((d) => d.action === 'contact.snapshot').map((d) => d.contact_id),
    [contact.id]);
  const { rows } = await db().pool.query(
    'select id, state, queued::int, error, finished_at is not null as finished from webhooks.backfills where id = any ($1) order by id',
    [[brokenId, healthyId]]);
  t.deepEqual(rows, [
    { id: brokenId, state: 'failed', queued: 0, finished: true,
      error: 'the contacts after id 0 could not be written (SQLSTATE 54000); try again, or ask your operator' },
    { id: healthyId, state: 'done', queued: 1, finished: true, error: null },
  ]);
  t.deepEqual((await deliveriesOf(db().pool, [brokenHook.id])).filter((d) => d.action === 'contact.snapshot'), []);
  // a webhook whose backfill failed may start another
  t.truthy(await start(brokenHook.id));
});

test.serial('an ordered webhook\'s backfill held at a contact a writer holds takes none of a step\'s places from the others', async (t) => {
  const f = factories(db().pool);
  const start = async (webhookId: string) =>
    (await db().pool.query('select webhooks.backfill($1) as id', [webhookId])).rows[0].id as string;
  const backfillRow = async (id: string) =>
    (await db().pool.query('select * from webhooks.backfills where id = $1', [id])).rows[0];
  // (the backfills the tests before left running: cancelled, so that these two are all)
  for (const { id } of (await db().pool.query(`select id from webhooks.backfills where state = 'running'`)).rows) {
    await db().pool.query('select webhooks.cancel_backfill($1)', [id]);
  }
  const company = await f.company();
  const other = await f.company();
  const held = await f.contact(company.id);
  await f.contact(other.id);
  const ordered = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  await db().pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [ordered.id]);
  const plain = await f.webhook({ companyId: other.id, actions: ['contact.updated'] });
  const first = await start(ordered.id);
  const second = await start(plain.id);

  const writer = await db().pool.connect();
  t.teardown(async () => {
    await writer.query('rollback');
    writer.release();
  });
  await writer.query('begin');
  await writer.query(`update crm.contacts set city = 'Open' where id = $1`, [held.id]);
  // a step that serves one backfill: the held one, first in line, writes nothing and
  // leaves its place to the next
  await db().pool.query('select webhooks_relay.backfill_step(p_limit => 1)');
  t.like(await backfillRow(first), { state: 'running', queued: '0' });
  t.like(await backfillRow(second), { state: 'done', queued: '1' });
});

test.serial('a step answers the webhooks whose backfill waits for room: one that wrote a batch, one without room; not one paused', async (t) => {
  // (relay/backfiller.ts steps again once it settles a delivery of one of them)
  await db().pool.query("update webhooks.backfills set state = 'cancelled', finished_at = now() where state = 'running'");
  const f = factories(db().pool);
  const withContacts = async (n: number) => {
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
    await db().pool.query('update webhooks.webhooks set max_in_flight = 1 where id = $1', [hook.id]);
    for (let i = 0; i < n; i++) await f.contact(company.id);
    await db().pool.query('select webhooks.backfill($1)', [hook.id]);
    return hook.id as string;
  };
  const paused = await withContacts(6);
  await db().pool.query('update webhooks.webhooks set enabled = false, disabled_at = now() where id = $1', [paused]);
  const writing = await withContacts(6);
  const stepWaiting = async () => (await untimed(db().pool, 'select written, waiting from webhooks_relay.backfill_step_waiting()')).rows[0];
  t.deepEqual(await stepWaiting(), { written: 4, waiting: [writing] }, 'four times its max_in_flight written');
  t.deepEqual(await stepWaiting(), { written: 0, waiting: [writing] }, 'no room until its snapshots are settled');
  await db().pool.query(`update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
                         where webhook_id = $1 and state = 'pending'`, [writing]);
  // its last batch: done, so nothing of it waits for room (a settle of its snapshots
  // stepped once more, for nothing)
  t.deepEqual(await stepWaiting(), { written: 2, waiting: [] });
  t.is((await db().pool.query(`select state from webhooks.backfills where webhook_id = $1`, [writing])).rows[0].state, 'done');
});

test.serial('a backfill held at its next contact by a writer is not answered as waiting for room: its settles would step it for nothing', async (t) => {
  await db().pool.query("update webhooks.backfills set state = 'cancelled', finished_at = now() where state = 'running'");
  const f = factories(db().pool);
  const company = await f.company();
  const held = await f.contact(company.id);
  const ordered = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [ordered.id]);
  await db().pool.query('select webhooks.backfill($1)', [ordered.id]);
  const writer = await db().pool.connect();
  t.teardown(async () => {
    await writer.query('rollback');
    writer.release();
  });
  await writer.query('begin');
  await writer.query(`update crm.contacts set city = 'Open' where id = $1`, [held.id]);
  const { rows: [step] } = await db().pool.query('select written, waiting, more from webhooks_relay.backfill_step_waiting()');
  t.deepEqual(step, { written: 0, waiting: [], more: false });
});

test.serial('a step that serves its limit of backfills says more are left; the last one does not', async (t) => {
  await db().pool.query("update webhooks.backfills set state = 'cancelled', finished_at = now() where state = 'running'");
  const f = factories(db().pool);
  for (let i = 0; i < 3; i++) {
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
    await f.contact(company.id);
    await db().pool.query('select webhooks.backfill($1)', [hook.id]);
  }
  const step = async () => (await untimed(db().pool, 'select written, more from webhooks_relay.backfill_step_waiting(p_limit => 2)')).rows[0];
  t.deepEqual(await step(), { written: 2, more: true });
  t.deepEqual(await step(), { written: 1, more: false });
  t.is((await db().pool.query(`select count(*)::int as n from webhooks.backfills where state = 'running'`)).rows[0].n, 0);
});

test.serial('a backfill whose batch a lock cuts (lock_timeout, 55P03) is not answered as waiting for room: the timer tries it again', async (t) => {
  await db().pool.query("update webhooks.backfills set state = 'cancelled', finished_at = now() where state = 'running'");
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  await f.contact(company.id);
  const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const holder = await db().pool.connect();
  const stepper = await db().pool.connect();
  t.teardown(async () => {
    await holder.query('rollback');
    holder.release();
    stepper.release();
  });
  await holder.query('begin');
  await holder.query('lock table crm.contacts in access exclusive mode');
  await stepper.query("set lock_timeout = '20ms'");
  const { rows: [step] } = await stepper.query('select written, waiting, more from webhooks_relay.backfill_step_waiting()');
  await stepper.query('reset lock_timeout');
  t.deepEqual(step, { written: 0, waiting: [], more: false });
  await holder.query('rollback');
  t.like((await db().pool.query('select state, queued from webhooks.backfills where id = $1', [id])).rows[0], { state: 'running', queued: '0' });
});

test.serial('a backfill whose batch loses a deadlock or a serialization conflict is tried again by the next step, not failed for good', async (t) => {
  // Postgres ends one of two transactions that wait for each other (40P01), or one
  // whose snapshot a concurrent write made stale (40001): the other goes on, and the
  // same batch tried again succeeds. Until 2026-12-07 such a batch failed its backfill
  // for good, as a value no payload can hold does.
  await db().pool.query("update webhooks.backfills set state = 'cancelled', finished_at = now() where state = 'running'");
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const contact = await f.contact(company.id);
  // the first two snapshots written lose: a deadlock, then a serialization conflict
  // (counted by a sequence, which the batch's undoing does not take back)
  await db().pool.query('create sequence public.conflicts_met');
  await db().pool.query(`
    create function public.lose_conflict() returns trigger language plpgsql as $$
    declare v_met bigint;
    begin
      if new.action = 'contact.snapshot' then
        v_met := nextval('public.conflicts_met');
        if v_met = 1 then
          raise exception 'lost a deadlock' using errcode = 'deadlock_detected';
        elsif v_met = 2 then
          raise exception 'lost a serialization conflict' using errcode = 'serialization_failure';
        end if;
      end if;
      return new;
    end $$`);
  await db().pool.query('create trigger lose_conflict before insert on webhooks.delivery_history for each row execute function public.lose_conflict()');
  t.teardown(async () => {
    await db().pool.query('drop trigger lose_conflict on webhooks.delivery_history');
    await db().pool.query('drop function public.lose_conflict()');
    await db().pool.query('drop sequence public.conflicts_met');
  });
  const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const step = async () => (await db().pool.query('select webhooks_relay.backfill_step(p_only => $1) as written', [id])).rows[0].written;
  t.is(await step(), 0, 'the deadlock: nothing written');
  t.like((await db().pool.query('select state, error from webhooks.backfills where id = $1', [id])).rows[0], { state: 'running', error: null });
  t.is(await step(), 0, 'the serialization conflict: nothing written');
  t.like((await db().pool.query('select state, error from webhooks.backfills where id = $1', [id])).rows[0], { state: 'running', error: null });
  t.is(await step(), 1);
  t.like((await db().pool.query('select state, error from webhooks.backfills where id = $1', [id])).rows[0], { state: 'done', error: null });
  t.deepEqual((await deliveriesOf(db().pool, [hook.id])).filter((d) => d.action === 'contact.snapshot').map((d) => d.contact_id), [contact.id]);
});

test.serial('a company\'s backfills that each have room at every step do not hold another company\'s back: a step takes the least recently served first', async (t) => {
  // One step serves p_limit backfills (16 by default), and a relay steps again as
  // soon as their snapshots are settled. Taken in id order, a company whose
  // receivers took every batch at once had its p_limit oldest backfills served at
  // every step, and a backfill started after them by another company was served only
  // once those were done: for as long as they had contacts to walk.
  await db().pool.query("update webhooks.backfills set state = 'cancelled', finished_at = now() where state = 'running'");
  const f = factories(db().pool);
  const big = await f.company();
  await db().pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'F' || n from generate_series(1, 20) n`, [big.id]);
  const bigHooks: string[] = [];
  for (let i = 0; i < 2; i++) {
    const hook = await f.webhook({ companyId: big.id, actions: ['contact.deleted'] });
    bigHooks.push(hook.id);
    await db().pool.query('select webhooks.backfill($1)', [hook.id]);
  }
  const small = await f.company();
  const hook = await f.webhook({ companyId: small.id, actions: ['contact.deleted'] });
  const contact = await f.contact(small.id);
  const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);

  const stepper = await db().pool.connect();
  t.teardown(() => stepper.release(true));
  await stepper.query("set webhooks.backfill_batch = '1'");
  // the big company's receivers take each batch at once (as a relay that settles them)
  for (let i = 0; i < 2; i++) {
    await stepper.query('select webhooks_relay.backfill_step(p_limit => 2)');
    await db().pool.query(
      `update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
       where webhook_id = any ($1::bigint[]) and state = 'pending'`, [bigHooks]);
  }
  const snapshots = (await deliveriesOf(db().pool, [hook.id])).filter((d) => d.action === 'contact.snapshot');
  t.deepEqual(snapshots.map((d) => d.contact_id), [contact.id], 'served within two steps of two places');
  const { rows } = await db().pool.query(
    'select webhook_id, queued from webhooks.backfills where id = $1 or webhook_id = any ($2::bigint[]) order by id', [id, bigHooks]);
  // (and the big company's in both steps: the least recently served first, then the oldest)
  t.deepEqual(rows.map((r) => [r.webhook_id, r.queued]), [[bigHooks[0], '2'], [bigHooks[1], '1'], [hook.id, '1']]);
});

test.serial('a company that cancels and starts backfills before every step does not take another company\'s turn: a new backfill waits behind one last served before it was started', async (t) => {
  // Never-served backfills went first, whenever they were started: a company that
  // started a new one before every step (its hourly changes allow hundreds) was
  // served at every step of one place, and another company's backfill, served once,
  // waited behind each of them.
  await db().pool.query("update webhooks.backfills set state = 'cancelled', finished_at = now() where state = 'running'");
  const f = factories(db().pool);
  const other = await f.company();
  const otherHook = await f.webhook({ companyId: other.id, actions: ['contact.deleted'] });
  for (let i = 0; i < 4; i++) await f.contact(other.id);
  const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [otherHook.id]);
  const gamer = await f.company();
  const gamerHook = await f.webhook({ companyId: gamer.id, actions: ['contact.deleted'] });
  for (let i = 0; i < 4; i++) await f.contact(gamer.id);

  const stepper = await db().pool.connect();
  t.teardown(() => stepper.release(true));
  await stepper.query("set webhooks.backfill_batch = '1'");
  const step = async () => {
    await stepper.query('select webhooks_relay.backfill_step(p_limit => 1)');
    // (every receiver takes its batch at once)
    await db().pool.query(
      `update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
       where webhook_id = any ($1::bigint[]) and state = 'pending'`, [[otherHook.id, gamerHook.id]]);
  };
  await step();   // the other company's, served once
  const queued = async () => Number((await db().pool.query('select queued from webhooks.backfills where id = $1', [id])).rows[0].queued);
  t.is(await queued(), 1);
  for (let i = 0; i < 3; i++) {
    await db().pool.query(
      "update webhooks.backfills set state = 'cancelled', finished_at = now() where webhook_id = $1 and state = 'running'", [gamerHook.id]);
    await db().pool.query('select webhooks.backfill($1)', [gamerHook.id]);
    await step();
  }
  // each new backfill was started after the other company's was last served: behind
  // it, so the other is served at each of the three steps of one place (it was once
  // at none of them)
  t.is(await queued(), 4);
});

test.serial('a step ends once it has spent backfill_batch_time, the rest left to the next: an ordered webhook\'s locks on another company\'s contact are not held through every other backfill\'s batch', async (t) => {
  // A step is one transaction, and an ordered webhook's batch holds its contacts FOR
  // SHARE until it commits. Each batch was bounded in time, the step was not: eight
  // ordered webhooks of one company, backfilling contacts of 800 kB each, made a step
  // of 5.5 s, and a contact of another company shared with them stayed locked to its
  // writers as long.
  await db().pool.query("update webhooks.backfills set state = 'cancelled', finished_at = now() where state = 'running'");
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const user = await f.user(company.id);
  const shared = await f.contact(other.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [shared.id, user.id]);
  await db().pool.query(
    `insert into crm.contacts (company_id, first_name, custom)
     select $1, 'F' || n, jsonb_build_object('notes', (select string_agg(md5(n || '.' || i), '') from generate_series(1, 25000) i))
     from generate_series(1, 8) n`, [company.id]);
  const hooks: string[] = [];
  for (let i = 0; i < 4; i++) {
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], fields: ['first_name', 'custom'] });
    await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
    await db().pool.query('select webhooks.backfill($1)', [hook.id]);
    hooks.push(hook.id);
  }
  const { rows: [stepped] } = await db().pool.query('select written, more from webhooks_relay.backfill_step_waiting()');
  const { rows } = await db().pool.query(
    `select count(*)::int as served from webhooks.backfills where webhook_id = any ($1::bigint[]) and queued > 0`, [hooks]);
  t.log(`one step: ${stepped.written} snapshots, of ${rows[0].served} backfills`);
  t.true(rows[0].served < 4, `backfills served in one step: ${rows[0].served} of 4`);
  t.true(stepped.more, 'the rest are the next step\'s, at once');
});

test.serial('a backfill whose batches write nothing (its conditions turn every contact away) is not served at every step while another waits', async (t) => {
  // Taken by the snapshots written (fewest first), such a backfill, never having
  // written one, came first at every step: with one place a step it held every
  // other backfill back for its whole walk, and a step ended on its time as well.
  await db().pool.query("update webhooks.backfills set state = 'cancelled', finished_at = now() where state = 'running'");
  const f = factories(db().pool);
  const picky = await f.company();
  await db().pool.query(
    `insert into crm.contacts (company_id, first_name, state) select $1, 'F' || n, 'CA' from generate_series(1, 20) n`, [picky.id]);
  const none = await f.webhook({ companyId: picky.id, actions: ['contact.deleted'],
    conditions: { field: 'state', op: 'eq', value: 'VA' } });
  const { rows: [{ id: noneId }] } = await db().pool.query('select webhooks.backfill($1) as id', [none.id]);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'] });
  const contact = await f.contact(company.id);
  await db().pool.query('select webhooks.backfill($1)', [hook.id]);

  const stepper = await db().pool.connect();
  t.teardown(() => stepper.release(true));
  await stepper.query("set webhooks.backfill_batch = '1'");
  for (let i = 0; i < 2; i++) await stepper.query('select webhooks_relay.backfill_step(p_limit => 1)');
  const snapshots = (await deliveriesOf(db().pool, [hook.id])).filter((d) => d.action === 'contact.snapshot');
  t.deepEqual(snapshots.map((d) => d.contact_id), [contact.id], 'served at the second step of one place');
  const { rows: [picked] } = await db().pool.query('select state, queued from webhooks.backfills where id = $1', [noneId]);
  t.like(picked, { state: 'running', queued: '0' });
});
