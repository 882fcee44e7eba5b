// What the browser and any cache between are told with the API's own answers
// (docs/security.md): GraphQL's, which hold one company's data (a signing secret, as
// createWebhook and rotateWebhookSecret answer it), are kept by no cache and read as
// what they say they are; Ruru (/graphiql) is framed by no other site; and no other
// site's script may read an answer, with the admin's token or without; a token is
// read from the Authorization header alone.
import test from 'ava';
import { GRAPHIQL_PATH, GRAPHQL_PATH } from '../../api/preset.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test);

const json = { 'content-type': 'application/json' };

test('every answer of /graphql says no-store and nosniff: a secret as createWebhook answers it, refusals alike', async (t) => {
  const company = await factories(db().pool).company();
  const token = await api().token(company.id);
  const url = `${api().api.url}${GRAPHQL_PATH}`;
  const create = JSON.stringify({ query: `mutation { createWebhook(input: { name: "n", url: "https://hooks.example.com/h",
    fields: ["first_name"], actions: [CONTACT_CREATED] }) { result { secret } } }` });
  const asked: Array<[string, RequestInit, number]> = [
    ['createWebhook, its secret', { method: 'POST', headers: { ...json, authorization: `Bearer ${token}` }, body: create }, 200],
    ['no token', { method: 'POST', headers: json, body: '{"query":"{ currentCompanyId }"}' }, 401],
    ['a body that is no JSON', { method: 'POST', headers: { ...json, authorization: `Bearer ${token}` }, body: '{"query":' }, 400],
    ['GET', { method: 'GET' }, 405],
    ['a form', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${token}` },
      body: 'query=%7BcurrentCompanyId%7D' }, 415],
  ];
  for (const [what, init, status] of asked) {
    const response = await fetch(url, init);
    const body = await response.text();
    t.is(response.status, status, what);
    if (status === 200) t.regex(body, /"secret":"whsec_/, what);
    t.is(response.headers.get('cache-control'), 'no-store', what);
    t.is(response.headers.get('x-content-type-options'), 'nosniff', what);
  }
});

test('Ruru and its files are framed by no other site, sniffed as nothing else, and send no referrer', async (t) => {
  for (const path of [GRAPHIQL_PATH, '/ruru-static/ruru.js', '/ruru-static/no-such-file.js']) {
    const response = await fetch(`${api().api.url}${path}`);
    await response.arrayBuffer();
    t.is(response.headers.get('content-security-policy'), "frame-ancestors 'none'", path);
    t.is(response.headers.get('x-frame-options'), 'DENY', path);
    t.is(response.headers.get('x-content-type-options'), 'nosniff', path);
    t.is(response.headers.get('referrer-policy'), 'no-referrer', path);
  }
});

test('no other origin may read an answer: no CORS header, and a preflight for the Authorization header is refused', async (t) => {
  const token = await api().token('1');
  const url = `${api().api.url}${GRAPHQL_PATH}`;
  const preflight = await fetch(url, { method: 'OPTIONS', headers: { origin: 'https://elsewhere.example',
    'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
  await preflight.arrayBuffer();
  t.is(preflight.status, 405);
  t.is(preflight.headers.get('access-control-allow-origin'), null);
  t.is(preflight.headers.get('access-control-allow-headers'), null);
  const answered = await fetch(url, { method: 'POST', headers: { ...json, origin: 'https://elsewhere.example', authorization: `Bearer ${token}` },
    body: '{"query":"{ currentCompanyId }"}' });
  t.deepEqual(await answered.json(), { data: { currentCompanyId: '1' } });
  t.is(answered.headers.get('access-control-allow-origin'), null);
  t.is(answered.headers.get('access-control-allow-credentials'), null);
  // a token anywhere but the Authorization header is none (a URL's is in every log it passes)
  for (const where of [`?token=${token}`, `?access_token=${token}`, `?authorization=Bearer%20${token}`]) {
    const refused = await fetch(`${url}${where}`, { method: 'POST', headers: json, body: '{"query":"{ currentCompanyId }"}' });
    t.is(refused.status, 401, where);
    t.like(await refused.json(), { errors: [{ extensions: { code: 'UNAUTHENTICATED', claim: 'token' } }] }, where);
  }
});
