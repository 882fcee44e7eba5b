// An ordered webhook's backfill step locks its batch's contacts (FOR SHARE) until it
// commits, and a CRM writer of one of them waits for that commit. The step must hold
// few of them, and for no more than its own batch: at most
// webhooks_private.backfill_locked_batch() contacts a step, and the step ends after
// such a batch (the backfills after it are the next step's, at once: `more`). Until
// 2026-12-07 a step locked up to four times the webhook's max_in_flight (128) and held
// them through every other backfill it served, and a writer just ahead of the walk
// waited up to 0.8 s. Counted in rows locked and in the step's buffers, not in time.
// Its own database: a step steps every running backfill.
import test from 'ava';
import { useTestDatabase, ownConnection } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

async function contactsOf(companyId: string, n: number) {
  await db().pool.query('alter table crm.contacts disable trigger "!webhooks_created"');
  try {
    await db().pool.query(
      `insert into crm.contacts (company_id, first_name, last_name, email, city)
       select $1, 'Contact ' || i, 'Walked', 'w' || i || '@example.com', 'City ' || i
       from generate_series(1, $2) i`, [companyId, n]);
  } finally {
    await db().pool.query('alter table crm.contacts enable trigger "!webhooks_created"');
  }
}

test.serial('an ordered webhook\'s step locks at most a small batch of contacts, and ends after it', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await contactsOf(company.id, 2_000);
  const hooks: { id: string }[] = [];
  for (let i = 0; i < 2; i++) {
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name', 'city'] });
    await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
    hooks.push(hook);
  }
  const backfills: string[] = [];
  for (const hook of hooks) backfills.push((await db().pool.query('select webhooks.backfill($1) as id', [hook.id])).rows[0].id as string);
  const { rows: [{ bound }] } = await db().pool.query('select webhooks_private.backfill_locked_batch() as bound');

  const step = await ownConnection(db().url, t);
  const writer = await ownConnection(db().url, t);
  const lockedNow = async () => {
    // what a writer of the company's contacts would wait for: those it cannot lock
    await writer.query('begin');
    try {
      const { rows: [r] } = await writer.query(
        `select (select count(*)::int from crm.contacts where company_id = $1)
              - (select count(*)::int from (select id from crm.contacts where company_id = $1
                                            for no key update skip locked) l) as locked`, [company.id]);
      return r.locked as number;
    } finally {
      await writer.query('rollback');
    }
  };
  const queued = async () => (await db().pool.query(
    'select queued::int from webhooks.backfills where id = any ($1::bigint[]) order by id', [backfills])).rows.map((r) => r.queued as number);
  const lockedPerStep: number[] = [];
  const writtenPerStep: number[] = [];
  const servedPerStep: number[] = [];
  for (let i = 0; i < 4; i++) {
    const before = await queued();
    await step.query('begin');
    const { rows: [s] } = await step.query('select written, more from webhooks_relay.backfill_step_waiting()');
    lockedPerStep.push(await lockedNow());
    writtenPerStep.push(s.written);
    await step.query('commit');
    const after = await queued();
    servedPerStep.push(after.filter((q, j) => q > before[j]!).length);
    if (i === 0) t.true(s.more, 'the other backfill left to the next step, at once');
    // (room again: the receiver took them)
    await db().pool.query(`update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
                           where webhook_id = any ($1::bigint[]) and state = 'pending'`, [hooks.map((h) => h.id)]);
  }
  t.log(`locked per step ${lockedPerStep.join(', ')}; written ${writtenPerStep.join(', ')}; backfills served ${servedPerStep.join(', ')}`);
  t.true(lockedPerStep.every((n) => n > 0 && n <= bound), `locked per step: ${lockedPerStep.join(', ')}, bound ${bound}`);
  // (one ordered batch a step: the other backfill's is the next step's; the two in turn)
  t.deepEqual(servedPerStep, [1, 1, 1, 1]);
  t.true(writtenPerStep.every((n) => n > 0 && n <= bound), `written per step: ${writtenPerStep.join(', ')}`);
  t.true((await queued()).every((q) => q > 0));
});

test.serial('an ordered webhook\'s step reads few buffers: its batch, not four claims\' worth', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await contactsOf(company.id, 2_000);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name', 'city'] });
  await db().pool.query('select webhooks.set_webhook_delivery($1, null, true)', [hook.id]);
  const { rows: [{ id }] } = await db().pool.query('select webhooks.backfill($1) as id', [hook.id]);
  // (a first step counts the total and plans: not the one measured)
  await db().pool.query('select webhooks_relay.backfill_step(p_only => $1)', [id]);
  await db().pool.query(`update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now() where webhook_id = $1 and state = 'pending'`, [hook.id]);
  const { rows: plan } = await db().pool.query(
    `explain (analyze, buffers, format json) select webhooks_relay.backfill_step(p_only => ${Number(id)})`);
  const top = plan[0]['QUERY PLAN'][0];
  const buffers = top.Plan['Shared Hit Blocks'] + top.Plan['Shared Read Blocks'] + (top.Planning?.['Shared Hit Blocks'] ?? 0);
  const { rows: [b] } = await db().pool.query('select queued::int from webhooks.backfills where id = $1', [id]);
  t.log(`step of an ordered batch: ${buffers} buffers, ${top['Execution Time'].toFixed(1)} ms; queued ${b.queued}`);
  t.true(buffers < 3_000, `${buffers} buffers`);
});
