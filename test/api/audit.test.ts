// The audit trail and test sends: every change an admin makes through GraphQL, every
// change a DBA makes in SQL and the relay's own disabling each leave a row in
// webhooks.audit_log, with who did it; a company reads only its own rows and no API
// role can write any. A test send is a delivery of action webhook.test with the
// sample contact's chosen fields, in the history and not in Times Fired.
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test);

async function client(companyId: string, role: 'webhook_admin' | 'webhook_viewer' = 'webhook_admin', sub = `admin@${companyId}`) {
  const token = await api().token(companyId, role, sub);
  return async (query: string, variables: Record<string, unknown> = {}) => {
    const response = await api().gql(token, query, variables);
    if (response.errors) throw new Error(JSON.stringify(response.errors));
    return response.data;
  };
}

const AUDIT = `query($id: BigInt!) { webhookById(id: $id) { auditLog { nodes { actor action details webhookId companyId at } } } }`;

async function auditRows(webhookId: string) {
  const { rows } = await db().pool.query(
    'select actor, action, details from webhooks.audit_log where webhook_id = $1 order by id', [webhookId]);
  return rows as Array<{ actor: string; action: string; details: any }>;
}

/** Simulates the relay having finished a delivery. */
async function fail(deliveryId: string) {
  await db().pool.query(
    `update webhooks.deliveries set state = 'failed', attempts = 1, completed_at = now(), last_status_code = 500
     where id = $1`, [deliveryId]);
}

test('every admin action through GraphQL leaves a row with the token subject as actor, newest first in auditLog', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const status = await f.status(company.id, 'Thank You Note');
  const gql = await client(company.id, 'webhook_admin', 'jane@purple.example');

  const { createWebhook } = await gql(`mutation { createWebhook(input: {
      name: "Notes", url: "https://receiver.example.com/a", fields: ["first_name"], actions: [CONTACT_CREATED] }) {
      result { webhook { id } } } }`);
  const id = createWebhook.result.webhook.id as string;
  await gql(`mutation($id: BigInt!, $s: BigInt!) { updateWebhook(input: {
      id: $id, url: "https://receiver.example.com/b", actions: [CONTACT_STATUS_ADDED], statusId: $s }) { result { id } } }`,
    { id, s: status.id });
  await gql('mutation($id: BigInt!) { disableWebhook(input: { id: $id, reason: "maintenance" }) { result { id } } }', { id });
  await gql('mutation($id: BigInt!) { enableWebhook(input: { id: $id }) { result { id } } }', { id });
  await gql('mutation($id: BigInt!) { rotateWebhookSecret(input: { id: $id }) { result { secret } } }', { id });

  // two failed deliveries: one replayed alone, then both at once by replayFailed
  const contact = await f.contact(company.id);
  await db().pool.query(`insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)`, [contact.id, status.id]);
  await db().pool.query(`delete from crm.contact_statuses where contact_id = $1`, [contact.id]);
  await db().pool.query(`insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)`, [contact.id, status.id]);
  const deliveries = await deliveriesOf(db().pool, [id]);
  t.is(deliveries.length, 2);
  for (const d of deliveries) await fail(d.id);
  await gql('mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { id } } }', { id: deliveries[0].id });
  await fail(deliveries[0].id);
  await gql('mutation($id: BigInt!) { replayFailed(input: { webhookId: $id, since: "2000-01-01T00:00:00Z" }) { result { id } } }', { id });
  const { sendTestWebhook } = await gql('mutation($id: BigInt!) { sendTestWebhook(input: { id: $id }) { result { id messageId } } }', { id });

  const rows = await auditRows(id);
  t.deepEqual(rows.map((r) => [r.actor, r.action]), [
    ['jane@purple.example', 'webhook.created'],
    ['jane@purple.example', 'webhook.updated'],
    ['jane@purple.example', 'webhook.disabled'],
    ['jane@purple.example', 'webhook.enabled'],
    ['jane@purple.example', 'webhook.secret_rotated'],
    ['jane@purple.example', 'webhook.replayed'],
    ['jane@purple.example', 'webhook.replayed'],
    ['jane@purple.example', 'webhook.test'],
  ]);
  // every setting an admin chooses (settings added later are recorded too)
  t.like(rows[0].details, {
    name: 'Notes', url: 'https://receiver.example.com/a', fields: ['first_name'], actions: ['contact.created'],
    status_id: null, user_id: null,
  });
  t.false('secret_rotated_at' in rows[0].details || 'company_id' in rows[0].details || 'enabled' in rows[0].details);
  t.deepEqual(rows[1].details.changed, {
    url: { from: 'https://receiver.example.com/a', to: 'https://receiver.example.com/b' },
    actions: { from: ['contact.created'], to: ['contact.status_added'] },
    status_id: { from: null, to: Number(status.id) },
  });
  t.deepEqual(rows[2].details, { reason: 'maintenance' });
  // the rotation's row says when the previous secret stops verifying, as the secret itself does
  const { rows: [secret] } = await db().pool.query(
    'select expires_at from webhooks_private.rotated_secrets where webhook_id = $1', [id]);
  t.is(new Date(rows[4].details.previous_secret_valid_until).getTime(), secret.expires_at.getTime());
  t.deepEqual(rows[5].details, { deliveries: 1, delivery_ids: [Number(deliveries[0].id)] });
  // replayFailed's two deliveries make one row
  t.deepEqual(rows[6].details, { deliveries: 2, delivery_ids: deliveries.map((d) => Number(d.id)) });
  t.deepEqual(rows[7].details, { delivery_id: Number(sendTestWebhook.result.id), message_id: sendTestWebhook.result.messageId });

  // the same rows through GraphQL, newest first, for a viewer too
  const viewer = await client(company.id, 'webhook_viewer');
  const seen = (await viewer(AUDIT, { id })).webhookById.auditLog.nodes;
  t.deepEqual(seen.map((r: any) => r.action), rows.map((r) => r.action).reverse());
  t.like(seen[0], { actor: 'jane@purple.example', webhookId: id, companyId: company.id });

  // deleting is the last row, kept after the webhook is gone
  await gql('mutation($id: BigInt!) { deleteWebhook(input: { id: $id }) { result { id } } }', { id });
  const after = await auditRows(id);
  t.deepEqual(after.at(-1), { actor: 'jane@purple.example', action: 'webhook.deleted', details: { name: 'Notes', url: 'https://receiver.example.com/b' } });
  const all = await viewer(`query($id: BigInt!) { allAuditLogs(condition: { webhookId: $id }, orderBy: ID_ASC) { nodes { action } } }`, { id });
  t.deepEqual(all.allAuditLogs.nodes.map((r: any) => r.action), after.map((r) => r.action));
});

