// A database whose clock ran ahead of the real time and came back. While ahead, the
// retention judged the days by it: maintenance dropped days that, the clock set
// right, are today and the days to come (their partitions made ahead, empty), and
// moved kept_since past them. The CRM's writes of those days must still find where
// their deliveries go: a CRM write never fails because of the engine. The engine's
// clock is set ahead for maintenance's connection alone (steered-clock.ts), which is
// the state the real clock's return leaves: kept_since after the start of today.
import test from 'ava';
import { maintain } from '../../tools/maintain.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { hourCounts, insertFinished, rawCounts, rollUpAfter } from '../helpers/report-counts.ts';
import { steerClock } from '../helpers/steered-clock.ts';

const db = useTestDatabase(test);

/** A webhook of a company, a retention of one day, and the clock steerable; all as it was at the test's end. */
async function retentionOfADay(t: { teardown: (fn: () => Promise<void>) => void }) {
  await steerClock(db().pool);
  t.teardown(async () => {
    await db().pool.query(`alter database ${db().name} reset webhooks.retention`);
    await db().pool.query('delete from webhooks_private.outbox_kept_since');
    await db().pool.query('select webhooks.create_partitions()');
  });
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '1 day'`);
  return { f, company, webhook };
}

test.serial('a capture after the clock came back from days ahead, past which the retention dropped today, is written and sent', async (t) => {
  const { f, company, webhook } = await retentionOfADay(t);
  // the clock three days ahead: today and tomorrow are past a retention of a day
  const url = new URL(db().url);
  url.searchParams.set('options', '-c bpd_test.clock_shift=3d');
  const result = await maintain(url.toString());
  const today = new Date().toISOString().slice(0, 10);
  t.true(result.daysDropped.includes(today), result.daysDropped.join(' '));
  // the clock back, and the next run of maintenance (npm start's, at start and every
  // hour): the kept history starts today again
  const said: string[] = [];
  await maintain(db().url, (line) => said.push(line));
  const { rows: [{ kept_since: keptSince }] } = await db().pool.query('select webhooks.kept_since()');
  t.is(keptSince.toISOString(), `${today}T00:00:00.000Z`);
  t.true(said.some((line) => line.startsWith('bpd-webhooks: the kept history started at ')
                            && line.includes('the retention dropped days to come while the database\'s clock ran ahead')),
         said.join('\n'));
  const contact = await f.contact(company.id);
  const { rows } = await db().pool.query(
    'select state, created_at >= webhooks.kept_since() as kept from webhooks.deliveries where webhook_id = $1 and contact_id = $2',
    [webhook.id, contact.id]);
  t.deepEqual(rows, [{ state: 'pending', kept: true }]);
  // and in the report's counts of today, as every delivery kept
  const { rows: [counts] } = await db().pool.query(
    'select fired::int from webhooks_private.count_deliveries_of($1::bigint[], $2::bigint[], $3, null)',
    [[webhook.id], [company.id], `${today}T00:00:00Z`]);
  t.deepEqual(counts, { fired: 1 });
});

test.serial('a day to come that the clock ahead counted and dropped stays forgotten, its totals kept; the kept history starts after it', async (t) => {
  const { company, webhook } = await retentionOfADay(t);
  const day = (n: number) => new Date(Date.now() + n * 86_400_000).toISOString().slice(0, 10);
  // captured while the clock was ahead: tomorrow, then counted by a roll-up days on
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3::timestamptz, $3::timestamptz)`,
    [webhook.id, company.id, `${day(1)}T01:00:00Z`]);
  await db().pool.query(`call webhooks.roll_up_report_counts(p_now => now() + interval '4 days')`);
  const url = new URL(db().url);
  url.searchParams.set('options', '-c bpd_test.clock_shift=4d');
  const result = await maintain(url.toString());
  t.true(result.daysDropped.includes(day(1)), result.daysDropped.join(' '));
  await maintain(db().url);
  const { rows: [{ kept_since: keptSince }] } = await db().pool.query('select webhooks.kept_since()');
  t.is(keptSince.toISOString(), `${day(2)}T00:00:00.000Z`);
  const { rows: daily } = await db().pool.query(
    `select to_char(day, 'YYYY-MM-DD') as day, fired::int from webhooks.daily_counts where webhook_id = $1`, [webhook.id]);
  t.deepEqual(daily, [{ day: day(1), fired: 1 }]);
});

// A roll-up run while the clock was hours ahead counted the hours up to two before
// that clock: this hour, which has not ended, among them, its row taken as final.
// Once the clock came back, deliveries written into this hour were left out of the
// report until their day was counted, up to three days on. The next roll-up finds
// its watermark ahead of its own bounds and trusts no row past them: counted from the
// rows until the hour can be counted, then counted again.
test.serial('an hour counted while the clock ran ahead is counted again once it came back: the deliveries written into it since are in the report', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const hook = { id: webhook.id, company_id: company.id };
  const { rows: [{ now: started }] } = await db().pool.query('select now()');
  const [first] = await insertFinished(db().pool, webhook.id, company.id, [started.toISOString()], ['succeeded']);
  await rollUpAfter(db().pool, started, '4 hours');
  t.deepEqual(await hourCounts(db().pool, hook, first.created_at), { hourRow: [1], report: 1 }, 'counted by the clock ahead');

  // the clock back: a delivery written into the same hour, and the next roll-up
  await insertFinished(db().pool, webhook.id, company.id, [first.created_at.toISOString()], ['succeeded']);
  await db().pool.query('call webhooks.roll_up_report_counts()');
  t.deepEqual(await hourCounts(db().pool, hook, first.created_at), { hourRow: [], report: 2 }, 'not trusted: counted from the rows');
  t.like(await rawCounts(db().pool, webhook.id, null, null), { fired: '2' });

  // once the hour can be counted, it is, with both
  await rollUpAfter(db().pool, started, '3 hours');
  t.deepEqual(await hourCounts(db().pool, hook, first.created_at), { hourRow: [2], report: 2 });
});
