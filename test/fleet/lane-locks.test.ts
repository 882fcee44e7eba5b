// Claims never wait for each other: a lane another relay is deciding for is passed
// over when the claim has other lanes to serve; when it is all there is, the claim
// returns at once saying so (lanes_busy), and the relay asks again shortly. (A claim
// that waited held its snapshot all the while: sql/28_lanes.sql.)
import test from 'ava';
import pg from 'pg';
import { createTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { relayScene, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';

const CLAIM = `select delivery_id, webhook_id from webhooks_relay.claim_deliveries($1, 10, interval '1 minute', 10, '{}'::bigint[], '{}'::integer[], null::bigint[])`;
const CLAIM_ALL = `select delivery_id, webhook_id, at_cap, lanes_busy from webhooks_relay.claim_deliveries($1, 10, interval '1 minute', 10, '{}'::bigint[], '{}'::integer[], null::bigint[])`;

/** A database with one company's four webhooks, four deliveries due to each. */
async function fourWebhooksWithDue(t: { teardown(fn: () => unknown): void }) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  const webhooks = [];
  for (let i = 0; i < 4; i++) webhooks.push(await f.webhook({ companyId: company.id, actions: ['contact.created'] }));
  for (let i = 0; i < 4; i++) await f.contact(company.id);
  return { database, webhooks };
}

test('a lane being decided by another relay is passed over while others are ready, and not waited for once it is the only one', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  const held = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const free = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  for (let i = 0; i < 2; i++) await f.contact(company.id); // two deliveries to each

  // another relay's claim, deciding for one lane (its transaction still open)
  const other = new pg.Client({ connectionString: database.url });
  await other.connect();
  t.teardown(() => other.end());
  await other.query('begin');
  await other.query('select 1 from webhooks_private.lanes where webhook_id = $1 for update', [held.id]);

  // claims with a bound on their wait: a claim that waited would fail
  const claimer = new pg.Client({ connectionString: database.url });
  await claimer.connect();
  t.teardown(() => claimer.end());
  await claimer.query(`set statement_timeout = '5s'`);
  const first = await claimer.query(CLAIM_ALL, ['relay-b']);
  t.deepEqual(first.rows.map((r) => [r.webhook_id, r.lanes_busy]), [[free.id, false], [free.id, false]],
    'the free lane is served at once, the held one passed over');

  // now the held lane is the only one with due deliveries: the claim says so at once
  const second = await claimer.query(CLAIM_ALL, ['relay-b']);
  t.deepEqual(second.rows, [{ delivery_id: null, webhook_id: null, at_cap: false, lanes_busy: true }]);
  t.is((await database.pool.query(`select count(*)::int as n from webhooks.delivery_queue where webhook_id = $1 and locked_by is not null`, [held.id])).rows[0].n, 0,
    'nothing of it leased');

  // and takes it once the other claim has committed
  await other.query('commit');
  const third = await claimer.query(CLAIM_ALL, ['relay-b']);
  t.deepEqual(third.rows.map((r) => [r.webhook_id, r.lanes_busy]), [[held.id, false], [held.id, false]]);
});

test('a claim that finds every lane taken holds none and waits for none, then takes the first one freed while the others are still held', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  const first = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const second = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  for (let i = 0; i < 2; i++) await f.contact(company.id);
  // the rotation: the lane served longest ago first
  await database.pool.query(`update webhooks_private.lanes set served_at = now() - interval '1 minute' where webhook_id = $1`, [first.id]);
  await database.pool.query(`update webhooks_private.lanes set served_at = now() where webhook_id = $1`, [second.id]);

  // two other relays' claims, each deciding for one lane
  const holders = [];
  for (const webhook of [first, second]) {
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    t.teardown(() => holder.end());
    await holder.query('begin');
    await holder.query('select 1 from webhooks_private.lanes where webhook_id = $1 for update', [webhook.id]);
    holders.push(holder);
  }

  const claimer = new pg.Client({ connectionString: database.url });
  await claimer.connect();
  t.teardown(() => claimer.end());
  await claimer.query(`set statement_timeout = '5s'`);
  // it returns while both lanes are still held: it waited for neither
  const busy = await claimer.query(CLAIM_ALL, ['relay-c']);
  t.deepEqual(busy.rows, [{ delivery_id: null, webhook_id: null, at_cap: false, lanes_busy: true }]);

  await holders[0]!.query('commit');
  const claim = await claimer.query(CLAIM, ['relay-c']);
  t.deepEqual(claim.rows.map((r) => r.webhook_id), [first.id, first.id], 'the first lane, while the second is still held');
  await holders[1]!.query('commit');
});

