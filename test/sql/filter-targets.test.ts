// A webhook filtered on a CRM user or status tag, when the CRM deletes that user or
// status: the webhook stays, disabled by 'crm' with a reason, its filter cleared, its
// history and Times Fired kept (sql/10_config.sql, migration 0038). Until 2026-12-06
// the keys cascaded and the webhook went, with every firing it had recorded.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { inTransaction } from '../helpers/sql.ts';

const db = useTestDatabase(test);

async function webhookRow(id: string) {
  const { rows } = await db().pool.query(
    `select enabled, disabled_by, disabled_reason, disabled_at, user_id, status_id, deleted_filter_target
     from webhooks.webhooks where id = $1`, [id]);
  return rows[0];
}

async function firedTotal(id: string): Promise<number> {
  const { rows } = await db().pool.query(
    'select coalesce(sum(fired), 0)::int as fired from webhooks.daily_counts where webhook_id = $1', [id]);
  return rows[0].fired;
}

async function subscriptions(id: string): Promise<number> {
  const { rows } = await db().pool.query(
    'select count(*)::int as n from webhooks_private.subscriptions where webhook_id = $1', [id]);
  return rows[0].n;
}

/** a company with a user, a webhook filtered on that user which fired once, and one of
 * the same company filtered on nobody */
async function userFiltered(userName?: string) {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id, userName);
  const other = await f.user(company.id);
  const filtered = await f.webhook({ companyId: company.id, actions: ['contact.user_assigned'], userId: user.id });
  const everyone = await f.webhook({ companyId: company.id, actions: ['contact.user_assigned'] });
  const contact = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  return { f, company, user, other, filtered, everyone, contact };
}

test('deleting the user a webhook is filtered on disables it with a reason, clears the filter, keeps its history', async (t) => {
  const { user, filtered, everyone } = await userFiltered('Jane Doe');
  t.is((await deliveriesOf(db().pool, [filtered.id])).length, 1);

  await db().pool.query('delete from crm.users where id = $1', [user.id]);

  const row = await webhookRow(filtered.id);
  t.like(row, { enabled: false, disabled_by: 'crm', user_id: null, deleted_filter_target: `user ${user.id} (Jane Doe)` });
  t.truthy(row.disabled_at);
  t.is(row.disabled_reason,
    `The user it was filtered on, user ${user.id} (Jane Doe), was deleted from the CRM. Choose another user, or any user, to enable it again.`);
  t.is((await deliveriesOf(db().pool, [filtered.id])).length, 1, 'its firing is kept');
  t.is(await firedTotal(filtered.id), 1, 'so is its Times Fired');
  t.is(await subscriptions(filtered.id), 0, 'a disabled webhook hears nothing');
  t.like(await webhookRow(everyone.id), { enabled: true, disabled_by: null }, 'a webhook filtered on nobody is left alone');

  const { rows: audit } = await db().pool.query(
    `select action, details from webhooks.audit_log where webhook_id = $1 and action <> 'webhook.created' order by id`,
    [filtered.id]);
  t.deepEqual(audit, [
    { action: 'webhook.updated', details: { changed: { user_id: { from: Number(user.id), to: null } } } },
    { action: 'webhook.disabled', details: { reason: row.disabled_reason } },
  ]);
});

test('it is enabled again only once its admin has chosen: another user, or any user on purpose', async (t) => {
  const { f, user, other, filtered, company } = await userFiltered('Jane Doe');
  await db().pool.query('delete from crm.users where id = $1', [user.id]);
  // enabled as it is, it would fire for every user
  const refused = await t.throwsAsync(db().pool.query('select webhooks.enable_webhook($1)', [filtered.id])) as any;
  t.like(refused, { code: '23514', constraint: 'webhook_filter_target_deleted', column: 'user_id' });
  t.is(refused.message, `this webhook was filtered on user ${user.id} (Jane Doe), which the CRM deleted: choose another, or none to fire for every one, before enabling it`);
  t.like(await webhookRow(filtered.id), { enabled: false, disabled_by: 'crm' });
  // another user: then it may be enabled, and hears that user
  await db().pool.query('select webhooks.update_webhook($1, user_id => $2)', [filtered.id, other.id]);
  t.like(await webhookRow(filtered.id), { user_id: other.id, deleted_filter_target: null, enabled: false });
  await db().pool.query('select webhooks.enable_webhook($1)', [filtered.id]);
  t.like(await webhookRow(filtered.id), { enabled: true, disabled_by: null, disabled_reason: null });
  const contact = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, other.id]);
  t.deepEqual((await deliveriesOf(db().pool, [filtered.id])).map((d) => d.payload.data.user.id), [Number(user.id), Number(other.id)]);
});

