// What the API shows and to whom: no token, no API; the signing secret is in no type
// but the two one-time results; internals stay out; the Reports page is served.
import test from 'ava';
import { SignJWT } from 'jose';
import { TOKEN_FAILURES_UNBOUNDED, useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

// (its hostile claims are refused tokens by the dozen, from one address)
const { db, api } = useTestDatabaseWithApi(test, { limits: TOKEN_FAILURES_UNBOUNDED });

const INTROSPECT = `{
  __schema {
    types {
      name kind
      fields { name type { name kind ofType { name kind ofType { name kind ofType { name } } } } }
      inputFields { name }
    }
  }
}`;

interface IntrospectedType {
  name: string;
  kind: string;
  fields: Array<{ name: string; type?: unknown }> | null;
  inputFields: Array<{ name: string }> | null;
}

async function schemaTypes(): Promise<IntrospectedType[]> {
  const response = await api().gql(await api().token('1'), INTROSPECT);
  if (response.errors) throw new Error(JSON.stringify(response.errors));
  return response.data.__schema.types;
}

test('no token, a bad token, or a token for a role the API does not serve: HTTP 401 and nothing but the error', async (t) => {
  const forged = await new SignJWT({ role: 'webhook_admin', company_id: '1' })
    .setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode('not the secret'));
  const expired = await new SignJWT({ role: 'webhook_admin', company_id: '1' })
    .setProtectedHeader({ alg: 'HS256' }).setExpirationTime(Math.floor(Date.now() / 1000) - 60)
    .sign(new TextEncoder().encode(api().jwtSecret));
  const superuser = await new SignJWT({ role: 'postgres', company_id: '1' })
    .setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(api().jwtSecret));
  const noCompany = await new SignJWT({ role: 'webhook_admin' })
    .setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(api().jwtSecret));

  const secret = new TextEncoder().encode(api().jwtSecret);
  const now = Math.floor(Date.now() / 1000);
  const signed = (claims: Record<string, unknown>, exp: number | null = now + 3600, iat: number | null = now) => {
    const jwt = new SignJWT({ role: 'webhook_admin', ...claims }).setProtectedHeader({ alg: 'HS256' });
    if (exp !== null) jwt.setExpirationTime(exp);
    if (iat !== null) jwt.setIssuedAt(iat);
    return jwt.sign(secret);
  };
  const companyMessage = /^invalid token: claim "company_id" must be one positive integer, at most 9223372036854775807/;

  const cases: Array<[string, string | undefined, RegExp]> = [
    ['no exp', await signed({ company_id: '1' }, null), /^invalid token: claim "exp" is required/],
    ['no exp, no iat', await signed({ company_id: '1' }, null, null), /^invalid token: claim "exp" is required/],
    ['lives 25 hours', await signed({ company_id: '1' }, now + 25 * 3600), /^invalid token: it lives longer than the 86400 seconds/],
    ['issued long ago for long', await signed({ company_id: '1' }, now + 3600, now - 30 * 3600), /lives longer than the 86400 seconds/],
    ['lives 25 hours, no iat', await signed({ company_id: '1' }, now + 25 * 3600, null), /lives longer than the 86400 seconds/],
    ['company_id an array', await signed({ company_id: [2] }), companyMessage],
    ['company_id an array of strings', await signed({ company_id: ['2'] }), companyMessage],
    ['company_id beyond bigint', await signed({ company_id: '9999999999999999999' }), companyMessage],
    ['company_id 20 digits', await signed({ company_id: '10000000000000000000' }), companyMessage],
    ['company_id beyond 2^53 as a number', await signed({ company_id: 9007199254740993 }), companyMessage],
    ['company_id 0', await signed({ company_id: 0 }), companyMessage],
    ['company_id "0"', await signed({ company_id: '0' }), companyMessage],
    ['company_id negative', await signed({ company_id: -1 }), companyMessage],
    ['company_id a fraction', await signed({ company_id: 1.5 }), companyMessage],
    ['company_id with a leading zero', await signed({ company_id: '01' }), companyMessage],
    ['company_id true', await signed({ company_id: true }), companyMessage],
    ['company_id an object', await signed({ company_id: { id: 1 } }), companyMessage],
    // Postgres text holds no NUL: such a subject failed every request with a masked error
    ['sub with a NUL character', await signed({ company_id: '1', sub: 'jane\u0000admin' }), /^invalid token: claim "sub" must be a string without NUL characters/],
    ['no token', undefined, /missing Authorization header/],
    ['garbage', 'not-a-jwt', /invalid token/],
    ['wrong secret', forged, /invalid token: signature verification failed/],
    ['expired', expired, /invalid token: "exp" claim timestamp check failed/],
    ['role postgres', superuser, /claim "role" must be one of webhook_admin, webhook_viewer/],
    ['no company', noCompany, companyMessage],
  ];
  for (const [name, token, message] of cases) {
    const response = await api().gql(token, '{ allWebhooks { nodes { id } } __schema { types { name } } }');
    t.is(response.status, 401, name);
    t.is(response.data, undefined, name);
    t.is(response.errors?.length, 1, name);
    t.regex(response.errors![0].message, message, name);
    t.is(response.errors![0].extensions?.code, 'UNAUTHENTICATED', name);
  }
});

