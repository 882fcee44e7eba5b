// Each company sealed off from the others: company A's admin, trying every query and
// mutation with company B's ids, sees nothing of B and changes nothing. And a viewer
// reads but cannot change anything.
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { snapshotOf as snapshotOfCompany, twoCompanies as twoCompaniesIn } from '../helpers/two-companies.ts';

const { db, api } = useTestDatabaseWithApi(test);
const twoCompanies = () => twoCompaniesIn(db().pool);
/** Everything of the company as the owner sees it, to compare before and after. */
const snapshotOf = (companyId: string) => snapshotOfCompany(db().pool, companyId);

test('company A\'s admin querying with company B\'s ids sees nothing of B', async (t) => {
  const w = await twoCompanies();
  const token = await api().token(w.a.id);
  const ask = async (query: string, variables: Record<string, unknown> = {}) => {
    const response = await api().gql(token, query, variables);
    t.falsy(response.errors, query);
    return response.data;
  };

  t.is((await ask('query($id: BigInt!) { webhookById(id: $id) { id } }', { id: w.bHook.id })).webhookById, null, 'webhookById');
  t.is((await ask('query($id: BigInt!) { webhookById(id: $id) { id } }', { id: w.bDisabled.id })).webhookById, null, 'webhookById (disabled)');
  t.is((await ask('query($id: BigInt!) { deliveryById(id: $id) { id } }', { id: w.bDelivery.id })).deliveryById, null, 'deliveryById');
  t.is((await ask('query($id: BigInt!) { deliveryAttemptById(id: $id) { id } }', { id: w.bAttempt })).deliveryAttemptById, null, 'deliveryAttemptById');

  t.deepEqual((await ask('{ allWebhooks { nodes { id companyId } } }')).allWebhooks.nodes, [{ id: w.aHook.id, companyId: w.a.id }], 'allWebhooks: A\'s only');
  t.deepEqual((await ask('query($c: BigInt!) { allWebhooks(condition: { companyId: $c }) { totalCount } }', { c: w.b.id })).allWebhooks.totalCount, 0, 'allWebhooks by B\'s company id');
  t.deepEqual((await ask('{ allDeliveries { nodes { id } } }')).allDeliveries.nodes, [], 'allDeliveries');
  t.deepEqual((await ask('query($id: BigInt!) { allDeliveries(condition: { id: $id }) { nodes { id } } }', { id: w.bDelivery.id })).allDeliveries.nodes, [], 'allDeliveries by B\'s delivery id');
  t.deepEqual((await ask('{ allDeliveryAttempts { nodes { id } } }')).allDeliveryAttempts.nodes, [], 'allDeliveryAttempts');
  t.deepEqual((await ask('query($id: BigInt!) { allDeliveryAttempts(condition: { id: $id }) { nodes { id } } }', { id: w.bAttempt })).allDeliveryAttempts.nodes, [], 'allDeliveryAttempts by B\'s attempt id');
  t.deepEqual((await ask('{ webhookReport { nodes { webhookId } } }')).webhookReport.nodes, [{ webhookId: w.aHook.id }], 'webhookReport: A\'s only');
  t.is((await ask('{ currentCompanyId }')).currentCompanyId, w.a.id, 'currentCompanyId');
  t.false((await ask('{ companyStatuses { nodes { id } } }')).companyStatuses.nodes.some((s: any) => s.id === w.bStatus.id), 'companyStatuses');
  t.false((await ask('{ companyUsers { nodes { id } } }')).companyUsers.nodes.some((u: any) => u.id === w.bUser.id), 'companyUsers');
  t.deepEqual((await ask('query($u: [BigInt]!, $s: [BigInt]!) { companyUsersNamed(ids: $u) { id } companyStatusesNamed(ids: $s) { id } }',
    { u: [w.bUser.id], s: [w.bStatus.id] })), { companyUsersNamed: [], companyStatusesNamed: [] }, 'companyUsersNamed, companyStatusesNamed');
  t.deepEqual((await ask('query($n: String) { companyUsersMatching(search: $n) { id } }', { n: w.bUser.name })).companyUsersMatching, [], 'companyUsersMatching by B\'s user\'s name');
  t.is((await ask('query($id: BigInt!) { backfillById(id: $id) { id } }', { id: w.bBackfill })).backfillById, null, 'backfillById');
  t.deepEqual((await ask('{ allBackfills { nodes { id } } }')).allBackfills.nodes, [], 'allBackfills');
  t.deepEqual((await ask('query($ids: [BigInt]) { latestBackfills(webhookIds: $ids) { nodes { id } } }', { ids: [w.bHook.id] })).latestBackfills.nodes, [], 'latestBackfills of B\'s webhook');
  t.is((await ask('query($id: BigInt!) { deliveryAttemptsCount(deliveryId: $id) }', { id: w.bDelivery.id })).deliveryAttemptsCount, 0, 'deliveryAttemptsCount');
  t.is((await ask('query($c: BigInt!, $id: BigInt!, $at: Datetime!) { deliveryAttemptByCompanyIdAndIdAndDeliveryCreatedAt(companyId: $c, id: $id, deliveryCreatedAt: $at) { id } }',
    { c: w.b.id, id: w.bAttempt, at: w.bAttemptCreatedAt.toISOString() })).deliveryAttemptByCompanyIdAndIdAndDeliveryCreatedAt, null, 'an attempt by its whole key');
  t.is((await ask('query($id: BigInt!) { auditLogById(id: $id) { id } }', { id: w.bAudit })).auditLogById, null, 'auditLogById');
  t.false((await ask('{ allAuditLogs { nodes { companyId } } }')).allAuditLogs.nodes.some((row: any) => row.companyId === w.b.id), 'allAuditLogs');
  t.deepEqual((await ask('{ webhookReportCounts }')).webhookReportCounts[w.bHook.id], undefined, 'webhookReportCounts');
});

