// The admin API with the relay running: what an admin does through GraphQL reaches a
// real receiver, which checks signatures with the standardwebhooks package.
import test from 'ava';
import { Webhook } from 'standardwebhooks';
import { startTestApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { startReceiver } from '../helpers/receiver.ts';
import { relayTestDatabase, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';

async function setup(t: { teardown: (fn: () => Promise<void> | void) => void }) {
  const database = await relayTestDatabase();
  t.teardown(() => database.drop());
  const api = await startTestApi(database.url);
  t.teardown(() => api.stop());
  const receiver = await startReceiver();
  t.teardown(() => receiver.close());
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  const f = factories(database.pool);
  const company = await f.company();
  const token = await api.token(company.id, 'webhook_admin', 'admin@example.com');
  const gql = async (query: string, variables: Record<string, unknown> = {}) => {
    const response = await api.gql(token, query, variables);
    if (response.errors) throw new Error(JSON.stringify(response.errors));
    return response.data;
  };
  return { database, pool: database.pool, receiver, f, company, gql };
}

const CREATE = `mutation($url: String!) {
  createWebhook(input: { name: "Receiver", url: $url, fields: ["first_name", "email"], actions: [CONTACT_CREATED] }) {
    result { secret webhook { id } }
  }
}`;

test('a webhook created through GraphQL delivers a contact change, signed with the secret it returned', async (t) => {
  const { pool, receiver, f, company, gql } = await setup(t);
  const url = receiver.url('/in');
  const { secret, webhook } = (await gql(CREATE, { url })).createWebhook.result;
  receiver.route('/in', { secret, replies: [200] });

  await f.contact(company.id, { first_name: 'Grace' });
  const [request] = await receiver.waitFor(1, { path: '/in' });
  t.true(request.verified, request.verifyError ?? '');
  t.is(JSON.parse(request.body).data.contact.first_name, 'Grace');
  await waitForFinalDeliveries(pool, [webhook.id], 1);

  const history = await gql(`query($id: BigInt!) { webhookById(id: $id) {
      history { nodes { messageId state attempts lastStatusCode } } } }`, { id: webhook.id });
  t.deepEqual(history.webhookById.history.nodes, [
    { messageId: request.headers['webhook-id'], state: 'succeeded', attempts: 1, lastStatusCode: 200 },
  ]);
  const report = await gql('{ webhookReport { nodes { timesFired timesSucceeded timesFailed } } }');
  t.deepEqual(report.webhookReport.nodes, [{ timesFired: '1', timesSucceeded: '1', timesFailed: '0' }]);
});

test('replayDelivery sends the message again with the same webhook-id', async (t) => {
  const { pool, receiver, f, company, gql } = await setup(t);
  const { secret, webhook } = (await gql(CREATE, { url: receiver.url('/in') })).createWebhook.result;
  receiver.route('/in', { secret, replies: [200, 200] });
  await f.contact(company.id);
  const [first] = await receiver.waitFor(1, { path: '/in' });
  const [delivery] = await waitForFinalDeliveries(pool, [webhook.id], 1);

  await gql('mutation($id: BigInt!) { replayDelivery(input: { id: $id }) { result { state } } }', { id: delivery.id });
  const [, second] = await receiver.waitFor(2, { path: '/in' });
  t.is(second.headers['webhook-id'], first.headers['webhook-id']);
  t.true(second.verified, second.verifyError ?? '');
  t.is(second.body, first.body);
  const [replayed] = await waitForFinalDeliveries(pool, [webhook.id], 1);
  t.like(replayed, { id: delivery.id, state: 'succeeded', attempts: 2 });
});

test('after rotateWebhookSecret, deliveries verify with the new secret and, for 24 hours, with the old one', async (t) => {
  const { receiver, f, company, gql } = await setup(t);
  const { secret: oldSecret, webhook } = (await gql(CREATE, { url: receiver.url('/in') })).createWebhook.result;
  const { secret: newSecret } = (await gql('mutation($id: BigInt!) { rotateWebhookSecret(input: { id: $id }) { result { secret } } }',
    { id: webhook.id })).rotateWebhookSecret.result;
  t.not(newSecret, oldSecret);

  receiver.route('/in', { secret: newSecret, replies: [200] });
  await f.contact(company.id);
  const [request] = await receiver.waitFor(1, { path: '/in' });
  t.true(request.verified, `new secret: ${request.verifyError}`);
  // the same request also carries a signature made with the previous secret
  t.notThrows(() => new Webhook(oldSecret.slice('whsec_'.length)).verify(request.body, request.headers as Record<string, string>));
});

// Each rotation keeps the secret it replaces valid for 24 hours, a second rotation
// within them too (the page's advice for a new secret lost before it was stored): with
// one previous secret kept, the first one's validity ended at once, and a receiver
// still on it failed every delivery.
test('two rotations within 24 hours: deliveries still verify with the secret the first rotation replaced', async (t) => {
  const { receiver, f, company, gql } = await setup(t);
  const { secret: oldSecret, webhook } = (await gql(CREATE, { url: receiver.url('/in') })).createWebhook.result;
  const rotate = 'mutation($id: BigInt!) { rotateWebhookSecret(input: { id: $id }) { result { secret } } }';
  await gql(rotate, { id: webhook.id });
  const { secret: newest } = (await gql(rotate, { id: webhook.id })).rotateWebhookSecret.result;

  receiver.route('/in', { secret: newest, replies: [200] });
  await f.contact(company.id);
  const [request] = await receiver.waitFor(1, { path: '/in' });
  t.true(request.verified, `newest secret: ${request.verifyError}`);
  t.notThrows(() => new Webhook(oldSecret.slice('whsec_'.length)).verify(request.body, request.headers as Record<string, string>));
});

test('a 410 Gone disables the webhook, and its history of changes says the relay did it', async (t) => {
  const { pool, receiver, f, company, gql } = await setup(t);
  const { webhook } = (await gql(CREATE, { url: receiver.url('/gone') })).createWebhook.result;
  receiver.route('/gone', { replies: [410] });
  await f.contact(company.id);
  await waitForRows(pool, 'select enabled from webhooks.webhooks where id = $1', [webhook.id], (rows) => rows[0]?.enabled === false);

  const { webhookById } = await gql(`query($id: BigInt!) { webhookById(id: $id) { auditLog { nodes { actor action details } } } }`,
    { id: webhook.id });
  const [disabled, created] = webhookById.auditLog.nodes;
  t.like(disabled, { actor: 'relay', action: 'webhook.disabled' });
  t.regex(disabled.details.reason, /410 Gone/);
  t.like(created, { actor: 'admin@example.com', action: 'webhook.created' });
});