test('each claim the API reads, hostile: a wrong type, too long, a huge token: HTTP 401 naming the claim, never the value nor a 500', async (t) => {
  const secret = new TextEncoder().encode(api().jwtSecret);
  const now = Math.floor(Date.now() / 1000);
  const signed = (claims: Record<string, unknown>) => new SignJWT({ role: 'webhook_admin', company_id: '1', ...claims })
    .setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now).setExpirationTime(now + 3600).sign(secret);
  const huge = 'x'.repeat(1_000_000);
  const cases: Array<[string, string, string]> = [
    // a subject of another type was dropped unsaid, and the actor became the database role
    ['sub a number', await signed({ sub: 42 }), 'sub'],
    ['sub an array', await signed({ sub: ['jane'] }), 'sub'],
    ['sub an object', await signed({ sub: { name: 'jane' } }), 'sub'],
    ['sub null', await signed({ sub: null }), 'sub'],
    // a subject of any length was every change's actor and disabled_by
    ['sub of 201 characters', await signed({ sub: 'j'.repeat(201) }), 'sub'],
    ['sub with a lone surrogate', await signed({ sub: 'jane\ud800' }), 'sub'],
    ['role an array', await signed({ role: ['webhook_admin'] }), 'role'],
    ['role null', await signed({ role: null }), 'role'],
    ['company_id null', await signed({ company_id: null }), 'company_id'],
    ['exp a string', await new SignJWT({ role: 'webhook_admin', company_id: '1', exp: 'tomorrow' as unknown as number })
      .setProtectedHeader({ alg: 'HS256' }).sign(secret), 'exp'],
    ['iat an array', await new SignJWT({ role: 'webhook_admin', company_id: '1', iat: [now] as unknown as number })
      .setProtectedHeader({ alg: 'HS256' }).setExpirationTime(now + 60).sign(secret), 'iat'],
    // verified on each request (only short headers are kept verified), its HMAC over all of it
    ['a token of 3 KB', await signed({ padding: 'p'.repeat(3000) }), 'token'],
    ['a token of 12 KB', await signed({ padding: 'p'.repeat(12_000) }), 'token'],
  ];
  for (const [name, token, claim] of cases) {
    const response = await api().gql(token, '{ currentCompanyId currentActor }');
    t.is(response.status, 401, name);
    t.is(response.data, undefined, name);
    t.like(response.errors?.[0]?.extensions, { code: 'UNAUTHENTICATED', claim }, name);
    t.true(response.errors![0].message.length < 300, `${name}: ${response.errors![0].message.length} characters`);
  }
  // a subject of 200 characters is who acts
  const longest = await api().gql(await signed({ sub: 'j'.repeat(200) }), '{ currentActor }');
  t.is(longest.data?.currentActor, 'j'.repeat(200));
  // a header past node's bound (16 KiB) is refused by node before the API reads it: 431, not a 500
  const past = await fetch(`${api().api.url}/graphql`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${huge}` }, body: '{"query":"{ currentCompanyId }"}',
  });
  t.is(past.status, 431);
});

// The subject is every change's actor and a disable's disabled_by, answered to every
// admin and viewer of the company: a line feed or an escape in it, or a bidi control
// (U+202E reorders the text shown after it), was recorded as it came. Refused as a webhook's name refuses them (sql/10_config.sql), every one of
// the characters the database names.
test('a subject with a control character, a line separator or a bidi control: HTTP 401 naming sub', async (t) => {
  const secret = new TextEncoder().encode(api().jwtSecret);
  const now = Math.floor(Date.now() / 1000);
  const signed = (sub: string) => new SignJWT({ role: 'webhook_admin', company_id: '1', sub })
    .setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now).setExpirationTime(now + 3600).sign(secret);
  const { rows } = await db().pool.query<{ cp: number }>(
    `select cp from generate_series(1, 65535) cp
     where cp not between 55296 and 57343
       and chr(cp) ~ ('[' || webhooks_private.control_characters() || webhooks_private.line_separators()
                      || webhooks_private.bidi_controls() || ']')
     order by cp`);
  // C0 but NUL, DEL and C1, U+2028 and U+2029, and the twelve bidi controls
  t.is(rows.length, 31 + 33 + 2 + 12);
  for (const { cp } of rows) {
    const name = `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
    const response = await api().gql(await signed(`jane${String.fromCharCode(cp)}admin`), '{ currentActor }');
    t.is(response.status, 401, name);
    t.is(response.data, undefined, name);
    t.like(response.errors?.[0]?.extensions, { code: 'UNAUTHENTICATED', claim: 'sub' }, name);
    t.regex(response.errors?.[0]?.message ?? '', /^invalid token: claim "sub" must be one line without control characters or bidi controls/, name);
  }
  // what a name may hold, a subject may: letters of any script, marks, an emoji
  for (const sub of ['Zoë Ångström', 'محمد@example.com', 'jane.doe+crm@example.com 🎉']) {
    t.is((await api().gql(await signed(sub), '{ currentActor }')).data?.currentActor, sub, sub);
  }
});