test('changes in SQL name the database role; the relay disabling a webhook is recorded as "relay"', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { rows: [{ current_user: role }] } = await db().pool.query('select current_user');

  await db().pool.query(`update webhooks.webhooks set name = 'Renamed' where id = $1`, [hook.id]);
  // as the relay's settle does after a 410 Gone (sql/30_delivery.sql)
  await db().pool.query(
    `update webhooks.webhooks set enabled = false, disabled_at = now(), disabled_by = 'relay',
       disabled_reason = 'the endpoint answered 410 Gone' where id = $1`, [hook.id]);
  const rows = await auditRows(hook.id);
  t.deepEqual(rows.map((r) => [r.actor, r.action]), [
    [role, 'webhook.created'],
    [role, 'webhook.updated'],
    ['relay', 'webhook.disabled'],
  ]);
  t.deepEqual(rows[1].details, { changed: { name: { from: hook.name, to: 'Renamed' } } });
  t.deepEqual(rows[2].details, { reason: 'the endpoint answered 410 Gone' });

  // as an API role without a token subject: that role
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('jwt.claims.company_id', $1, true)`, [company.id]);
    await client.query('set local role webhook_admin');
    await client.query(`select webhooks.enable_webhook($1)`, [hook.id]);
    await client.query('commit');
  } finally {
    client.release();
  }
  t.deepEqual((await auditRows(hook.id)).at(-1), { actor: 'webhook_admin', action: 'webhook.enabled', details: {} });
});

test('a company reads only its own audit rows, and no API role can write or change any', async (t) => {
  const f = factories(db().pool);
  const a = await f.company('A');
  const b = await f.company('B');
  const aHook = await f.webhook({ companyId: a.id, actions: ['contact.created'] });
  const bHook = await f.webhook({ companyId: b.id, actions: ['contact.created'] });

  for (const role of ['webhook_admin', 'webhook_viewer'] as const) {
    const gql = await client(a.id, role);
    const mine = await gql('{ allAuditLogs { nodes { webhookId companyId action } } }');
    t.deepEqual(mine.allAuditLogs.nodes, [{ webhookId: aHook.id, companyId: a.id, action: 'webhook.created' }], role);
    t.is((await gql(AUDIT, { id: bHook.id })).webhookById, null, role);
  }

  // no GraphQL mutation touches the table
  const schema = await (await client(a.id))('{ __schema { mutationType { fields { name } } } }');
  t.deepEqual(schema.__schema.mutationType.fields.map((m: any) => m.name).filter((n: string) => /audit/i.test(n)), []);

  // and in SQL, as the API roles, every write is refused
  for (const role of ['webhook_admin', 'webhook_viewer', 'webhook_authenticator']) {
    for (const statement of [
      `insert into webhooks.audit_log (company_id, webhook_id, actor, action) values (${a.id}, ${aHook.id}, 'me', 'webhook.updated')`,
      `update webhooks.audit_log set actor = 'me'`,
      `delete from webhooks.audit_log`,
    ]) {
      const connection = await db().pool.connect();
      try {
        await connection.query('begin');
        await connection.query(`select set_config('jwt.claims.company_id', $1, true)`, [a.id]);
        await connection.query(`set local role ${role}`);
        const error = await t.throwsAsync(connection.query(statement));
        t.is((error as any).code, '42501', `${role}: ${statement}`);
      } finally {
        await connection.query('rollback');
        connection.release();
      }
    }
  }
  const { rows } = await db().pool.query('select count(*)::int as n from webhooks.audit_log where webhook_id = any($1::bigint[])', [[aHook.id, bHook.id]]);
  t.is(rows[0].n, 2);
});

test('sendTestWebhook queues one webhook.test delivery with the sample contact\'s chosen fields, left out of Times Fired', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['first_name', 'city', 'email'] });
  const gql = await client(company.id);

  const { sendTestWebhook } = await gql(
    'mutation($id: BigInt!) { sendTestWebhook(input: { id: $id }) { result { id action contactId state payload } } }', { id: hook.id });
  t.like(sendTestWebhook.result, { action: 'WEBHOOK_TEST', contactId: '0', state: 'pending' });
  t.deepEqual(sendTestWebhook.result.payload.data, {
    contact: { id: 0, first_name: 'Ada', city: 'Springfield', email: 'ada.lovelace@example.com' },
    source: 'test',
  });
  t.is(sendTestWebhook.result.payload.type, 'webhook.test');

  // a real firing beside it
  await f.contact(company.id);
  const report = await gql('{ webhookReport { nodes { webhookId timesFired timesPending } } }');
  t.deepEqual(report.webhookReport.nodes, [{ webhookId: hook.id, timesFired: '1', timesPending: '1' }]);
  const history = await gql('query($id: BigInt!) { webhookById(id: $id) { history { nodes { action } } } }', { id: hook.id });
  t.deepEqual(history.webhookById.history.nodes.map((n: any) => n.action).sort(), ['CONTACT_CREATED', 'WEBHOOK_TEST']);
  // finished tests are still left out
  await db().pool.query(`update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now() where webhook_id = $1`, [hook.id]);
  const done = await gql('{ webhookReport { nodes { timesFired timesSucceeded timesFailed timesPending } } }');
  t.deepEqual(done.webhookReport.nodes, [{ timesFired: '1', timesSucceeded: '1', timesFailed: '0', timesPending: '0' }]);
});

test('sendTestWebhook: refused for a viewer, for a disabled webhook and for another company\'s webhook; no webhook subscribes to webhook.test', async (t) => {
  const f = factories(db().pool);
  const a = await f.company();
  const b = await f.company();
  const hook = await f.webhook({ companyId: a.id, actions: ['contact.created'] });
  const off = await f.webhook({ companyId: a.id, actions: ['contact.created'], enabled: false });
  const other = await f.webhook({ companyId: b.id, actions: ['contact.created'] });
  const SEND = 'mutation($id: BigInt!) { sendTestWebhook(input: { id: $id }) { result { id } } }';
  const codeOf = async (token: string, id: string) => (await api().gql(token, SEND, { id })).errors?.[0]?.extensions;

  t.like(await codeOf(await api().token(a.id, 'webhook_viewer'), hook.id), { code: '42501' });
  t.like(await codeOf(await api().token(a.id), off.id), { code: '55000', constraint: 'webhook_disabled', column: 'id' });
  t.like(await codeOf(await api().token(a.id), other.id), { code: 'P0002', constraint: 'webhook_not_found' });
  t.deepEqual(await deliveriesOf(db().pool, [hook.id, off.id, other.id]), []);

  const created = await api().gql(await api().token(a.id), `mutation { createWebhook(input: {
    name: "x", url: "https://receiver.example.com/x", fields: ["email"], actions: [WEBHOOK_TEST] }) { result { secret } } }`);
  t.like(created.errors?.[0]?.extensions, { code: '23514', constraint: 'webhook_actions_contact_only' });
});

test('contactFields, companyStatuses and companyUsers answer an admin: what the setup form offers', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await f.status(company.id, 'Thank You Note');
  const data = await (await client(company.id))('{ contactFields companyStatuses { nodes { name } } }');
  t.true(data.contactFields.includes('first_name'));
  t.deepEqual(data.companyStatuses.nodes, [{ name: 'Thank You Note' }]);
});

test('starting and cancelling a backfill leave rows, with who did it', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const connection = await db().pool.connect();
  let backfillId: string;
  try {
    await connection.query('begin');
    await connection.query(`select set_config('jwt.claims.company_id', $1, true), set_config('jwt.claims.sub', 'jane@purple.example', true)`, [company.id]);
    await connection.query('set local role webhook_admin');
    backfillId = (await connection.query('select webhooks.backfill($1) as id', [hook.id])).rows[0].id;
    await connection.query('select webhooks.cancel_backfill($1)', [backfillId]);
    await connection.query('commit');
  } finally {
    connection.release();
  }
  const rows = (await auditRows(hook.id)).slice(1);
  t.deepEqual(rows.map((r) => [r.actor, r.action, r.details.backfill_id]), [
    ['jane@purple.example', 'webhook.backfill_started', Number(backfillId)],
    ['jane@purple.example', 'webhook.backfill_cancelled', Number(backfillId)],
  ]);
});

test('an actor, a disabledBy and a createdBy written whole (by a DBA, or before the subject was bounded) leave the API as their first 200 characters', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // a DBA's session may name itself anything: a 1 MB subject disables the webhook
  const long = 'é'.repeat(1_000_000);
  const dba = await db().pool.connect();
  try {
    await dba.query('begin');
    await dba.query(`select set_config('jwt.claims.sub', $1, true)`, [long]);
    await dba.query(`update webhooks.webhooks set enabled = false, disabled_by = webhooks.current_actor() where id = $1`, [webhook.id]);
    await dba.query('commit');
  } finally {
    dba.release();
  }
  t.is((await auditRows(webhook.id)).at(-1)!.actor.length, 1_000_000, 'kept whole');

  const gql = await client(company.id, 'webhook_viewer');
  const { webhookById, webhookReport } = await gql(`query($id: BigInt!) {
      webhookById(id: $id) { disabledBy auditLog(first: 1) { nodes { actor action } } }
      webhookReport(webhookId: $id) { nodes { disabledBy } } }`, { id: webhook.id });
  t.is(webhookById.disabledBy.length, 200);
  t.is(webhookById.disabledBy, 'é'.repeat(200));
  t.deepEqual(webhookById.auditLog.nodes, [{ actor: 'é'.repeat(200), action: 'webhook.disabled' }]);
  t.deepEqual(webhookReport.nodes, [{ disabledBy: 'é'.repeat(200) }]);
  const { allAuditLogs } = await gql('{ allAuditLogs(first: 1, orderBy: ID_DESC) { nodes { actor } } }');
  t.deepEqual(allAuditLogs.nodes, [{ actor: 'é'.repeat(200) }]);
  const { allWebhooks } = await gql('{ allWebhooks { nodes { disabledBy } } }');
  t.deepEqual(allWebhooks.nodes, [{ disabledBy: 'é'.repeat(200) }]);
  // a backfill's createdBy, the same actor
  await db().pool.query(
    `insert into webhooks.backfills (webhook_id, company_id, state, total, finished_at, created_by) values ($1, $2, 'cancelled', 0, now(), $3)`,
    [webhook.id, company.id, long]);
  const { allBackfills } = await gql('{ allBackfills { nodes { createdBy } } }');
  t.is(allBackfills.nodes[0].createdBy.length, 200);
  t.deepEqual(allBackfills.nodes, [{ createdBy: 'é'.repeat(200) }]);
});
