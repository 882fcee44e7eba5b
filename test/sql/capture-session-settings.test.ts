// Capture builds a payload in the session of whoever writes the contact (sql/25_capture.sql):
// the CRM's own session, with whatever TimeZone, DateStyle, IntervalStyle,
// extra_float_digits and bytea_output its driver or its DBA chose. What a receiver is sent, and signed,
// must not depend on them: the same contact written from a session with another time
// zone and styles is the same payload, byte for byte; a test send writes its sample
// contact's times as a firing does.
import test from 'ava';
import { useTestDatabase, ownConnection } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

// columns the CRM added, of the types whose text a session's styles change
test.serial.before(async () => {
  await db().pool.query('alter table crm.contacts add column score float8, add column follow_up interval, add column signature bytea');
});

const CRM_SESSION = [
  "set timezone = 'Asia/Kolkata'",
  "set datestyle = 'SQL, DMY'",
  'set extra_float_digits = 0',
  'set intervalstyle = postgres_verbose',
  // (the escape format some older drivers still ask for)
  "set bytea_output = 'escape'",
];

const CONTACT = {
  first_name: 'Ada',
  email: 'ada@example.com',
  birthday: '1990-02-03',
  created_at: '2026-03-01T12:34:56.789Z',
  updated_at: '2026-03-02T23:59:59.5Z',
  score: 0.1 + 0.2,
  follow_up: '1 day 02:03:04.5',
  signature: Buffer.from('Ada\u00e9\n'),
};

/** The contact's payload as stored, what the relay sends: its text, its id taken out. */
async function payloadText(client: { query: (sql: string, params: unknown[]) => Promise<{ rows: { text: string }[] }> },
  companyId: string, webhookId: string): Promise<string> {
  const f = factories(client as never);
  const contact = await f.contact(companyId, CONTACT);
  const { rows } = await client.query(
    `select ((h.payload #- '{data,contact,id}') - 'timestamp')::text as text
       from webhooks.delivery_history h where h.webhook_id = $1 and h.contact_id = $2`, [webhookId, contact.id]);
  return rows[0]!.text;
}

test('a contact written from a session in another time zone, with other date, interval, float and bytea styles, is sent the same bytes', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'],
    fields: ['first_name', 'email', 'birthday', 'created_at', 'updated_at', 'score', 'follow_up', 'signature'] });

  const plain = await ownConnection(db().url, t);
  const crm = await ownConnection(db().url, t);
  for (const setting of CRM_SESSION) await crm.query(setting);

  const expected = await payloadText(plain as never, company.id, webhook.id);
  for (const text of ['"created_at": "2026-03-01T12:34:56.789+00:00"', '"score": 0.30000000000000004', '"follow_up": "1 day 02:03:04.5"',
    '"signature": "\\\\x416461c3a90a"']) {
    t.true(expected.includes(text), expected);
  }
  t.is(await payloadText(crm as never, company.id, webhook.id), expected);
});

test('a backfill stepped from a session in another time zone and styles sends the contact as capture does', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const fields = ['first_name', 'email', 'birthday', 'created_at', 'updated_at', 'score', 'follow_up', 'signature'];
  const live = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields });
  const plain = await ownConnection(db().url, t);
  const expected = await payloadText(plain as never, company.id, live.id);

  // the relay steps backfills (relay/backfiller.ts), in a session whose database may set its own
  const later = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields });
  await db().pool.query('select webhooks.backfill($1)', [later.id]);
  const relay = await ownConnection(db().url, t);
  for (const setting of CRM_SESSION) await relay.query(setting);
  await relay.query('select webhooks_relay.backfill_step(p_only => (select id from webhooks.backfills where webhook_id = $1))', [later.id]);

  const { rows } = await db().pool.query(
    `select ((h.payload #- '{data,contact,id}') - 'timestamp' - 'backfill')::text as text, h.payload #> '{data,source}' as source
       from webhooks.delivery_history h where h.webhook_id = $1`, [later.id]);
  t.is(rows.length, 1);
  t.is(rows[0].text, expected.replace('"type": "contact.created"', '"type": "contact.snapshot"').replace('"source": "unknown"', `"source": ${JSON.stringify(rows[0].source)}`));
});

test('every action a CRM session writes (updated, saved, status, assignments, deleted) is sent the bytes a default session sends', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id, 'Grace Hopper');
  const status = await f.status(company.id, 'Warm');
  const fields = ['first_name', 'created_at', 'score', 'follow_up', 'signature'];
  const webhook = await f.webhook({ companyId: company.id, fields,
    actions: ['contact.updated', 'contact.saved', 'contact.status_added', 'contact.user_assigned',
      'contact.first_company_user_assigned', 'contact.deleted'] });

  /** One contact put through every action from this session; its payloads in order, ids and times taken out. */
  async function actions(client: { query: (sql: string, params?: unknown[]) => Promise<{ rows: { text: string }[] }> }) {
    const contact = await factories(client as never).contact(company.id, CONTACT);
    await client.query("update crm.contacts set first_name = 'Ada B.' where id = $1", [contact.id]);
    await client.query('begin');
    await client.query("set local webhooks.source = 'platform'");
    await client.query('update crm.contacts set first_name = first_name where id = $1', [contact.id]);
    await client.query('commit');
    await client.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);
    await client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
    await client.query('delete from crm.contacts where id = $1', [contact.id]);
    const { rows } = await client.query(
      `select ((h.payload #- '{data,contact,id}') - 'timestamp')::text as text
         from webhooks.delivery_history h where h.webhook_id = $1 and h.contact_id = $2 order by h.id`, [webhook.id, contact.id]);
    return rows.map((r) => r.text);
  }

  const plain = await ownConnection(db().url, t);
  const crm = await ownConnection(db().url, t);
  for (const setting of CRM_SESSION) await crm.query(setting);
  const expected = await actions(plain as never);
  t.deepEqual(expected.map((text) => JSON.parse(text).type),
    ['contact.updated', 'contact.saved', 'contact.status_added', 'contact.first_company_user_assigned', 'contact.user_assigned', 'contact.deleted']);
  for (const text of expected) t.true(text.includes('"created_at": "2026-03-01T12:34:56.789+00:00"'), text);
  t.deepEqual(await actions(crm as never), expected);
});

test('a test send from a session in another time zone writes its sample\'s times as a firing does, in UTC', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const fields = ['first_name', 'birthday', 'created_at', 'updated_at'];
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields });
  // the API's session: the database's own settings, which a DBA may have set to the office's zone
  const api = await ownConnection(db().url, t);
  for (const setting of CRM_SESSION) await api.query(setting);
  await api.query("select set_config('jwt.claims.company_id', $1, false)", [company.id]);
  const { rows: [sent] } = await api.query('select (webhooks.send_test_webhook($1)).id', [webhook.id]);
  await factories(api as never).contact(company.id, CONTACT);

  const { rows } = await db().pool.query(
    `select h.action::text, h.payload -> 'data' -> 'contact' as contact from webhooks.delivery_history h
      where h.webhook_id = $1 order by h.id`, [webhook.id]);
  t.deepEqual(rows.map((r) => r.action), ['webhook.test', 'contact.created']);
  const [test, firing] = rows.map((r) => r.contact);
  t.is(test.id, 0);
  t.is(firing.created_at, '2026-03-01T12:34:56.789+00:00');
  t.is(firing.birthday, '1990-02-03');
  t.is(test.birthday, '1815-12-10');
  for (const field of ['created_at', 'updated_at']) {
    t.regex(test[field], /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+00:00$/, `${field} of the test send: ${test[field]}`);
  }
  t.truthy(sent.id);
});
