// A DBA's settings for the API's own login (webhook_authenticator), meant for other
// sessions: the API's requests are transactions of its own, bounded by the statement
// timeout it sets for each (api/limits.ts).
import test from 'ava';
import { AUTHENTICATOR_ROLE } from '../../api/authenticator.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';

const DAYS_WRITTEN = ['2026-11-01', '2026-11-02'];
const { db, api } = useTestDatabaseWithApi(test, {
  beforeApi: async (database) => {
    for (const setting of [`transaction_timeout = '1ms'`, `timezone = 'Pacific/Kiritimati'`, `datestyle = 'SQL, DMY'`,
      `intervalstyle = 'sql_standard'`, `statement_timeout = '1ms'`, `idle_in_transaction_session_timeout = '1ms'`, `search_path = crm`,
      `standard_conforming_strings = off`, `escape_string_warning = off`]) {
      await database.pool.query(`alter role ${AUTHENTICATOR_ROLE} in database ${database.name} set ${setting}`);
    }
    await database.pool.query('select webhooks_private.ensure_day(d) from unnest($1::date[]) d', [DAYS_WRITTEN]);
  },
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

test("TimeZone (+14), DateStyle and IntervalStyle of the API's login: times and the report's UTC days are the same as anywhere", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // one delivery late on 1 November (UTC), one early on the 2nd: the 2nd's alone in a report of the 2nd
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at, last_status_code)
     select $1, $2, 'contact.created', 1, '{}', r.state, 1, r.at, r.at, case r.state when 'succeeded' then 200 else 500 end
     from (values ('2026-11-01T23:30:00Z'::timestamptz, 'succeeded'), ('2026-11-02T00:30:00Z'::timestamptz, 'failed')) r(at, state)`,
    [hook.id, company.id]);
  const admin = await api().token(company.id);
  const read = await api().gql(admin, `query($id: BigInt!) { webhookById(id: $id) { createdAt history { nodes { createdAt state } } } }`,
    { id: hook.id });
  t.falsy(read.errors, JSON.stringify(read.errors));
  const { rows: [{ created }] } = await db().pool.query(
    `select to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as created from webhooks.webhooks where id = $1`, [hook.id]);
  t.is(Date.parse(read.data.webhookById.createdAt), Date.parse(`${created}Z`));
  t.deepEqual(read.data.webhookById.history.nodes.map((n: { createdAt: string; state: string }) => [Date.parse(n.createdAt), n.state]).sort(),
    [[Date.parse('2026-11-01T23:30:00Z'), 'succeeded'], [Date.parse('2026-11-02T00:30:00Z'), 'failed']].sort());
  const report = await api().gql(admin, `query { webhookReport(since: "2026-11-02T00:00:00Z", until: "2026-11-03T00:00:00Z") {
    nodes { webhookId timesFired timesSucceeded timesFailed } } }`);
  t.falsy(report.errors, JSON.stringify(report.errors));
  t.deepEqual(report.data.webhookReport.nodes, [{ webhookId: hook.id, timesFired: '1', timesSucceeded: '0', timesFailed: '1' }]);
});

// standard_conforming_strings off (an old CRM app's, for the database or the login):
// the API's sessions read the engine's literals as such a session does, and until
// 2026-12-07 every webhook's URL was refused (test/sql/config.test.ts)
test("standard_conforming_strings off for the API's login: an admin's webhook is stored, or refused by the rule at fault, as anywhere", async (t) => {
  const company = await factories(db().pool).company();
  const admin = await api().token(company.id, 'webhook_admin', `admin@${company.id}`);
  const create = (url: string) => api().gql(admin, `mutation($url: String!) {
    createWebhook(input: { name: "Notes", url: $url, fields: ["first_name"], actions: [CONTACT_CREATED] }) { result { webhook { url } } } }`,
  { url });
  const stored = await create('https://hooks.slack.com/services/T0/B0');
  t.falsy(stored.errors, JSON.stringify(stored.errors));
  t.is(stored.data.createWebhook.result.webhook.url, 'https://hooks.slack.com/services/T0/B0');
  const refused = await create('https://a%5cb.example/in');
  t.like(refused.errors?.[0].extensions, { code: '23514', constraint: 'webhook_url_invalid', column: 'url' });
  t.regex(String(refused.errors?.[0]?.message), /^webhook url host has percent-escapes of characters a host may not hold \(a control character, a space, # % \/ : < > \? @ \[ \\ \] \^ \|\)/);
});
