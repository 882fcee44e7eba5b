// A DBA's default_transaction_read_only = on for the API's login (or a standby in its
// DATABASE_URL): reads answer, and a change is refused by name, not as an unnamed
// "An error occurred".
import test from 'ava';
import { AUTHENTICATOR_ROLE } from '../../api/authenticator.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test, {
  beforeApi: (database) => database.pool
    .query(`alter role ${AUTHENTICATOR_ROLE} in database ${database.name} set default_transaction_read_only = on`).then(() => {}),
});

test("read-only transactions for the API's login: reads answer, a change is refused as DATABASE_READ_ONLY", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const admin = await api().token(company.id);
  const read = await api().gql(admin, 'query($id: BigInt!) { webhookById(id: $id) { name } }', { id: hook.id });
  t.falsy(read.errors, JSON.stringify(read.errors));
  t.is(read.data.webhookById.name, hook.name);
  const change = await api().gql(admin, `mutation($id: BigInt!) { disableWebhook(input: { id: $id }) { clientMutationId } }`, { id: hook.id });
  t.like(change.errors?.[0], { extensions: { code: 'DATABASE_READ_ONLY', sqlstate: '25006' } }, JSON.stringify(change.errors));
  t.regex(change.errors?.[0]?.message ?? '', /read-only/);
  const { rows: [row] } = await db().pool.query('select enabled from webhooks.webhooks where id = $1', [hook.id]);
  t.true(row.enabled);
});
