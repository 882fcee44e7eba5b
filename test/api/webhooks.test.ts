// The admin API end to end: a webhook made through GraphQL fires on a contact change;
// disable, enable, replay, rotate and delete do what admins expect, in the tables.
import test from 'ava';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const { db, api } = useTestDatabaseWithApi(test);
const make = () => factories(db().pool);

const CREATE = `
  mutation Create($name: String!, $url: String!, $fields: [String]!, $actions: [Action]!, $statusId: BigInt) {
    createWebhook(input: { name: $name, url: $url, fields: $fields, actions: $actions, statusId: $statusId }) {
      result { secret webhook { id companyId name url fields actions statusId enabled createdAt } }
    }
  }`;

async function adminOf(companyId: string) {
  return await api().token(companyId, 'webhook_admin', `admin@${companyId}`);
}

async function createThroughApi(token: string, input: Record<string, unknown>) {
  const response = await api().gql(token, CREATE, {
    name: 'Thank-you notes',
    url: 'https://receiver.example.com/bpd',
    fields: ['first_name', 'city'],
    actions: ['CONTACT_CREATED'],
    ...input,
  });
  if (response.errors) throw new Error(JSON.stringify(response.errors));
  return response.data.createWebhook.result as { secret: string; webhook: { id: string; [k: string]: unknown } };
}

/** Simulates the relay having finished a delivery (the relay is not part of these tests). */
async function finish(deliveryId: string, state: 'succeeded' | 'failed', attempts = 3) {
  await db().pool.query(
    `update webhooks.deliveries
     set state = $2, attempts = $3, completed_at = now(), last_attempt_at = now(),
         last_status_code = case when $2 = 'failed' then 500 else 200 end,
         last_error = case when $2 = 'failed' then 'HTTP 500' end
     where id = $1`,
    [deliveryId, state, attempts],
  );
}

test('createWebhook: the webhook is the company\'s, the secret is returned once, and a contact change queues its delivery', async (t) => {
  const f = make();
  const company = await f.company();
  const status = await f.status(company.id, 'Thank You Note');
  const token = await adminOf(company.id);

  const created = await createThroughApi(token, {
    actions: ['CONTACT_STATUS_ADDED'],
    statusId: status.id,
    fields: ['first_name', 'street', 'city', 'first_name'],
  });
  t.regex(created.secret, /^whsec_[A-Za-z0-9+/]{40,}={0,2}$/);
  t.like(created.webhook, {
    companyId: company.id,
    name: 'Thank-you notes',
    actions: ['CONTACT_STATUS_ADDED'],
    statusId: status.id,
    fields: ['first_name', 'street', 'city'],
    enabled: true,
  });
  // the secret returned is the one the relay signs with
  const { rows: [stored] } = await db().pool.query(
    'select secret from webhooks_private.webhook_secrets where webhook_id = $1', [created.webhook.id]);
  t.is(stored.secret, created.secret);
  // and nothing reads it afterwards: the webhook has no such field
  const again = await api().gql(token, 'query($id: BigInt!) { webhookById(id: $id) { secret } }', { id: created.webhook.id });
  t.regex(again.errors?.[0].message ?? '', /Cannot query field "secret" on type "Webhook"/);

  const contact = await f.contact(company.id, { first_name: 'Grace', street: '1 Navy Way', city: 'Arlington' });
  await db().pool.query('insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);

  const rows = await deliveriesOf(db().pool, [created.webhook.id]);
  t.is(rows.length, 1);
  t.is(rows[0].action, 'contact.status_added');
  t.is(rows[0].state, 'pending');
  t.deepEqual(rows[0].payload.data.contact, { id: Number(contact.id), first_name: 'Grace', street: '1 Navy Way', city: 'Arlington' });
  t.deepEqual(rows[0].payload.data.status, { id: Number(status.id), name: 'Thank You Note' });

  // and the API shows it in the webhook's history
  const history = await api().gql(token, `query($id: BigInt!) { webhookById(id: $id) { history { nodes { id action state payload } } } }`,
    { id: created.webhook.id });
  t.is(history.data.webhookById.history.nodes.length, 1);
  t.like(history.data.webhookById.history.nodes[0], { id: rows[0].id, action: 'CONTACT_STATUS_ADDED', state: 'pending' });
  t.deepEqual(history.data.webhookById.history.nodes[0].payload, rows[0].payload);
});

test('disableWebhook records who and why and stops new deliveries; enableWebhook resumes them', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await api().token(company.id, 'webhook_admin', 'ada@example.com');
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_CREATED'] });

  await f.contact(company.id);
  t.is((await deliveriesOf(db().pool, [webhook.id])).length, 1);

  const disabled = await api().gql(token, `mutation($id: BigInt!) {
      disableWebhook(input: { id: $id, reason: "receiver is down" }) { result { id enabled disabledBy disabledReason disabledAt } } }`,
    { id: webhook.id });
  t.falsy(disabled.errors);
  t.like(disabled.data.disableWebhook.result, { id: webhook.id, enabled: false, disabledBy: 'ada@example.com', disabledReason: 'receiver is down' });
  t.truthy(disabled.data.disableWebhook.result.disabledAt);
  const { rows: [row] } = await db().pool.query('select enabled, disabled_by, disabled_reason from webhooks.webhooks where id = $1', [webhook.id]);
  t.deepEqual(row, { enabled: false, disabled_by: 'ada@example.com', disabled_reason: 'receiver is down' });

  await f.contact(company.id);
  t.is((await deliveriesOf(db().pool, [webhook.id])).length, 1, 'no delivery while disabled');

  const report = await api().gql(token, '{ webhookReport { nodes { webhookId enabled disabledReason } } }');
  t.deepEqual(report.data.webhookReport.nodes, [{ webhookId: webhook.id, enabled: false, disabledReason: 'receiver is down' }]);

  const enabled = await api().gql(token, 'mutation($id: BigInt!) { enableWebhook(input: { id: $id }) { result { enabled disabledBy disabledReason disabledAt } } }',
    { id: webhook.id });
  t.deepEqual(enabled.data.enableWebhook.result, { enabled: true, disabledBy: null, disabledReason: null, disabledAt: null });

  await f.contact(company.id);
  t.is((await deliveriesOf(db().pool, [webhook.id])).length, 2, 'deliveries again once enabled');
});