test('company A\'s admin trying every mutation on company B\'s ids changes nothing of B', async (t) => {
  const w = await twoCompanies();
  const token = await api().token(w.a.id);
  const before = await snapshotOf(w.b.id);
  const refused = async (name: string, query: string, variables: Record<string, unknown>, constraint: string) => {
    const response = await api().gql(token, query, variables);
    t.is(response.errors?.[0]?.extensions?.constraint, constraint, `${name}: ${JSON.stringify(response.errors ?? response.data)}`);
  };

  await refused('updateWebhook', 'mutation($id: BigInt!) { updateWebhook(input: { id: $id, url: "https://evil.example.com" }) { result { id } } }', { id: w.bHook.id }, 'webhook_not_found');
  await refused('disableWebhook', 'mutation($id: BigInt!) { disableWebhook(input: { id: $id, reason: "x" }) { result { id } } }', { id: w.bHook.id }, 'webhook_not_found');
  await refused('enableWebhook', 'mutation($id: BigInt!) { enableWebhook(input: { id: $id }) { result { id } } }', { id: w.bDisabled.id }, 'webhook_not_found');
  await refused('rotateWebhookSecret', 'mutation($id: BigInt!) { rotateWebhookSecret(input: { id: $id }) { result { secret } } }', { id: w.bHook.id }, 'webhook_not_found');
  await refused('deleteWebhook', 'mutation($id: BigInt!) { deleteWebhook(input: { id: $id }) { result { id } } }', { id: w.bHook.id }, 'webhook_not_found');
  await refused('replayDelivery', 'mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { id } } }', { id: w.bDelivery.id }, 'delivery_not_found');
  await refused('replayFailed', 'mutation($id: BigInt!) { replayFailed(input: { webhookId: $id, since: "2000-01-01T00:00:00Z" }) { result { id } } }', { id: w.bHook.id }, 'webhook_not_found');
  await refused('createWebhook with B\'s status',
    'mutation($s: BigInt!) { createWebhook(input: { name: "x", url: "https://x.example.com", fields: ["email"], actions: [CONTACT_STATUS_ADDED], statusId: $s }) { result { secret } } }',
    { s: w.bStatus.id }, 'webhook_status_other_company');
  await refused('createWebhook with B\'s user',
    'mutation($u: BigInt!) { createWebhook(input: { name: "x", url: "https://x.example.com", fields: ["email"], actions: [CONTACT_USER_ASSIGNED], userId: $u }) { result { secret } } }',
    { u: w.bUser.id }, 'webhook_user_other_company');
  await refused('updateWebhook of A\'s webhook to B\'s user',
    'mutation($id: BigInt!, $u: BigInt!) { updateWebhook(input: { id: $id, actions: [CONTACT_USER_ASSIGNED], userId: $u }) { result { id } } }',
    { id: w.aHook.id, u: w.bUser.id }, 'webhook_user_other_company');
  await refused('startBackfill', 'mutation($id: BigInt!) { startBackfill(input: { webhookId: $id }) { result } }', { id: w.bHook.id }, 'webhook_not_found');
  await refused('cancelBackfill', 'mutation($id: BigInt!) { cancelBackfill(input: { id: $id }) { result { id } } }', { id: w.bBackfill }, 'backfill_not_found');
  await refused('sendTestWebhook', 'mutation($id: BigInt!) { sendTestWebhook(input: { id: $id }) { result { id } } }', { id: w.bHook.id }, 'webhook_not_found');
  await refused('setWebhookDelivery', 'mutation($id: BigInt!) { setWebhookDelivery(input: { id: $id, ordered: true }) { result { id } } }', { id: w.bHook.id }, 'webhook_not_found');

  // a webhook cannot even be aimed at another company: there is no such input
  const aimed = await api().gql(token,
    'mutation($c: BigInt!) { createWebhook(input: { companyId: $c, name: "x", url: "https://x.example.com", fields: ["email"], actions: [CONTACT_CREATED] }) { result { secret } } }',
    { c: w.b.id });
  t.regex(aimed.errors?.[0].message ?? '', /companyId/, 'createWebhook has no companyId input');

  t.deepEqual(await snapshotOf(w.b.id), before, 'company B is exactly as it was');
});