test('any user, chosen on purpose: the filter cleared through update_webhook, it may be enabled and hears every user', async (t) => {
  const { f, user, other, filtered, company } = await userFiltered();
  await db().pool.query('delete from crm.users where id = $1', [user.id]);
  // the status filter cleared is not the user filter chosen
  await db().pool.query('select webhooks.update_webhook($1, clear_status_id => true)', [filtered.id]);
  t.like(await webhookRow(filtered.id), { deleted_filter_target: `user ${user.id} (${user.name})` });
  await db().pool.query('select webhooks.update_webhook($1, clear_user_id => true)', [filtered.id]);
  t.like(await webhookRow(filtered.id), { user_id: null, deleted_filter_target: null, enabled: false });
  await db().pool.query('select webhooks.enable_webhook($1)', [filtered.id]);
  const contact = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, other.id]);
  t.deepEqual((await deliveriesOf(db().pool, [filtered.id])).map((d) => d.payload.data.user.id), [Number(user.id), Number(other.id)]);
  // the validation trigger refuses an enabled webhook with the mark, by name; past it
  // (the triggers off), the table's own check does
  const named = await t.throwsAsync(db().pool.query(
    `update webhooks.webhooks set deleted_filter_target = 'user 1' where id = $1`, [filtered.id])) as any;
  t.like(named, { code: '23514', constraint: 'webhook_filter_target_deleted' });
  const checked = await t.throwsAsync(inTransaction(db().pool, 'set local session_replication_role = replica',
    (c) => c.query(`update webhooks.webhooks set deleted_filter_target = 'user 1' where id = $1`, [filtered.id]))) as any;
  t.like(checked, { code: '23514', constraint: 'webhooks_deleted_filter_target_disabled' });
});

test('a webhook disabled before keeps when and by whom; its reason says the user went', async (t) => {
  const { user, filtered } = await userFiltered();
  await db().pool.query(
    `update webhooks.webhooks set enabled = false, disabled_at = '2026-01-02T03:04:05Z', disabled_by = 'admin@example.com',
            disabled_reason = 'paused for the holidays' where id = $1`, [filtered.id]);

  await db().pool.query('delete from crm.users where id = $1', [user.id]);

  const row = await webhookRow(filtered.id);
  t.like(row, { enabled: false, disabled_by: 'admin@example.com', user_id: null });
  t.is(row.disabled_at.toISOString(), '2026-01-02T03:04:05.000Z');
  t.regex(row.disabled_reason, new RegExp(`^The user it was filtered on, user ${user.id} \\(`));
});

test('a user name with control characters and bidi controls is quoted without them, and the delete goes through', async (t) => {
  const { user, filtered } = await userFiltered('Evil\u202e\u0007Name\n'.padEnd(300, 'x'));
  await db().pool.query('delete from crm.users where id = $1', [user.id]);
  const { disabled_reason: reason } = await webhookRow(filtered.id);
  t.true(reason.includes(`user ${user.id} (Evil  Name x`), reason);
  t.notRegex(reason, /[\u0000-\u001f\u202e]/);
  t.true(reason.length <= 500);
});

test('deleting the status a webhook is filtered on disables it the same way', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const status = await f.status(company.id, 'Hot lead');
  const filtered = await f.webhook({ companyId: company.id, actions: ['contact.status_added'], statusId: status.id });
  const contact = await f.contact(company.id);
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);

  await db().pool.query('delete from crm.statuses where id = $1', [status.id]);

  t.like(await webhookRow(filtered.id), {
    enabled: false, disabled_by: 'crm', status_id: null,
    disabled_reason: `The status it was filtered on, status ${status.id} (Hot lead), was deleted from the CRM. Choose another status, or any status, to enable it again.`,
    deleted_filter_target: `status ${status.id} (Hot lead)`,
  });
  t.is((await deliveriesOf(db().pool, [filtered.id])).length, 1);
});

test('a delete the CRM cancels leaves the webhook as it was', async (t) => {
  const { user, filtered } = await userFiltered();
  const client = await db().pool.connect();
  try {
    // the temporary function lives in the session that made it
    // in one transaction, rolled back: the other tests of this file delete users too
    await client.query('begin');
    await client.query(`
      create function pg_temp.keep_users() returns trigger language plpgsql as $$ begin return null; end $$;
      create trigger keep_users before delete on crm.users for each row execute function pg_temp.keep_users();`);
    const { rowCount } = await client.query('delete from crm.users where id = $1', [user.id]);
    t.is(rowCount, 0);
    t.like((await client.query('select enabled, disabled_by, user_id from webhooks.webhooks where id = $1', [filtered.id])).rows[0],
      { enabled: true, disabled_by: null, user_id: user.id });
  } finally {
    await client.query('rollback');
    client.release();
  }
});

test('with the engine\'s trigger switched off, the delete is refused: the webhook is neither lost nor widened', async (t) => {
  const { user, filtered } = await userFiltered();
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query('alter table crm.users disable trigger "!webhooks_user_deleted"');
    const error = await t.throwsAsync(client.query('delete from crm.users where id = $1', [user.id]));
    t.like(error, { code: '23503', constraint: 'webhooks_user_id_fkey' });
  } finally {
    await client.query('rollback');
    client.release();
  }
  t.like(await webhookRow(filtered.id), { enabled: true, user_id: user.id });
});

test('deleting the company deletes its webhooks, users and statuses together', async (t) => {
  const { f, company, filtered, everyone } = await userFiltered();
  const status = await f.status(company.id);
  const byStatus = await f.webhook({ companyId: company.id, actions: ['contact.status_removed'], statusId: status.id });
  await db().pool.query('delete from crm.companies where id = $1', [company.id]);
  const { rows } = await db().pool.query('select id from webhooks.webhooks where id = any ($1::bigint[])',
    [[filtered.id, everyone.id, byStatus.id]]);
  t.deepEqual(rows, []);
});