test('replayDelivery puts a finished delivery back in the outbox as the same message', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_CREATED'] });
  await f.contact(company.id);
  const [delivery] = await deliveriesOf(db().pool, [webhook.id]);
  await finish(delivery.id, 'failed', 5);

  const replayed = await api().gql(token, `mutation($id: BigInt!) {
      replayDelivery(input: { id: $id }) { result { id messageId state attempts completedAt } } }`, { id: delivery.id });
  t.falsy(replayed.errors);
  t.deepEqual(replayed.data.replayDelivery.result, { id: delivery.id, messageId: delivery.message_id, state: 'pending', attempts: 5, completedAt: null });

  const { rows: [row] } = await db().pool.query(
    'select message_id, state, attempts, completed_at, next_attempt_at <= now() as due from webhooks.deliveries where id = $1', [delivery.id]);
  t.deepEqual(row, { message_id: delivery.message_id, state: 'pending', attempts: 5, completed_at: null, due: true });
  t.is((await deliveriesOf(db().pool, [webhook.id])).length, 1, 'the same message, not a new one');

  // a succeeded one may be sent again too
  await finish(delivery.id, 'succeeded', 6);
  const again = await api().gql(token, 'mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { state } } }', { id: delivery.id });
  t.is(again.data.replayDelivery.result.state, 'pending');
});

test('replayDelivery refuses a delivery a relay is sending right now, and one of a disabled webhook', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_CREATED'] });
  await f.contact(company.id);
  const [delivery] = await deliveriesOf(db().pool, [webhook.id]);
  await db().pool.query(
    "update webhooks.deliveries set state = 'in_flight', locked_by = 'relay-1', locked_until = now() + interval '1 minute' where id = $1",
    [delivery.id]);

  const inFlight = await api().gql(token, 'mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { state } } }', { id: delivery.id });
  t.like(inFlight.errors?.[0].extensions, { code: '55000', constraint: 'delivery_in_flight' });
  const { rows: [row] } = await db().pool.query('select state, locked_by from webhooks.deliveries where id = $1', [delivery.id]);
  t.deepEqual(row, { state: 'in_flight', locked_by: 'relay-1' });

  await db().pool.query(
    "update webhooks.deliveries set state = 'failed', locked_by = null, locked_until = null, attempts = 1, completed_at = now() where id = $1",
    [delivery.id]);
  await api().gql(token, 'mutation($id: BigInt!) { disableWebhook(input: { id: $id }) { result { enabled } } }', { id: webhook.id });
  const disabled = await api().gql(token, 'mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { state } } }', { id: delivery.id });
  t.like(disabled.errors?.[0].extensions, { code: '55000', constraint: 'webhook_disabled', column: 'webhook_id' });
});

test('createWebhook past the company\'s 100 webhooks is refused by name; another company may still create', async (t) => {
  const f = make();
  const company = await f.company();
  const other = await f.company();
  await db().pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select $1, 'Hook ' || n, 'https://receiver.example.com/' || n, '{first_name}', '{contact.created}' from generate_series(1, 99) n`,
    [company.id]);
  const token = await adminOf(company.id);
  await t.notThrowsAsync(createThroughApi(token, { name: 'the hundredth' }));
  const refused = await api().gql(token, CREATE, { name: 'one too many', url: 'https://receiver.example.com/x', fields: ['first_name'], actions: ['CONTACT_CREATED'] });
  t.like(refused.errors?.[0].extensions, { code: '23514', constraint: 'webhook_limit_reached', column: 'company_id' });
  t.regex(refused.errors?.[0].message ?? '', /^a company may have at most 100 webhooks \(webhooks\.max_webhooks_per_company\), and company \d+ has 100: delete one first$/);
  await t.notThrowsAsync(createThroughApi(await adminOf(other.id), { name: 'elsewhere' }));
});

test('createWebhook for a company the CRM does not have (a token for a company not made yet) is refused by name, nothing written', async (t) => {
  const { rows: [{ missing }] } = await db().pool.query(`select coalesce(max(id), 0) + 1000 as missing from crm.companies`);
  const token = await adminOf(String(missing));
  const refused = await api().gql(token, CREATE, { name: 'first', url: 'https://receiver.example.com/x', fields: ['first_name'], actions: ['CONTACT_CREATED'] });
  t.like(refused.errors?.[0].extensions, { code: '23503', constraint: 'company_unknown' });
  t.is(refused.errors?.[0].message, `company ${missing} is not a company of the CRM (no row of crm.companies): webhooks are made for the CRM's companies only`);
  const { rows } = await db().pool.query('select count(*)::int as n from webhooks.webhooks where company_id = $1', [missing]);
  t.is(rows[0].n, 0);
});

