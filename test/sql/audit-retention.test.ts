// The audit trail's retention (webhooks.audit_retention, sql/47_audit.sql): maintenance
// removes the rows past it, a bounded batch per transaction, and leaves the others;
// the API's changes, which write the trail, never wait for it. Each test has a
// database of its own: they count the whole trail.
import test from 'ava';
import pg from 'pg';
import { forgetAuditLog, maintain } from '../../tools/maintain.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

async function setup(t: { teardown: (fn: () => Promise<void>) => void }) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  // written in this order (ids rising, as the rows of a trail written over 405 days
  // are): 5 past the default retention (400 days) and 2 within it by a day, of a
  // webhook since deleted (the trail outlives it), then a webhook's own row of now
  // (webhook.created)
  await database.pool.query(
    `insert into webhooks.audit_log (at, company_id, webhook_id, actor, action, details)
     select now() - make_interval(days => d), $1, 0, 'admin', 'webhook.updated', jsonb_build_object('days', d)
     from unnest(array[405, 404, 403, 402, 401, 399, 399]) d order by d desc`, [company.id]);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const ages = async () => (await database.pool.query<{ days: number | null; action: string }>(
    `select (details ->> 'days')::int as days, action from webhooks.audit_log order by id`)).rows;
  return { database, company, webhook, ages };
}

test('rows past webhooks.audit_retention (400 days) go, at most a batch a call; the others stay', async (t) => {
  const { database, ages } = await setup(t);
  t.is((await ages()).length, 8);
  const removed: number[] = [];
  for (;;) {
    const { rows: [{ n }] } = await database.pool.query<{ n: number }>('select webhooks.forget_audit_log(2) as n');
    removed.push(n);
    if (n === 0) break;
  }
  t.deepEqual(removed, [2, 2, 1, 0], 'two rows at most a call, until none is left past the retention');
  t.deepEqual(await ages(), [
    { days: 399, action: 'webhook.updated' },
    { days: 399, action: 'webhook.updated' },
    { days: null, action: 'webhook.created' },
  ]);
  // a shorter retention, set: the rows past it go too
  const client = await database.pool.connect();
  try {
    await client.query(`set webhooks.audit_retention = '30 days'`);
    t.is((await client.query('select webhooks.forget_audit_log(10) as n')).rows[0].n, 2);
    // out of bounds: held to its least (1 day), never an error; the row of now stays
    await client.query(`set webhooks.audit_retention = '1 second'`);
    t.is((await client.query('select webhooks.forget_audit_log(10) as n')).rows[0].n, 0);
  } finally {
    client.release();
  }
  t.deepEqual(await ages(), [{ days: null, action: 'webhook.created' }]);
  const refused = await t.throwsAsync(database.pool.query('select webhooks.forget_audit_log(0)'));
  t.like(refused, { code: '22023' });
  // the setting's one home: its default and bounds, as webhooks.settings shows them
  const { rows: [setting] } = await database.pool.query(
    `select r.default_value, r.least_value, r.most_value, s.value
     from webhooks_private.setting_rules() r join webhooks.settings s using (name) where name = 'webhooks.audit_retention'`);
  t.deepEqual(setting, { default_value: '400 days', least_value: '1 day', most_value: '36500 days', value: '400 days' });
});

test('maintenance removes them in batches, pausing between them; an API change writes the trail while a batch is open', async (t) => {
  const { database, webhook, ages } = await setup(t);
  // a batch of the trail left open: a change of the webhook (its audit row) does not wait for it
  const forgetting = new pg.Client({ connectionString: database.url });
  await forgetting.connect();
  t.teardown(() => forgetting.end());
  await forgetting.query('begin');
  t.is((await forgetting.query('select webhooks.forget_audit_log(2) as n')).rows[0].n, 2);
  const admin = new pg.Client({ connectionString: database.url });
  await admin.connect();
  t.teardown(() => admin.end());
  await admin.query(`set statement_timeout = '2s'`);
  await admin.query(`update webhooks.webhooks set name = 'renamed' where id = $1`, [webhook.id]);
  t.is((await admin.query(`select count(*)::int as n from webhooks.audit_log where webhook_id = $1 and action = 'webhook.updated' and details ->> 'days' is null`, [webhook.id])).rows[0].n, 1);
  await forgetting.query('rollback');

  const pauses: number[] = [];
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  t.teardown(() => client.end());
  t.is(await forgetAuditLog(client, async (ms) => pauses.push(ms), 2), 5);
  t.is(pauses.length, 3, 'a pause after each batch that removed rows (2, 2, 1)');
  t.deepEqual((await ages()).map((row) => row.days), [399, 399, null, null]);

  // and npm run maintain does it, saying so
  await database.pool.query(`update webhooks.audit_log set at = now() - interval '500 days' where details ->> 'days' = '399'`);
  const said: string[] = [];
  const result = await maintain(database.url, (line) => said.push(line));
  t.is(result.auditRowsRemoved, 2);
  t.true(said.includes('removed 2 audit trail rows past webhooks.audit_retention'), said.join('\n'));
  t.deepEqual((await ages()).map((row) => row.days), [null, null]);
});
