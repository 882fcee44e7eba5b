// A delivery's contactName: the contact's name as its payload shows it, which the
// page's history shows in each row instead of fetching each row's payload (up to 1 MiB
// each). First and last name, else the email, at most 200 characters; null for none.
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test);

const HISTORY = `query($id: BigInt!) { webhookById(id: $id) { history(first: 10) { nodes { contactId contactName } } } }`;

test('contactName: first and last name, else the email, at most 200 characters; none of them, null', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['first_name', 'last_name', 'email'] });
  const contacts = [
    await f.contact(company.id, { first_name: 'Grace', last_name: 'Hopper' }),
    await f.contact(company.id, { first_name: '', last_name: 'Lovelace' }),
    await f.contact(company.id, { first_name: null, last_name: null, email: 'only@example.com' }),
    await f.contact(company.id, { first_name: null, last_name: null, email: null }),
    await f.contact(company.id, { first_name: 'x'.repeat(300), last_name: 'y' }),
  ];
  // a webhook that sends no name: its payload has none to show
  const idsOnly = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['city'] });
  await f.contact(company.id, { first_name: 'Unsent' });

  const viewer = await api().token(company.id, 'webhook_viewer');
  const answer = await api().gql(viewer, HISTORY, { id: hook.id });
  t.is(answer.errors, undefined);
  const names = new Map(answer.data.webhookById.history.nodes.map((n: any) => [n.contactId, n.contactName]));
  t.deepEqual(contacts.map((c) => names.get(c.id)), ['Grace Hopper', 'Lovelace', 'only@example.com', null, 'x'.repeat(200)]);
  const other = await api().gql(viewer, HISTORY, { id: idsOnly.id });
  t.deepEqual(other.data.webhookById.history.nodes.map((n: any) => n.contactName), [null]);
});