const CREATE_ONCE = `
  mutation CreateOnce($name: String!, $url: String!, $fields: [String]!, $actions: [Action]!, $idempotencyKey: String,
                      $maxInFlight: Int, $rateLimit: Int, $coalesceWindow: IntervalInput, $ordered: Boolean) {
    createWebhook(input: { name: $name, url: $url, fields: $fields, actions: $actions, idempotencyKey: $idempotencyKey,
                           maxInFlight: $maxInFlight, rateLimit: $rateLimit, coalesceWindow: $coalesceWindow, ordered: $ordered }) {
      result { secret webhook { id name maxInFlight rateLimit ordered coalesceWindow { seconds minutes } } }
    }
  }`;

const createOnce = (token: string, input: Record<string, unknown>) => api().gql(token, CREATE_ONCE, {
  name: 'Thank-you notes', url: 'https://receiver.example.com/bpd', fields: ['first_name'], actions: ['CONTACT_CREATED'], ...input,
});

const webhooksOf = async (companyId: string) => (await db().pool.query(
  'select id, name, max_in_flight, rate_limit, ordered from webhooks.webhooks where company_id = $1 order by id', [companyId])).rows;

test('createWebhook with an idempotencyKey: the same key and input again answers the webhook the first made, with its secret; other input under it is refused by name; another company\'s same key is its own', async (t) => {
  const f = make();
  const company = await f.company();
  const other = await f.company();
  const token = await adminOf(company.id);
  const key = '7d1c5f0e-2b8a-4c3e-9f4a-0c2d6b1e8a55';

  const first = await createOnce(token, { idempotencyKey: key });
  t.is(first.errors, undefined);
  const again = await createOnce(token, { idempotencyKey: key });
  t.is(again.errors, undefined);
  t.is(again.data.createWebhook.result.webhook.id, first.data.createWebhook.result.webhook.id);
  t.is(again.data.createWebhook.result.secret, first.data.createWebhook.result.secret, 'the secret the first answer lost');
  t.deepEqual((await webhooksOf(company.id)).map((row) => row.id), [first.data.createWebhook.result.webhook.id]);
  const { rows: audited } = await db().pool.query(
    `select action from webhooks.audit_log where company_id = $1 and webhook_id = $2`, [company.id, first.data.createWebhook.result.webhook.id]);
  t.deepEqual(audited.map((row) => row.action), ['webhook.created'], 'made once, recorded once');

  const changed = await createOnce(token, { idempotencyKey: key, url: 'https://receiver.example.com/elsewhere' });
  t.like(changed.errors?.[0].extensions, { code: '22023', constraint: 'idempotency_key_reused', column: 'idempotency_key' });
  t.is(changed.data?.createWebhook, null);
  t.is((await webhooksOf(company.id)).length, 1);

  const theirs = await createOnce(await adminOf(other.id), { idempotencyKey: key });
  t.is(theirs.errors, undefined);
  t.not(theirs.data.createWebhook.result.webhook.id, first.data.createWebhook.result.webhook.id);
  t.is((await webhooksOf(other.id)).length, 1);

  // its webhook deleted since, the key is refused: made again, it would be a second
  await db().pool.query('delete from webhooks.webhooks where id = $1', [first.data.createWebhook.result.webhook.id]);
  const gone = await createOnce(token, { idempotencyKey: key });
  t.like(gone.errors?.[0].extensions, { code: '55000', constraint: 'idempotency_key_webhook_deleted', column: 'idempotency_key' });
  t.is((await webhooksOf(company.id)).length, 0);

  // without a key, each Create makes one, as it always did
  await createOnce(token, { name: 'no key' });
  await createOnce(token, { name: 'no key' });
  t.deepEqual((await webhooksOf(company.id)).map((row) => row.name), ['no key', 'no key']);
});

test('createWebhook: two at once with one key make one webhook', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const key = 'b7e2a6b0-5d0f-4a8e-8f3c-1a9e4c2d7f10';
  const answers = await Promise.all([createOnce(token, { idempotencyKey: key }), createOnce(token, { idempotencyKey: key })]);
  t.deepEqual(answers.map((answer) => answer.errors), [undefined, undefined]);
  t.is(answers[0].data.createWebhook.result.webhook.id, answers[1].data.createWebhook.result.webhook.id);
  t.is((await webhooksOf(company.id)).length, 1);
});