test('a claim that meets another relay locks only the lanes its batch needs: a third relay claims from the rest meanwhile', async (t) => {
  const { database, webhooks } = await fourWebhooksWithDue(t);
  // the rotation: webhooks[0] served longest ago, then [1], [2], [3]
  for (const [i, webhook] of webhooks.entries()) {
    await database.pool.query(`update webhooks_private.lanes set served_at = now() - make_interval(mins => 10 - $2::int) where webhook_id = $1`, [webhook.id, i]);
  }
  const client = async () => {
    const c = new pg.Client({ connectionString: database.url });
    await c.connect();
    t.teardown(() => c.end());
    await c.query(`set statement_timeout = '5s'`);
    return c;
  };
  const [w0, w1, w2, w3] = webhooks.map((w) => w.id);

  // relay-x is deciding for the second lane
  const x = await client();
  await x.query('begin');
  await x.query('select 1 from webhooks_private.lanes where webhook_id = $1 for update', [w1]);

  // relay-a's claim of six, its transaction still open: the first lane has four due,
  // the second is taken, the third makes six; the fourth it has no use for
  const a = await client();
  await a.query('begin');
  const claimedByA = await a.query(`select delivery_id, webhook_id from webhooks_relay.claim_deliveries('relay-a', 6, interval '1 minute', 10, '{}'::bigint[], '{}'::integer[], null::bigint[])`);
  t.deepEqual(claimedByA.rows.map((r) => r.webhook_id), [w0, w0, w0, w2, w2, w2]);
  const free = await database.pool.query(
    `select l.webhook_id from webhooks_private.lanes l where l.webhook_id = any ($1::bigint[]) order by l.webhook_id for update skip locked`,
    [webhooks.map((w) => w.id)]);
  t.deepEqual(free.rows.map((r) => r.webhook_id), [w3], 'the lane it had no use for is not held');

  // relay-b, meanwhile: the fourth webhook at once (before, it waited for relay-a)
  const b = await client();
  const claimedByB = await b.query(CLAIM, ['relay-b']);
  t.deepEqual(claimedByB.rows.map((r) => r.webhook_id), Array(4).fill(w3));
  await a.query('commit');
  await x.query('commit');
});

test('a relay alone spreads its batch over every webhook with due deliveries', async (t) => {
  const { database, webhooks } = await fourWebhooksWithDue(t);
  const { rows } = await database.pool.query(`select webhook_id from webhooks_relay.claim_deliveries('relay-a', 8, interval '1 minute', 10, '{}'::bigint[], '{}'::integer[], null::bigint[])`);
  t.deepEqual([...new Set(rows.map((r) => r.webhook_id))].sort(), webhooks.map((w) => w.id).sort(), 'two of each: every webhook\'s queue fed');
  t.is(rows.length, 8);
});

test('a relay whose claim found every lane busy asks again shortly, not at its next poll', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, otherwise: { status: 200 } });
  await f.contact(company.id);

  // another relay's claim is deciding for the webhook's lane
  const other = new pg.Client({ connectionString: database.url });
  await other.connect();
  t.teardown(() => other.end());
  await other.query('begin');
  await other.query('select 1 from webhooks_private.lanes where webhook_id = $1 for update', [webhook.id]);

  // a relay that polls once a minute: only its look again can bring the delivery soon
  const relay = testRelay(database.url, { RELAY_ID: 'relay-busy', RELAY_POLL_INTERVAL_MS: '60000' });
  t.teardown(() => relay.stop());
  await relay.start();
  // it keeps asking (a discovery and its last look are two claims; more are its looks again)
  await waitForRows(database.pool, 'select 1', [], () => relay.stats.emptyClaims >= 5, 10_000);
  t.is(receiver.received('/hook').length, 0);

  await other.query('commit');
  const [delivery] = await waitForFinalDeliveries(database.pool, [webhook.id], 1, 5_000);
  t.is(delivery!.state, 'succeeded');
  t.is(receiver.received('/hook').length, 1);
});
