// What the setup form's pickers and the history of changes ask of a company's users and
// statuses: a search as one types (companyUsersMatching, companyStatusesMatching, at
// most companyChoicesUpTo and one more when more match) and the names of some ids
// (companyUsersNamed, companyStatusesNamed), the caller's company's alone. What they
// read: test/sql/choice-search.test.ts.
import test from 'ava';
import { LONGEST_LIST } from '../../api/limits.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test);

const SEARCH = /* GraphQL */ `
  query Search($search: String) {
    companyChoicesUpTo
    companyUsersMatching(search: $search) { id name email }
    companyStatusesMatching(search: $search) { id name }
  }
`;

test('a search answers the company\'s users and statuses that start with the text typed, a viewer\'s too, at most one more than it shows', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const ada = await f.user(company.id, 'Ada Admin');
  const adam = await f.user(company.id, 'adam Smith');
  await f.user(company.id, 'Bob Broker');
  await f.user(other.id, 'Ada Elsewhere');
  const note = await f.status(company.id, 'Thank You Note');
  await f.status(other.id, 'Thank You Card');
  const token = await api().token(company.id, 'webhook_viewer');

  const found = await api().gql(token, SEARCH, { search: 'ADA' });
  t.deepEqual(found.errors, undefined);
  t.is(found.data.companyChoicesUpTo, 20);
  t.deepEqual(found.data.companyUsersMatching, [
    { id: ada.id, name: 'Ada Admin', email: ada.email }, { id: adam.id, name: 'adam Smith', email: adam.email }]);
  t.deepEqual(found.data.companyStatusesMatching, []);
  const thank = await api().gql(token, SEARCH, { search: 'thank' });
  t.deepEqual(thank.data.companyStatusesMatching, [{ id: note.id, name: 'Thank You Note' }]);
  // % and _ are themselves
  t.deepEqual((await api().gql(token, SEARCH, { search: '%' })).data.companyUsersMatching, []);
  t.deepEqual((await api().gql(token, SEARCH, { search: 'ad_' })).data.companyUsersMatching, []);

  await db().pool.query(`insert into crm.users (company_id, name, email) select $1, 'Zed ' || i, null from generate_series(1, 30) i`, [company.id]);
  const many = await api().gql(token, SEARCH, { search: 'zed' });
  t.is(many.data.companyUsersMatching.length, 21);
});

test('a search of more than 1,000 characters is refused by name, matching or not', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id, 'webhook_viewer');
  t.deepEqual((await api().gql(token, SEARCH, { search: 'a'.repeat(1000) })).errors, undefined);
  const refused = await api().gql(token, SEARCH, { search: 'a'.repeat(1001) });
  t.like(refused.errors?.[0]?.extensions, { code: '22023', constraint: 'search_max_length', column: 'search' });
  t.is(refused.data?.companyUsersMatching ?? null, null);
});

test('the names of some ids: the company\'s alone, at most 1,000 ids, refused by name past them', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const ada = await f.user(company.id, 'Ada Admin');
  const theirs = await f.user(other.id, 'Not Yours');
  const note = await f.status(company.id, 'Thank You Note');
  const card = await f.status(other.id, 'Thank You Card');
  const token = await api().token(company.id, 'webhook_viewer');
  const NAMED = 'query Named($users: [BigInt]!, $statuses: [BigInt]!) { companyUsersNamed(ids: $users) { id name } companyStatusesNamed(ids: $statuses) { id name } }';
  const named = await api().gql(token, NAMED, { users: [ada.id, theirs.id], statuses: [card.id, note.id] });
  t.deepEqual(named.data, { companyUsersNamed: [{ id: ada.id, name: 'Ada Admin' }], companyStatusesNamed: [{ id: note.id, name: 'Thank You Note' }] });
  const tooMany = await api().gql(token, NAMED, { users: Array.from({ length: 1001 }, (_, i) => String(i + 1)), statuses: [] });
  // (refused as any list input of more items is, before it runs: names_asked_max is the
  // function's own refusal, test/sql/choice-search.test.ts)
  t.like(tooMany.errors?.[0]?.extensions, { code: '22023', constraint: 'list_too_long', column: 'ids' });
  // the API counts a list as LONGEST_LIST rows (api/limits.ts): as many as it may hold
  const most = await db().pool.query('select webhooks_private.names_asked_max() as n');
  t.is(most.rows[0].n, LONGEST_LIST);
});