test('createWebhook: an idempotencyKey is 1 to 64 letters, digits, - and _; another is refused by name, nothing written', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  for (const key of ['', 'k'.repeat(65), 'a key', "x'; drop table webhooks.webhooks; --", 'ключ']) {
    const refused = await createOnce(token, { idempotencyKey: key });
    t.like(refused.errors?.[0].extensions, { code: '22023', constraint: 'idempotency_key_invalid', column: 'idempotency_key' }, key);
  }
  t.is((await webhooksOf(company.id)).length, 0);
  t.is((await createOnce(token, { idempotencyKey: 'k'.repeat(64) })).errors, undefined);
});

test('createWebhook: a key is kept 24 hours; maintenance forgets it after, and the key makes a new webhook then', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const key = 'kept-a-day';
  const first = await createOnce(token, { idempotencyKey: key });
  await db().pool.query(
    `update webhooks_private.create_requests set made_at = now() - interval '24 hours 1 second' where company_id = $1`, [company.id]);
  const later = await createOnce(token, { idempotencyKey: key, name: 'a day later' });
  t.is(later.errors, undefined, 'an expired key is not held against other input');
  t.not(later.data.createWebhook.result.webhook.id, first.data.createWebhook.result.webhook.id);
  await db().pool.query(
    `update webhooks_private.create_requests set made_at = now() - interval '25 hours' where company_id = $1`, [company.id]);
  const { rows: [{ n }] } = await db().pool.query('select webhooks.forget_create_requests() as n');
  t.true(n >= 1);
  t.is((await db().pool.query('select count(*)::int as n from webhooks_private.create_requests where company_id = $1', [company.id])).rows[0].n, 0);
});

test('createWebhook takes the delivery settings with the webhook, in one transaction: one refused makes no webhook at all', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const refused = await createOnce(token, { maxInFlight: 4, rateLimit: 20_000 });
  t.like(refused.errors?.[0].extensions, { constraint: 'webhook_rate_limit_range', column: 'rate_limit' });
  const window = await createOnce(token, { coalesceWindow: { hours: 2 } });
  t.like(window.errors?.[0].extensions, { constraint: 'webhooks_coalesce_window_range', column: 'coalesce_window' });
  t.deepEqual(await webhooksOf(company.id), []);
  const { rows: [{ n: audited }] } = await db().pool.query('select count(*)::int as n from webhooks.audit_log where company_id = $1', [company.id]);
  t.is(audited, 0);

  const made = await createOnce(token, { maxInFlight: 4, rateLimit: 20, coalesceWindow: { seconds: 90 }, ordered: true });
  t.is(made.errors, undefined);
  t.like(made.data.createWebhook.result.webhook, { maxInFlight: 4, rateLimit: 20, ordered: true, coalesceWindow: { minutes: 1, seconds: 30 } });
  t.like((await webhooksOf(company.id))[0], { max_in_flight: 4, rate_limit: 20, ordered: true });
});

test('replayDelivery refuses by name a delivery never sent for its payload\'s size', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_CREATED'], fields: ['first_name', 'custom'] });
  await f.contact(company.id, { custom: JSON.stringify({ notes: 'n'.repeat(1_100_000) }) });
  const [delivery] = await deliveriesOf(db().pool, [webhook.id]);
  t.is(delivery.state, 'failed');

  const refused = await api().gql(token, 'mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { state } } }', { id: delivery.id });
  t.like(refused.errors?.[0].extensions, { code: '55000', constraint: 'delivery_payload_too_large', column: 'id' });
  t.regex(refused.errors?.[0].message ?? '', /was never sent: its payload was over webhooks\.max_payload_bytes/);
  const replayed = await api().gql(token, 'mutation($id: BigInt!) { replayFailed(input: { webhookId: $id, since: "2000-01-01T00:00:00Z" }) { result { id } } }', { id: webhook.id });
  t.deepEqual(replayed.data?.replayFailed?.result, []);
});

test('replayFailed re-queues exactly the failed deliveries of the webhook created since the given time', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_CREATED'] });
  const other = await createThroughApi(token, { actions: ['CONTACT_CREATED'], name: 'other' });
  for (let i = 0; i < 4; i++) await f.contact(company.id);
  const rows = await deliveriesOf(db().pool, [webhook.id]);
  const [old, failed, succeeded, pending] = rows;
  await finish(old.id, 'failed');
  await db().pool.query("select webhooks_private.ensure_day(webhooks_private.utc_day(now() - interval '3 days'))");
  await db().pool.query("update webhooks.deliveries set created_at = now() - interval '3 days' where id = $1", [old.id]);
  await finish(failed.id, 'failed');
  await finish(succeeded.id, 'succeeded');
  const [otherFailed] = await deliveriesOf(db().pool, [other.webhook.id]);
  await finish(otherFailed.id, 'failed');

  // the message itself is not written again: its history row keeps its version
  const historyVersion = async () => (await db().pool.query(
    'select xmin::text from webhooks.delivery_history where id = $1', [failed.id])).rows[0].xmin;
  const versionBefore = await historyVersion();

  const since = new Date(Date.now() - 24 * 3600_000).toISOString();
  const replayed = await api().gql(token, `mutation($id: BigInt!, $since: Datetime!) {
      replayFailed(input: { webhookId: $id, since: $since }) { result { id messageId state } } }`, { id: webhook.id, since });
  t.falsy(replayed.errors);
  t.deepEqual(replayed.data.replayFailed.result, [{ id: failed.id, messageId: failed.message_id, state: 'pending' }]);

  const { rows: states } = await db().pool.query(
    'select id, state from webhooks.deliveries where id = any ($1::bigint[]) order by array_position($1::bigint[], id)',
    [[old.id, failed.id, succeeded.id, pending.id, otherFailed.id]]);
  t.deepEqual(states.map((r) => r.state), ['failed', 'pending', 'succeeded', 'pending', 'failed']);
  t.is(await historyVersion(), versionBefore);
});

