// A DBA's settings for the API's own login (webhook_authenticator), meant for other
// sessions: the API's requests are transactions of its own, bounded by the statement
// timeout it sets for each (api/limits.ts).
import test from 'ava';
import { AUTHENTICATOR_ROLE } from '../../api/authenticator.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test, {
  beforeApi: (database) => database.pool
    .query(`alter role ${AUTHENTICATOR_ROLE} in database ${database.name} set transaction_timeout = '1ms'`).then(() => {}),
});

test("transaction_timeout of 1 ms for the API's login (Postgres 17): an admin's reads still answer", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'] });
  const admin = await api().token(company.id);
  for (let i = 0; i < 5; i++) {
    const read = await api().gql(admin, 'query($id: BigInt!) { webhookById(id: $id) { name history { nodes { id } } } }', { id: hook.id });
    t.falsy(read.errors, JSON.stringify(read.errors));
    t.is(read.data.webhookById.name, hook.name);
    const report = await api().gql(admin, '{ webhookReport { nodes { webhookId } } }');
    t.falsy(report.errors, JSON.stringify(report.errors));
  }
});
