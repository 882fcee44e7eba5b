// The times a report or a history is asked for (since, until) are bounded: from
// 1970-01-01 to 9999-12-31 (UTC), or open (null, or -infinity / infinity). Outside,
// a named refusal that says so; the times at Postgres's ends (4714-11-24 BC, 294276)
// failed deep in the counting with "timestamp out of range" (22008) and nothing more.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

const OUTSIDE = ['4714-11-24 00:00:00+00 BC', '0001-01-01 00:00:00+00', '1969-12-31 23:59:59.999999+00',
  '10000-01-01 00:00:00+00', '294276-12-31 23:59:59+00'];
const INSIDE = [null, '-infinity', 'infinity', '1970-01-01 00:00:00+00', '9999-12-31 23:59:59.999999+00'];

/** What each reader answers for since / until (as the company's admin: row-level security applies). */
function readers(webhookId: string): Array<[string, string]> {
  return [
    ['webhook_report', 'select count(*) from webhooks.webhook_report(since => $1, until => $2)'],
    ['webhook_report of one webhook', `select count(*) from webhooks.webhook_report(since => $1, until => $2, webhook_id => ${webhookId})`],
    ['webhook_report_counts', 'select webhooks.webhook_report_counts(since => $1, until => $2)'],
    ['webhooks_history', `select count(*) from webhooks.webhooks w, webhooks.webhooks_history(w, $1, $2) where w.id = ${webhookId}`],
    ['webhooks_history_oldest_first', `select count(*) from webhooks.webhooks w, webhooks.webhooks_history_oldest_first(w, $1, $2) where w.id = ${webhookId}`],
    ['webhooks_history_count', `select webhooks.webhooks_history_count(w, $1, $2) from webhooks.webhooks w where w.id = ${webhookId}`],
    ['webhooks_history_count of pending', `select webhooks.webhooks_history_count(w, $1, $2, 'pending') from webhooks.webhooks w where w.id = ${webhookId}`],
  ];
}

async function asAdmin(client: pg.PoolClient, companyId: string, sql: string, params: unknown[]) {
  await client.query('begin');
  try {
    await client.query(`select set_config('jwt.claims.company_id', $1, true)`, [companyId]);
    await client.query('set local role webhook_admin');
    return await client.query(sql, params);
  } finally {
    await client.query('rollback');
  }
}

test.serial('a report or a history asked for a time before 1970 or after 9999 is refused by name, whichever end; open ends and the years between are answered', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  // counted once (every day before the last two, for every webhook): the counting then
  // looks at the days around since and until, as it does in a database in use
  await db().pool.query('call webhooks.roll_up_report_counts()');
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));

  for (const [reader, sql] of readers(hook.id)) {
    for (const at of OUTSIDE) {
      for (const [column, params] of [['since', [at, null]], ['until', [null, at]]] as const) {
        const error = await t.throwsAsync(asAdmin(client, company.id, sql, [...params])) as any;
        t.like(error, { code: '22008', constraint: 'requested_time_range', column }, `${reader} ${column} ${at}`);
        t.regex(error?.message ?? '', new RegExp(`^${column} must be from 1970-01-01 to 9999-12-31 \\(UTC\\), or open \\(null\\), got `),
          `${reader} ${column} ${at}`);
      }
    }
    for (const since of INSIDE) {
      for (const until of INSIDE) {
        await t.notThrowsAsync(asAdmin(client, company.id, sql, [since, until]), `${reader} [${since}, ${until})`);
      }
    }
  }
  // and the answers with open ends are the history's
  const { rows: [counted] } = await asAdmin(client, company.id,
    `select webhooks.webhooks_history_count(w, '-infinity', 'infinity') as n from webhooks.webhooks w where w.id = $1`, [hook.id]);
  t.is(counted.n, '1');
});

test('replaying failed deliveries since a time before 1970 or after 9999 is refused by name too', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  for (const at of OUTSIDE) {
    const error = await t.throwsAsync(asAdmin(client, company.id, 'select * from webhooks.replay_failed($1, $2)', [hook.id, at])) as any;
    t.like(error, { code: '22008', constraint: 'requested_time_range', column: 'since' }, at);
  }
  for (const at of ['-infinity', '1970-01-01 00:00:00+00', '2000-01-01 00:00:00+00']) {
    await t.notThrowsAsync(asAdmin(client, company.id, 'select * from webhooks.replay_failed($1, $2)', [hook.id, at]), at);
  }
});

test('the row a page of a history starts after is refused by name when its time is outside 1970 to 9999 or half of it is missing', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  for (const reader of ['webhooks_history', 'webhooks_history_oldest_first']) {
    const sql = `select count(*)::int as n from webhooks.webhooks w, webhooks.${reader}(w, after_created_at => $1, after_id => $2) where w.id = ${hook.id}`;
    for (const at of OUTSIDE) {
      const error = await t.throwsAsync(asAdmin(client, company.id, sql, [at, '1'])) as any;
      t.like(error, { code: '22008', constraint: 'requested_time_range', column: 'after_created_at' }, `${reader} ${at}`);
    }
    for (const [params, missing] of [[['2026-01-01 00:00:00+00', null], 'after_id'], [[null, '1'], 'after_created_at']] as const) {
      const error = await t.throwsAsync(asAdmin(client, company.id, sql, [...params])) as any;
      t.like(error, { code: '22023', constraint: 'history_after_row', column: missing }, `${reader} without ${missing}`);
      t.regex(error?.message ?? '', new RegExp(`give both or neither \\(${missing} is missing\\)`));
    }
    // the ends of what may be asked: the one delivery is newer than 1970 and older than 9999
    const answers = [];
    for (const at of ['-infinity', 'infinity', '1970-01-01 00:00:00+00', '9999-12-31 23:59:59.999999+00']) {
      answers.push((await asAdmin(client, company.id, sql, [at, '1'])).rows[0].n);
    }
    t.deepEqual(answers, reader === 'webhooks_history' ? [0, 1, 0, 1] : [1, 0, 1, 0], reader);
  }
});

test('half of the row a page starts after is refused in the words of the list it pages: the report, a webhook\'s history, a delivery\'s attempts', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  const lists: Array<[string, string, RegExp]> = [
    ['select count(*) from webhooks.webhook_report(after_id => 1)',
      'the report', /^a page of the report starts after the webhook named by after_created_at and after_id: give both or neither \(after_created_at is missing\)$/],
    [`select count(*) from webhooks.webhooks w, webhooks.webhooks_history(w, after_id => 1) where w.id = ${hook.id}`,
      'a history', /^a page of a webhook's history starts after the delivery named by after_created_at and after_id: give both or neither \(after_created_at is missing\)$/],
    ['select count(*) from webhooks.delivery_attempts_latest_first(1, after_attempt => 2)',
      'attempts', /^a page of a delivery's attempts starts after the attempt named by after_attempt and after_id: give both or neither \(after_id is missing\)$/],
  ];
  for (const [sql, list, message] of lists) {
    const error = await t.throwsAsync(asAdmin(client, company.id, sql, [])) as any;
    t.like(error, { code: '22023', constraint: 'history_after_row' }, list);
    t.regex(error?.message ?? '', message, list);
  }
});