test('a token for a company that is no row of the CRM (not made yet): every list the page reads answers nothing, of no company, with no error', async (t) => {
  const { rows: [{ missing }] } = await db().pool.query('select coalesce(max(id), 0) + 1000 as missing from crm.companies');
  const other = await factories(db().pool).company();
  await factories(db().pool).webhook({ companyId: other.id, actions: ['contact.created'] });
  const token = await api().token(String(missing), 'webhook_viewer');
  const response = await api().gql(token, `{
    currentCompanyId currentCompanyName webhookReportCounts
    webhookReport { nodes { webhookId } } allWebhooks { nodes { id } } allDeliveries { nodes { id } }
    allAuditLogs { nodes { id } } allBackfills { nodes { id } }
    companyUsers { nodes { id } } companyStatuses { nodes { id } }
    companyUsersMatching(search: "") { id } companyStatusesMatching(search: "") { id }
  }`);
  t.is(response.status, 200);
  t.is(response.errors, undefined);
  t.like(response.data, {
    currentCompanyId: String(missing), currentCompanyName: null,
    webhookReport: { nodes: [] }, allWebhooks: { nodes: [] }, allDeliveries: { nodes: [] }, allAuditLogs: { nodes: [] },
    allBackfills: { nodes: [] }, companyUsers: { nodes: [] }, companyStatuses: { nodes: [] },
    companyUsersMatching: [], companyStatusesMatching: [],
  });
  // (and a write is refused by name: company_unknown, test/api/webhooks.test.ts)
});

test('company_id as a number or a string of digits, up to bigint; a token within its lifetime', async (t) => {
  const secret = new TextEncoder().encode(api().jwtSecret);
  for (const companyId of [7, '7', '9223372036854775807']) {
    const token = await new SignJWT({ role: 'webhook_viewer', company_id: companyId })
      .setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('24h').sign(secret);
    const response = await api().gql(token, '{ currentCompanyId }');
    t.is(response.status, 200, String(companyId));
    t.deepEqual(response.data, { currentCompanyId: String(companyId) }, String(companyId));
  }
});