/** A GraphQL request's answer as its bytes: what the page's browser has to take. */
async function answerBytes(token: string, query: string, variables: Record<string, unknown> = {}): Promise<{ bytes: number; body: any }> {
  const response = await fetch(`${api().api.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  return { bytes: Buffer.byteLength(text), body: JSON.parse(text) };
}

test('a CRM name or email of megabytes leaves the API as its first 200 characters, in every list and in the report', async (t) => {
  const f = factories(db().pool);
  const huge = (letter: string) => letter.repeat(3 * 1024 * 1024);
  const company = await f.company(huge('C'));
  const user = await f.user(company.id, huge('u'));
  await db().pool.query('update crm.users set email = $2 where id = $1', [user.id, huge('e')]);
  const status = await f.status(company.id, huge('s'));
  await f.webhook({ companyId: company.id, actions: ['contact.status_added'], statusId: status.id });
  await f.webhook({ companyId: company.id, actions: ['contact.user_assigned'], userId: user.id });
  const token = await api().token(company.id, 'webhook_viewer');

  const lists = await answerBytes(token, `query Lists($users: [BigInt]!, $statuses: [BigInt]!) {
    currentCompanyName
    companyUsers { nodes { id name email } }
    companyStatuses { nodes { id name } }
    companyUsersNamed(ids: $users) { id name email }
    companyStatusesNamed(ids: $statuses) { id name }
    companyUsersMatching(search: "u") { id name email }
    companyStatusesMatching(search: "s") { id name }
    webhookReport(withCounts: false) { nodes { statusName userName } }
  }`, { users: [user.id], statuses: [status.id] });
  t.deepEqual(lists.body.errors, undefined);
  // (a text longer than it should be is told by its length: a failure prints no megabytes)
  const data = JSON.parse(JSON.stringify(lists.body.data, (_key, value) =>
    typeof value === 'string' && value.length > 200 ? `${value.length} characters` : value));
  t.is(data.currentCompanyName, 'C'.repeat(200));
  for (const users of [data.companyUsers.nodes, data.companyUsersNamed, data.companyUsersMatching]) {
    t.deepEqual(users, [{ id: user.id, name: 'u'.repeat(200), email: 'e'.repeat(200) }]);
  }
  for (const statuses of [data.companyStatuses.nodes, data.companyStatusesNamed, data.companyStatusesMatching]) {
    t.deepEqual(statuses, [{ id: status.id, name: 's'.repeat(200) }]);
  }
  t.deepEqual(data.webhookReport.nodes.map((row: any) => row.statusName ?? row.userName).sort(), ['s'.repeat(200), 'u'.repeat(200)]);
  // 12 names of 200 characters and the rest: a few kilobytes, not 12 names of 3 MB
  t.true(lists.bytes < 8 * 1024, `${lists.bytes} bytes`);
});

test('inputBounds: the most characters the API takes of a name, a URL and a search, the bounds it refuses past', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id);
  const bounds = (await api().gql(token, '{ inputBounds }')).data?.inputBounds;
  t.deepEqual(bounds, { name: 200, url: 2048, search: 1000 });
  const search = await api().gql(token, SEARCH, { search: 'a'.repeat(bounds.search + 1) });
  t.like(search.errors?.[0]?.extensions, { constraint: 'search_max_length' });
  const create = 'mutation Create($name: String!, $url: String!) { createWebhook(input: { name: $name, url: $url, actions: [CONTACT_CREATED], fields: ["email"] }) { result { secret } } }';
  const name = await api().gql(token, create, { name: 'n'.repeat(bounds.name + 1), url: 'https://receiver.example.com/' });
  t.like(name.errors?.[0]?.extensions, { constraint: 'webhook_name_too_long', column: 'name' });
  const url = await api().gql(token, create, { name: 'n', url: `https://receiver.example.com/${'u'.repeat(bounds.url)}` });
  t.like(url.errors?.[0]?.extensions, { constraint: 'webhook_url_invalid', column: 'url' });
});
