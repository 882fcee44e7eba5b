// Ids after years: at 1,000 deliveries a second a delivery's id passes 2^53 (where a
// JavaScript number stops telling ids apart) in 285,000 years, but a sequence may
// start anywhere (a restore, a merge of databases), and one id read as a number
// would settle, or show, a neighbour. The deliveries' and attempts' ids start past
// 2^53 here: the relay claims, sends and settles each by its own id, and the API
// shows and pages them to the digit.
import test from 'ava';
import { startTestApi } from '../helpers/api.ts';
import { relayScene, testRelay, waitForFinalDeliveries } from '../helpers/relay.ts';

// 2^53 + 1: the first integer a JavaScript number cannot hold (it reads as 2^53)
const PAST_2_53 = 9_007_199_254_740_993n;
const CONTACTS = 3;

test('deliveries and attempts with ids past 2^53 are settled and shown by their own ids', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  for (const table of ['webhooks.delivery_history', 'webhooks.delivery_attempts']) {
    const { rows: [{ sequence }] } = await database.pool.query('select pg_get_serial_sequence($1, \'id\') as sequence', [table]);
    await database.pool.query(`alter sequence ${sequence} restart with ${PAST_2_53}`);
  }
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  // each delivery's first attempt fails, so that it is settled twice (a retry, then a success)
  receiver.route('/hook', { secret: webhook.secret, replies: Array(CONTACTS).fill(500), otherwise: 200 });
  for (let i = 0; i < CONTACTS; i++) await f.contact(company.id);

  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], CONTACTS, 20_000);
  t.true(deliveries.every((d) => d.state === 'succeeded'), JSON.stringify(deliveries));
  const { rows } = await database.pool.query(
    `select d.id::text, d.attempts, array_agg(a.id::text order by a.attempt) as attempt_ids
     from webhooks.deliveries d join webhooks.delivery_attempts a on a.delivery_id = d.id
     where d.webhook_id = $1 group by d.id, d.attempts order by d.id`, [webhook.id]);
  const ids = [0n, 1n, 2n].map((i) => (PAST_2_53 + i).toString());
  t.deepEqual(rows.map((r) => [r.id, r.attempts]), ids.map((id) => [id, 2]), 'each delivery settled by its own id, twice');

  // the API: a page of two, then the page after its last row
  const api = await startTestApi(database.url);
  t.teardown(() => api.stop());
  const token = await api.token(company.id);
  const HISTORY = `query($id: BigInt!, $at: Datetime, $after: BigInt) {
    webhookById(id: $id) { history(first: 2, afterCreatedAt: $at, afterId: $after) { nodes { id createdAt } } } }`;
  const first = await api.gql(token, HISTORY, { id: webhook.id });
  t.falsy(first.errors, JSON.stringify(first.errors));
  const page = first.data.webhookById.history.nodes;
  t.deepEqual(page.map((n: any) => n.id), [ids[2], ids[1]]);
  const next = await api.gql(token, HISTORY, { id: webhook.id, at: page[1].createdAt, after: page[1].id });
  t.falsy(next.errors, JSON.stringify(next.errors));
  t.deepEqual(next.data.webhookById.history.nodes.map((n: any) => n.id), [ids[0]]);
  const ATTEMPTS = `query($id: BigInt!) { deliveryAttemptsLatestFirst(deliveryId: $id, first: 10) { nodes { id attempt statusCode } } }`;
  const attempts = await api.gql(token, ATTEMPTS, { id: ids[0] });
  t.falsy(attempts.errors, JSON.stringify(attempts.errors));
  t.deepEqual(attempts.data.deliveryAttemptsLatestFirst.nodes.map((n: any) => [n.id, n.attempt, n.statusCode]),
    [[rows[0].attempt_ids[1], 2, 200], [rows[0].attempt_ids[0], 1, 500]]);
});
