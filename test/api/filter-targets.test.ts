// Through GraphQL: a webhook whose user filter the CRM deleted is refused enableWebhook
// by name until its admin chooses, here "any user" with updateWebhook's clearUserId
// (sql/10_config.sql; test/sql/filter-targets.test.ts holds the rest).
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test);

const ENABLE = 'mutation($id: BigInt!) { enableWebhook(input: { id: $id }) { result { enabled deletedFilterTarget } } }';
const ANY_USER = 'mutation($id: BigInt!) { updateWebhook(input: { id: $id, clearUserId: true }) { result { userId enabled deletedFilterTarget } } }';

test('enableWebhook is refused by name while the deleted user is not replaced; clearUserId, then it is enabled', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id, 'Jane Doe');
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.user_assigned'], userId: user.id });
  await db().pool.query('delete from crm.users where id = $1', [user.id]);
  const admin = await api().token(company.id);

  const refused = await api().gql(admin, ENABLE, { id: hook.id });
  t.is(refused.errors?.length, 1);
  t.like(refused.errors![0], {
    message: `this webhook was filtered on user ${user.id} (Jane Doe), which the CRM deleted: choose another, or none to fire for every one, before enabling it`,
    extensions: { code: '23514', constraint: 'webhook_filter_target_deleted', column: 'user_id' },
  });

  const cleared = await api().gql(admin, ANY_USER, { id: hook.id });
  t.deepEqual(cleared.data.updateWebhook.result, { userId: null, enabled: false, deletedFilterTarget: null });
  const enabled = await api().gql(admin, ENABLE, { id: hook.id });
  t.deepEqual(enabled.data.enableWebhook.result, { enabled: true, deletedFilterTarget: null });
});