test('the signing secret is absent from every type, except the one-time results of create and rotate', async (t) => {
  const types = await schemaTypes();
  const carriers = types
    // (Mutation's fields are operations: rotateWebhookSecret names, not carries, a secret)
    .filter((type) => type.name !== 'Mutation')
    .filter((type) => (type.fields ?? []).concat(type.inputFields ?? []).some((field) => /secret/i.test(field.name) && !/^(previousSecretExpiresAt|secretRotatedAt)$/.test(field.name)))
    .map((type) => type.name)
    .sort();
  t.deepEqual(carriers, ['CreateWebhookRecord', 'RotateWebhookSecretRecord']);
  // and those are reachable only as mutation results
  const referrers = types
    .filter((type) => (type.fields ?? []).some((field) => JSON.stringify(field.type).match(/"(CreateWebhookRecord|RotateWebhookSecretRecord)"/)))
    .map((type) => type.name)
    .sort();
  t.deepEqual(referrers, ['CreateWebhookPayload', 'RotateWebhookSecretPayload']);
  const webhook = types.find((type) => type.name === 'Webhook')!;
  t.false(webhook.fields!.some((field) => /secret/i.test(field.name) && field.name !== 'secretRotatedAt'));
});

test('internals stay out of GraphQL: private tables, helper functions, the relay lease, generated CRUD', async (t) => {
  const types = await schemaTypes();
  const names = new Set(types.map((type) => type.name));
  for (const hidden of ['WebhookSecret', 'Subscription', 'FireHistory', 'DeliveryDayCount', 'DeliveryDaysToCount']) t.false(names.has(hidden), hidden);
  const fieldsOf = (name: string) => types.find((type) => type.name === name)!.fields!.map((field) => field.name);
  t.deepEqual(fieldsOf('Mutation').sort(), [
    'cancelBackfill', 'createWebhook', 'deleteWebhook', 'disableWebhook', 'enableWebhook',
    'replayDelivery', 'replayFailed', 'rotateWebhookSecret', 'sendTestWebhook', 'setWebhookDelivery', 'startBackfill', 'updateWebhook',
  ]);
  const query = fieldsOf('Query');
  for (const hidden of ['issuedSecret', 'webhookForUpdate', 'requeueDelivery', 'requireEnabled', 'allFireHistories', 'countDeliveries', 'countTests', 'allDeliveryDayCounts', 'findMessage', 'contactFireHistory']) {
    t.false(query.includes(hidden), hidden);
  }
  const delivery = fieldsOf('Delivery');
  t.false(delivery.includes('lockedBy'));
  t.false(delivery.includes('lockedUntil'));
  t.true(delivery.includes('messageId'));
  // relay ids name hosts: for the operator, not the tenant
  const attempt = fieldsOf('DeliveryAttempt');
  t.false(attempt.includes('relayId'));
  t.true(attempt.includes('responseBody'));
  t.false(fieldsOf('Backfill').includes('position'));
  t.false(query.includes('backfillStep'));
});

test('the Reports page is served at / and /reports/webhooks, its files with their content types, nothing outside its folder', async (t) => {
  for (const path of ['/', '/reports/webhooks']) {
    const response = await fetch(`${api().api.url}${path}`);
    t.is(response.status, 200, path);
    t.is(response.headers.get('content-type'), 'text/html; charset=utf-8', path);
    t.regex(await response.text(), /<html/i, path);
  }
  t.is((await fetch(`${api().api.url}/index.html`)).status, 200);
  t.is((await fetch(`${api().api.url}/no-such-file.js`)).status, 404);
  t.is((await fetch(`${api().api.url}/..%2f..%2fpackage.json`)).status, 404);
  t.is((await fetch(`${api().api.url}/graphiql`)).headers.get('content-type')?.startsWith('text/html'), true, 'Ruru');
  t.is((await fetch(`${api().api.url}/graphql`)).status, 405, 'GraphQL only over POST');
});