test('a viewer reads its company\'s webhooks and history but every mutation is refused', async (t) => {
  const w = await twoCompanies();
  const f = factories(db().pool);
  const aFailed = await f.webhook({ companyId: w.a.id, actions: ['contact.created'] });
  await f.contact(w.a.id);
  const [aDelivery] = await deliveriesOf(db().pool, [aFailed.id]);
  await db().pool.query(`update webhooks.deliveries set state = 'failed', attempts = 1, completed_at = now() where id = $1`, [aDelivery.id]);
  const viewer = await api().token(w.a.id, 'webhook_viewer');

  const read = await api().gql(viewer, 'query($id: BigInt!) { webhookById(id: $id) { id history { nodes { id state } } } webhookReport { totalCount } }', { id: aFailed.id });
  t.falsy(read.errors);
  t.deepEqual(read.data.webhookById.history.nodes, [{ id: aDelivery.id, state: 'failed' }]);
  t.is(read.data.webhookReport.totalCount, 2);

  const before = await snapshotOf(w.a.id);
  const mutations: Array<[string, string, Record<string, unknown>]> = [
    ['createWebhook', 'mutation { createWebhook(input: { name: "x", url: "https://x.example.com", fields: ["email"], actions: [CONTACT_CREATED] }) { result { secret } } }', {}],
    ['updateWebhook', 'mutation($id: BigInt!) { updateWebhook(input: { id: $id, name: "renamed" }) { result { id } } }', { id: aFailed.id }],
    ['disableWebhook', 'mutation($id: BigInt!) { disableWebhook(input: { id: $id }) { result { id } } }', { id: aFailed.id }],
    ['enableWebhook', 'mutation($id: BigInt!) { enableWebhook(input: { id: $id }) { result { id } } }', { id: aFailed.id }],
    ['rotateWebhookSecret', 'mutation($id: BigInt!) { rotateWebhookSecret(input: { id: $id }) { result { secret } } }', { id: aFailed.id }],
    ['deleteWebhook', 'mutation($id: BigInt!) { deleteWebhook(input: { id: $id }) { result { id } } }', { id: aFailed.id }],
    ['replayDelivery', 'mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { id } } }', { id: aDelivery.id }],
    ['replayFailed', 'mutation($id: BigInt!) { replayFailed(input: { webhookId: $id, since: "2000-01-01T00:00:00Z" }) { result { id } } }', { id: aFailed.id }],
  ];
  for (const [name, query, variables] of mutations) {
    const response = await api().gql(viewer, query, variables);
    t.is(response.errors?.[0]?.extensions?.code, '42501', `${name}: ${JSON.stringify(response.errors ?? response.data)}`);
  }
  t.deepEqual(await snapshotOf(w.a.id), before, 'nothing changed');
});

// (serial: the file's two-company scenes move every sequence, lower as well as higher,
// while they are made, and a scene made between its insert and its update gave the
// update's delivery the lower id: listed by id, updated before created, once in a
// fresh-clone run)
test.serial('a CRM application role with no rights on the webhook schemas still has its changes captured', async (t) => {
  // Row-level security and closed private tables must not stop capture: the engine's
  // trigger functions run as their owner, whichever role writes the CRM.
  const pool = db().pool;
  await pool.query(`do $$ begin create role bpd_test_crm_app nologin;
                    exception when duplicate_object or unique_violation then null; end $$`);
  await pool.query('grant usage on schema crm to bpd_test_crm_app');
  await pool.query('grant select, insert, update, delete on all tables in schema crm to bpd_test_crm_app');
  const f = factories(pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'] });

  const client = await pool.connect();
  try {
    await client.query('begin');
    await client.query('set local role bpd_test_crm_app');
    const denied = await client.query('savepoint s; select count(*) from webhooks.deliveries').catch((error) => error);
    t.regex(String(denied.message), /permission denied for schema webhooks/);
    await client.query('rollback to savepoint s');
    const { rows: [contact] } = await client.query(
      "insert into crm.contacts (company_id, first_name) values ($1, 'Ada') returning id", [company.id]);
    await client.query("update crm.contacts set first_name = 'Augusta' where id = $1", [contact.id]);
    await client.query('commit');
  } finally {
    client.release();
  }
  t.deepEqual((await deliveriesOf(pool, [hook.id])).map((d) => d.action), ['contact.created', 'contact.updated']);
});
