// Claims of different webhooks do not wait for each other: a lane another relay is
// deciding for is passed over when the claim has other lanes to serve, and waited for
// only when it is all there is (so a busy webhook is never left unserved).
import test from 'ava';
import pg from 'pg';
import { createTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { waitForRows } from '../helpers/relay.ts';

const CLAIM = `select delivery_id, webhook_id from webhooks_relay.claim_deliveries($1, 10, interval '1 minute', 10, '{}'::bigint[], '{}'::integer[], null::bigint[])`;

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

test('a lane being decided by another relay is passed over while others are ready, and waited for once it is the only one', async (t) => {
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

  // a claim with a bound on its wait: before, it queued behind the held lane
  const claimer = new pg.Client({ connectionString: database.url });
  await claimer.connect();
  t.teardown(() => claimer.end());
  await claimer.query(`set statement_timeout = '5s'`);
  const first = await claimer.query(CLAIM, ['relay-b']);
  t.deepEqual(first.rows.map((r) => r.webhook_id), [free.id, free.id], 'the free lane is served at once, the held one passed over');

  // now the held lane is the only one with due deliveries: the claim waits for it
  const pid = (await claimer.query('select pg_backend_pid() as pid')).rows[0].pid;
  const second = claimer.query(CLAIM, ['relay-b']);
  await waitForRows(database.pool,
    `select 1 from pg_locks where pid = $1 and not granted`, [pid], (rows) => rows.length === 1);
  await other.query('commit');
  t.deepEqual((await second).rows.map((r) => r.webhook_id), [held.id, held.id]);
});

test('a claim that finds every lane taken waits for the first in rotation only, then takes it while the others are still held', async (t) => {
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
  // bounded: before, the claim waited for every lane, the second's holder included
  await claimer.query(`set statement_timeout = '5s'`);
  const pid = (await claimer.query('select pg_backend_pid() as pid')).rows[0].pid;
  const claim = claimer.query(CLAIM, ['relay-c']);
  await waitForRows(database.pool,
    `select 1 from pg_locks where pid = $1 and not granted`, [pid], (rows) => rows.length === 1);
  await holders[0]!.query('commit');
  t.deepEqual((await claim).rows.map((r) => r.webhook_id), [first.id, first.id], 'the first lane, while the second is still held');
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