test('replayFailed replays at most maxDeliveries (1,000 unless given) a call, oldest first; calls again go on where it stopped', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_CREATED'] });
  // 1,003 failed deliveries, written as the relay would leave them
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, last_error, completed_at)
     select $1, $2, 'contact.created', i, jsonb_build_object('type', 'contact.created', 'data', jsonb_build_object('contact', jsonb_build_object('id', i))),
            'failed', 3, 'HTTP 500', now()
     from generate_series(1, 1003) i`, [webhook.id, company.id]);
  const ids = (await deliveriesOf(db().pool, [webhook.id])).map((d) => d.id);
  const replay = async (maxDeliveries?: number) => {
    const response = await api().gql(token, `mutation($id: BigInt!, $max: Int) {
        replayFailed(input: { webhookId: $id, since: "2000-01-01T00:00:00Z", maxDeliveries: $max }) { result { id state } } }`,
      { id: webhook.id, max: maxDeliveries });
    if (response.errors) return response.errors[0];
    return (response.data.replayFailed.result as Array<{ id: string }>).map((d) => d.id);
  };

  t.deepEqual(await replay(2), ids.slice(0, 2));
  t.deepEqual(await replay(), ids.slice(2, 1002));
  t.deepEqual(await replay(), ids.slice(1002));
  t.deepEqual(await replay(), []);
  const { rows: [left] } = await db().pool.query(
    `select count(*) filter (where state = 'pending')::int as pending, count(*)::int as all from webhooks.deliveries where webhook_id = $1`, [webhook.id]);
  t.deepEqual(left, { pending: 1003, all: 1003 });

  for (const wrong of [0, 1001]) {
    t.like(await replay(wrong), {
      message: 'replayFailed replays from 1 to 1000 deliveries a call (maxDeliveries); call it again for more',
      extensions: { code: '22023', constraint: 'replay_max_deliveries_range', column: 'max_deliveries' },
    });
  }
});

test('rotateWebhookSecret returns a new secret once; the previous one stays valid for 24 hours', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const { webhook, secret: first } = await createThroughApi(token, {});

  const rotated = await api().gql(token, `mutation($id: BigInt!) {
      rotateWebhookSecret(input: { id: $id }) { result { secret previousSecretExpiresAt webhook { id secretRotatedAt } } } }`, { id: webhook.id });
  t.falsy(rotated.errors);
  const result = rotated.data.rotateWebhookSecret.result;
  t.regex(result.secret, /^whsec_/);
  t.not(result.secret, first);
  t.truthy(result.webhook.secretRotatedAt);

  const { rows: [stored] } = await db().pool.query(
    `select s.secret, r.secret as rotated_out, extract(epoch from r.expires_at - now()) / 3600 as hours_left
     from webhooks_private.webhook_secrets s join webhooks_private.rotated_secrets r using (webhook_id)
     where webhook_id = $1`, [webhook.id]);
  t.is(stored.secret, result.secret);
  t.is(stored.rotated_out, first);
  t.true(stored.hours_left > 23.9 && stored.hours_left <= 24);
  t.true(Math.abs(Date.parse(result.previousSecretExpiresAt) - (Date.now() + 24 * 3600_000)) < 60_000);
});

test('rotateWebhookSecret: at most three rotated-out secrets valid at once; past them, a named refusal that says when', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, {});
  const rotate = () => api().gql(token, 'mutation($id: BigInt!) { rotateWebhookSecret(input: { id: $id }) { result { secret } } }',
    { id: webhook.id });
  for (let i = 0; i < 3; i++) t.falsy((await rotate()).errors, `rotation ${i + 1}`);
  const { rows: [before] } = await db().pool.query(
    'select secret from webhooks_private.webhook_secrets where webhook_id = $1', [webhook.id]);

  const refused = await rotate();
  t.like(refused.errors?.[0].extensions, { code: '55000', constraint: 'webhook_secret_rotations', column: 'id' });
  t.regex(refused.errors![0].message, /has 3 rotated-out secrets still valid, the most there may be: rotate again after \d{4}-\d\d-\d\dT/);
  // nothing changed: the same secret signs, the same three stay valid
  const { rows: [after] } = await db().pool.query(
    `select s.secret, (select count(*)::int from webhooks_private.rotated_secrets r where r.webhook_id = s.webhook_id) as rotated_out
     from webhooks_private.webhook_secrets s where webhook_id = $1`, [webhook.id]);
  t.deepEqual(after, { secret: before.secret, rotated_out: 3 });

  // once the oldest has expired, a rotation goes again, and the expired one is gone
  await db().pool.query(`update webhooks_private.rotated_secrets set expires_at = now() - interval '1 second'
                         where webhook_id = $1 and expires_at = (select min(expires_at) from webhooks_private.rotated_secrets
                                                                 where webhook_id = $1)`, [webhook.id]);
  t.falsy((await rotate()).errors);
  const { rows: [{ count }] } = await db().pool.query(
    'select count(*)::int from webhooks_private.rotated_secrets where webhook_id = $1 and expires_at > now()', [webhook.id]);
  t.is(count, 3);
});

test('updateWebhook changes what it is given, keeps the rest, and clears a filter on request', async (t) => {
  const f = make();
  const company = await f.company();
  const status = await f.status(company.id);
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_STATUS_ADDED'], statusId: status.id });

  const moved = await api().gql(token, `mutation($id: BigInt!) {
      updateWebhook(input: { id: $id, url: "https://new.example.com/in", name: "Renamed" }) { result { name url fields actions statusId } } }`,
    { id: webhook.id });
  t.deepEqual(moved.data.updateWebhook.result, {
    name: 'Renamed', url: 'https://new.example.com/in', fields: ['first_name', 'city'], actions: ['CONTACT_STATUS_ADDED'], statusId: status.id,
  });

  const cleared = await api().gql(token, `mutation($id: BigInt!) {
      updateWebhook(input: { id: $id, clearStatusId: true, actions: [CONTACT_CREATED, CONTACT_DELETED] }) { result { actions statusId } } }`,
    { id: webhook.id });
  t.deepEqual(cleared.data.updateWebhook.result, { actions: ['CONTACT_CREATED', 'CONTACT_DELETED'], statusId: null });
  const { rows: [row] } = await db().pool.query('select actions::text[] as actions, status_id from webhooks.webhooks where id = $1', [webhook.id]);
  t.deepEqual(row, { actions: ['contact.created', 'contact.deleted'], status_id: null });
});

// (two admins saving the same webhook: the second overwrote the first without a word)
test('updateWebhook with the expectedVersion read: saved; with one another change passed, refused by name and nothing saved; without one, the last write wins', async (t) => {
  const company = await make().company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, {});
  const read = await api().gql(token, 'query($id: BigInt!) { webhookById(id: $id) { name version } }', { id: webhook.id });
  const version = read.data.webhookById.version;
  t.is(version, 1);
  const RENAME = `mutation($id: BigInt!, $name: String!, $version: Int) {
    updateWebhook(input: { id: $id, name: $name, expectedVersion: $version }) { result { name version } } }`;
  const first = await api().gql(token, RENAME, { id: webhook.id, name: 'First admin', version });
  t.deepEqual(first.data.updateWebhook.result, { name: 'First admin', version: version + 1 });
  const second = await api().gql(token, RENAME, { id: webhook.id, name: 'Second admin', version });
  t.is(second.errors?.length, 1, JSON.stringify(second.errors));
  t.deepEqual(second.errors![0]!.extensions, { code: '55000', constraint: 'webhook_changed_since', column: 'version' });
  t.is(second.errors![0]!.message,
    `webhook ${webhook.id} was changed since it was read (version ${version + 1}, read at ${version}): nothing was saved; read it again and make the change over it`);
  t.is((await db().pool.query('select name from webhooks.webhooks where id = $1', [webhook.id])).rows[0].name, 'First admin');
  const unversioned = await api().gql(token, RENAME, { id: webhook.id, name: 'Last write' });
  t.deepEqual(unversioned.data.updateWebhook.result, { name: 'Last write', version: version + 2 });
});

test('deleteWebhook removes the webhook with its secret, queue and history', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_CREATED'] });
  await f.contact(company.id);
  await f.contact(company.id);
  const [done] = await deliveriesOf(db().pool, [webhook.id]);
  await finish(done!.id, 'failed', 1);

  const deleted = await api().gql(token, 'mutation($id: BigInt!) { deleteWebhook(input: { id: $id }) { result { id name } } }', { id: webhook.id });
  t.deepEqual(deleted.data.deleteWebhook.result, { id: webhook.id, name: 'Thank-you notes' });
  t.deepEqual(await leftOf(webhook.id), { webhooks: 0, secrets: 0, queue: 0, deliveries: 0, history: 0, results: 0, attempts: 0 });
});

async function leftOf(webhookId: string) {
  const { rows: [left] } = await db().pool.query(
    `select (select count(*) from webhooks.webhooks where id = $1)::int as webhooks,
            (select count(*) from webhooks_private.webhook_secrets where webhook_id = $1)::int as secrets,
            (select count(*) from webhooks.delivery_queue where webhook_id = $1)::int as queue,
            (select count(*) from webhooks.deliveries where webhook_id = $1)::int as deliveries,
            (select count(*) from webhooks.delivery_history where webhook_id = $1)::int as history,
            (select count(*) from webhooks.delivery_results where webhook_id = $1)::int as results,
            (select count(*) from webhooks.delivery_attempts where webhook_id = $1)::int as attempts`, [webhookId]);
  return left;
}

test('deleteWebhook of a webhook with a long history: what it leaves to maintenance no longer shows in allDeliveries or allDeliveryAttempts', async (t) => {
  const f = make();
  const company = await f.company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_CREATED'] });
  const { rows: [{ n: inline }] } = await db().pool.query('select webhooks_private.inline_purge_max_rows() as n');
  // finished deliveries of yesterday, each with its attempt: one more than the delete takes itself
  await db().pool.query(`select webhooks_private.ensure_day(webhooks_private.utc_day(now() - interval '1 day'))`);
  await db().pool.query(
    `insert into webhooks.delivery_history (webhook_id, company_id, action, contact_id, payload, created_at)
     select $1, $2, 'contact.created', i, '{"type": "contact.created"}', now() - interval '1 day'
     from generate_series(1, $3) i`, [webhook.id, company.id, inline + 1]);
  await db().pool.query(
    `insert into webhooks.delivery_attempts (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code)
     select h.id, h.created_at, h.webhook_id, h.company_id, 1, h.created_at, 5, 204
     from webhooks.delivery_history h where h.webhook_id = $1`, [webhook.id]);
  const reads = async () => {
    // (the company's only webhook)
    const answer = await api().gql(token, `{
        allDeliveries(first: 1) { nodes { id } }
        allDeliveryAttempts(first: 1) { nodes { id } } }`);
    if (answer.errors) throw new Error(JSON.stringify(answer.errors));
    // (lists have no totalCount: a page of one says whether any is left)
    return { deliveries: answer.data.allDeliveries.nodes.length, attempts: answer.data.allDeliveryAttempts.nodes.length };
  };
  t.deepEqual(await reads(), { deliveries: 1, attempts: 1 });

  await api().gql(token, 'mutation($id: BigInt!) { deleteWebhook(input: { id: $id }) { result { id } } }', { id: webhook.id });
  t.like(await leftOf(webhook.id), { webhooks: 0, deliveries: 0, history: 1, attempts: 1 });
  t.deepEqual(await reads(), { deliveries: 0, attempts: 0 });

  const { rows: batches } = await db().pool.query('select webhooks.purge_deleted_webhooks() as n from generate_series(1, 3)');
  t.deepEqual(batches.map((b) => b.n), [1, 0, null]);
  t.like(await leftOf(webhook.id), { history: 0, attempts: 0 });
});

test('retrySchedule: the schedule in force, for a viewer too; the number of attempts is bounded', async (t) => {
  const company = await make().company();
  const viewer = await api().token(company.id, 'webhook_viewer');
  const query = 'query($n: Int) { retrySchedule(pMaxAttempts: $n) { nodes { attempt waitBefore { seconds minutes hours } } } }';

  const schedule = await api().gql(viewer, query);
  t.is(schedule.errors, undefined, JSON.stringify(schedule.errors));
  const nodes = schedule.data.retrySchedule.nodes;
  t.is(nodes.length, 10);
  t.like(nodes[0], { attempt: 1 });
  t.like(nodes[1], { attempt: 2, waitBefore: { seconds: 10 } });
  t.like(nodes[2], { attempt: 3, waitBefore: { seconds: 30 } });

  const three = await api().gql(viewer, query, { n: 3 });
  t.is(three.data.retrySchedule.nodes.length, 3);

  for (const n of [0, 101, 2_000_000_000, -5]) {
    const refused = await api().gql(viewer, query, { n });
    t.is(refused.errors?.length, 1, String(n));
    t.like(refused.errors![0], { message: 'max attempts must be from 1 to 100', extensions: { code: '22023' } }, String(n));
  }
});

test('sendTestWebhook: at most ten test sends of a webhook on their way; past them a named refusal, and room again as they end', async (t) => {
  const company = await make().company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_CREATED'] });
  const { webhook: other } = await createThroughApi(token, { actions: ['CONTACT_CREATED'] });
  const SEND = 'mutation($id: BigInt!) { sendTestWebhook(input: { id: $id }) { result { id state } } }';
  const sent: string[] = [];
  for (let i = 0; i < 10; i++) {
    const answer = await api().gql(token, SEND, { id: webhook.id });
    t.is(answer.errors, undefined, JSON.stringify(answer.errors));
    sent.push(answer.data.sendTestWebhook.result.id);
  }
  // one of them being sent right now still counts
  await db().pool.query(`update webhooks.delivery_queue set locked_by = 'relay-1', locked_until = now() + interval '1 minute' where delivery_id = $1`, [sent[0]]);

  const refused = await api().gql(token, SEND, { id: webhook.id });
  t.is(refused.errors?.length, 1);
  t.like(refused.errors![0], {
    message: `webhook ${webhook.id} has 10 test sends on their way already: wait until one is delivered or fails`,
    extensions: { code: '55000', constraint: 'test_sends_waiting', column: 'id' },
  });
  const { rows: [queued] } = await db().pool.query(`select count(*)::int as n from webhooks.delivery_queue where webhook_id = $1`, [webhook.id]);
  t.is(queued.n, 10);
  // another webhook of the company has its own ten
  t.is((await api().gql(token, SEND, { id: other.id })).errors, undefined);

  await finish(sent[1]!, 'succeeded', 1);
  t.is((await api().gql(token, SEND, { id: webhook.id })).errors, undefined);
});

test('a company makes at most webhooks.max_changes_per_hour changes through the API in an hour; past them a named refusal, nothing changed, and other companies and DBAs are not held', async (t) => {
  const f = make();
  const company = await f.company();
  const other = await f.company();
  const token = await adminOf(company.id);
  const { webhook } = await createThroughApi(token, { actions: ['CONTACT_CREATED'] });
  const budget = async () => (await db().pool.query(
    'select tokens from webhooks_private.company_changes where company_id = $1', [company.id])).rows[0]?.tokens;
  // the create was one change of the hour's 1,000
  t.is(Math.round(await budget()), 999);
  // most of the hour spent: two changes left
  await db().pool.query(`update webhooks_private.company_changes set tokens = 2, at = now() where company_id = $1`, [company.id]);
  const RENAME = 'mutation($id: BigInt!, $name: String!) { updateWebhook(input: { id: $id, name: $name }) { result { name } } }';
  for (const name of ['One', 'Two']) {
    const answer = await api().gql(token, RENAME, { id: webhook.id, name });
    t.is(answer.errors, undefined, JSON.stringify(answer.errors));
  }
  // the next is refused, unless the hour refilled a change meanwhile (one every 3.6 s:
  // a loaded machine may take that long): renamed on until one is refused
  let accepted = 'Two';
  let refused: any;
  for (let i = 3; i <= 12 && !refused; i++) {
    const answer = await api().gql(token, RENAME, { id: webhook.id, name: `Name ${i}` });
    if (answer.errors) refused = answer;
    else accepted = `Name ${i}`;
  }
  t.is(refused?.errors?.length, 1);
  t.like(refused.errors![0], { extensions: { code: '54000', constraint: 'company_changes_per_hour' } });
  t.regex(refused.errors![0].message, /^company \d+ made its 1000 changes to webhooks of this hour \(webhooks\.max_changes_per_hour\): the next is allowed in \d+ s$/);
  const { rows: [row] } = await db().pool.query('select name from webhooks.webhooks where id = $1', [webhook.id]);
  t.is(row.name, accepted, 'nothing changed by the refused one');
  // a test send is a change too
  await db().pool.query(`update webhooks_private.company_changes set tokens = 0, at = now() where company_id = $1`, [company.id]);
  t.like((await api().gql(token, 'mutation($id: BigInt!) { sendTestWebhook(input: { id: $id }) { result { id } } }', { id: webhook.id })).errors?.[0],
    { extensions: { constraint: 'company_changes_per_hour' } });

  // another company has its own hour; a DBA's change is not counted
  t.is((await createThroughApi(await adminOf(other.id), { actions: ['CONTACT_CREATED'] })).webhook.companyId, other.id);
  await db().pool.query(`update webhooks.webhooks set name = 'By the DBA' where id = $1`, [webhook.id]);

  // the hour refills as it goes: 3.6 s a change at 1,000 an hour
  await db().pool.query(`update webhooks_private.company_changes set tokens = 0, at = now() - interval '4 seconds' where company_id = $1`, [company.id]);
  t.is((await api().gql(token, RENAME, { id: webhook.id, name: 'Four' })).errors, undefined);
});

test('a token for a company not made yet leaves no row of that company id: the customer the CRM then gives the id to finds nothing of it', async (t) => {
  const f = make();
  const { rows: [{ missing }] } = await db().pool.query(`select coalesce(max(id), 0) + 1000 as missing from crm.companies`);
  const other = await f.company();
  const others = await f.webhook({ companyId: other.id, actions: ['contact.created'] });
  const early = await adminOf(String(missing));
  const refused = await api().gql(early, CREATE, { name: 'early', url: 'https://receiver.example.com/x', fields: ['first_name'], actions: ['CONTACT_CREATED'] });
  t.like(refused.errors?.[0].extensions, { code: '23503', constraint: 'company_unknown' });
  // every other write names a webhook, and the token's company has none (another's is not found)
  for (const mutation of ['disableWebhook', 'enableWebhook', 'deleteWebhook', 'sendTestWebhook', 'backfill']) {
    const argument = mutation === 'backfill' ? 'webhookId' : 'id';
    const answer = await api().gql(early, `mutation($id: BigInt!) { ${mutation}(input: { ${argument}: $id }) { clientMutationId } }`, { id: others.id });
    t.truthy(answer.errors ?? answer.data?.[mutation] === null, mutation);
  }
  const { rows: tables } = await db().pool.query(
    `select format('%I.%I', c.table_schema, c.table_name) as name from information_schema.columns c
       join information_schema.tables r using (table_schema, table_name)
     where c.column_name = 'company_id' and c.table_schema in ('webhooks', 'webhooks_private') and r.table_type = 'BASE TABLE'`);
  t.true(tables.length > 5);
  for (const { name } of tables) {
    const { rows: [{ n }] } = await db().pool.query(`select count(*)::int as n from ${name} where company_id = $1`, [missing]);
    t.is(n, 0, name);
  }

  await db().pool.query(`insert into crm.companies (id, name) values ($1, 'Later Realty')`, [missing]);
  const later = await api().gql(await adminOf(String(missing)), '{ allWebhooks { nodes { id } } allAuditLogs { nodes { id } } }');
  t.deepEqual(later.data, { allWebhooks: { nodes: [] }, allAuditLogs: { nodes: [] } });
});
