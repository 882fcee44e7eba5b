// Backfill end to end: started through GraphQL, driven by real relays (their
// backfiller), received by a real HTTP receiver. 10,000 contacts arrive once each,
// through a graceful relay restart, a relay killed with SIGKILL and an API restart;
// live deliveries keep arriving meanwhile; cancel stops it.
import test from 'ava';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { startTestApi, type TestApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { spawnRelay, relayScene, waitForRows } from '../helpers/relay.ts';

const CONTACTS = 10_000;

/** Inserts n contacts of a company in one statement (first_name = 'Contact <n>', city = 'City <n>'). */
async function manyContacts(pool: { query: (sql: string, params: unknown[]) => Promise<unknown> }, companyId: string, n: number) {
  await pool.query(
    `insert into crm.contacts (company_id, first_name, last_name, email, city)
     select $1, 'Contact ' || i, 'Backfilled', 'c' || i || '@example.com', 'City ' || i
     from generate_series(1, $2) i`, [companyId, n]);
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

async function progress(api: TestApi, token: string, id: string) {
  const response = await api.gql(token, 'query($id: BigInt!) { backfillById(id: $id) { id state total queued finishedAt webhookId } }', { id });
  if (response.errors) throw new Error(JSON.stringify(response.errors));
  return response.data.backfillById;
}

test('10,000 contacts: each arrives once with its fields, through relay restarts (graceful and SIGKILL) and an API restart; live deliveries keep arriving', async (t) => {
  t.timeout(240_000);
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  // quicker pacing than the defaults, so the test is short; the pacing itself is the same
  await pool.query(`alter database ${database.name} set webhooks.backfill_defer = '20 milliseconds'`);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name', 'city'], url: receiver.url('/sync') });
  const live = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['first_name'], url: receiver.url('/live') });
  receiver.route('/sync', { secret: hook.secret });
  receiver.route('/live', { secret: live.secret });
  await pool.query('alter table crm.contacts disable trigger "!webhooks_created"');
  await manyContacts(pool, company.id, CONTACTS);
  await pool.query('alter table crm.contacts enable trigger "!webhooks_created"');
  const { rows: contacts } = await pool.query('select id, first_name, city from crm.contacts where company_id = $1 order by id', [company.id]);

  let api = await startTestApi(database.url);
  t.teardown(() => api.stop());
  let token = await api.token(company.id);
  const started = await api.gql(token, 'mutation($id: BigInt!) { startBackfill(input: { webhookId: $id }) { result } }', { id: hook.id });
  t.falsy(started.errors);
  const backfillId: string = started.data.startBackfill.result;

  const relays: ChildProcess[] = [];
  t.teardown(() => Promise.all(relays.map((r) => stopChild(r, 'SIGKILL'))));
  const relay = (): ChildProcess => {
    const child = spawnRelay(database.url, { RELAY_LEASE_MS: '20000', RELAY_REQUEST_TIMEOUT_MS: '5000' });
    relays.push(child);
    return child;
  };

  let first = relay();
  await receiver.waitFor(1500, { path: '/sync', timeoutMs: 90_000 });
  // a graceful restart: queued deliveries are released, requests in flight settle
  await stopChild(first, 'SIGTERM');
  // the API goes away and comes back meanwhile: progress lives in SQL
  await api.stop();
  api = await startTestApi(database.url);
  token = await api.token(company.id);
  const midway = await progress(api, token, backfillId);
  t.is(midway.state, 'running');
  t.is(midway.total, String(CONTACTS));
  first = relay();

  // live work during the backfill: a new contact, and an update of a backfilled one
  const fresh = await f.contact(company.id, { first_name: 'Live' });
  await pool.query(`update crm.contacts set city = 'Moved' where id = $1`, [contacts[CONTACTS - 1].id]);
  const [liveRequest] = await receiver.waitFor(1, { path: '/live', timeoutMs: 60_000 });
  t.is(JSON.parse(liveRequest!.body).data.contact.id, Number(fresh.id));

  await receiver.waitFor(5000, { path: '/sync', timeoutMs: 90_000 });
  // killed: whatever it held comes back when its lease runs out
  await stopChild(first, 'SIGKILL');
  relay();
  relay();

  const done = await waitForRows(pool, 'select * from webhooks.backfills where id = $1', [backfillId], (rows) => rows[0]?.state === 'done', 180_000);
  t.is(done[0].queued, String(CONTACTS + 1), 'the contact created meanwhile is part of the walk too');
  await waitForRows(pool,
    `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state in ('pending', 'in_flight')`,
    [hook.id], (rows) => rows[0].n === 0, 120_000);

  // SQL: one snapshot per contact, all sent
  const { rows: snapshots } = await pool.query(
    `select contact_id, message_id, state, payload from webhooks.deliveries
     where webhook_id = $1 and action = 'contact.snapshot' order by contact_id`, [hook.id]);
  t.is(snapshots.length, CONTACTS + 1);
  t.is(new Set(snapshots.map((s) => s.contact_id)).size, CONTACTS + 1, 'no contact written twice');
  t.true(snapshots.every((s) => s.state === 'succeeded'));

  // the receiver: every message, each contact with its fields; a message seen twice
  // only if a relay was killed while sending it (at least once), never two messages
  const requests = receiver.received('/sync');
  t.true(requests.every((r) => r.verified));
  const byMessage = new Map<string, any>();
  for (const request of requests) byMessage.set(String(request.headers['webhook-id']), JSON.parse(request.body));
  const snapshotMessages = [...byMessage.values()].filter((body) => body.type === 'contact.snapshot');
  t.is(snapshotMessages.length, CONTACTS + 1);
  const expected = new Map(contacts.map((c) => [Number(c.id), c]));
  for (const body of snapshotMessages) {
    const contact = body.data.contact;
    t.is(body.data.source, 'backfill');
    if (contact.id === Number(fresh.id)) continue;
    const row = expected.get(contact.id);
    if (!row) t.fail(`unexpected contact ${contact.id}`);
    else if (contact.first_name !== row.first_name || !(contact.city === row.city || contact.city === 'Moved')) {
      t.fail(`contact ${contact.id}: ${JSON.stringify(contact)}`);
    }
    expected.delete(contact.id);
  }
  t.is(expected.size, 0, 'every contact arrived');
  // a message received more than once was attempted that many times (a relay killed
  // while sending it, or a lease that ran out on a starved machine): at least once,
  // never a second message
  const times = new Map<string, number>();
  for (const request of requests) times.set(String(request.headers['webhook-id']), (times.get(String(request.headers['webhook-id'])) ?? 0) + 1);
  const repeated = [...times].filter(([, n]) => n > 1);
  t.log(`requests ${requests.length}, messages ${byMessage.size}, received more than once: ${repeated.length}`);
  if (repeated.length > 0) {
    const { rows: attempts } = await pool.query(
      'select message_id, attempts from webhooks.deliveries where message_id = any ($1::text[])', [repeated.map(([id]) => id)]);
    const attemptsOf = new Map(attempts.map((r) => [r.message_id as string, r.attempts as number]));
    t.true(repeated.every(([id, n]) => (attemptsOf.get(id) ?? 0) >= n), 'each time it arrived was an attempt of its delivery');
  }

  const final = await progress(api, token, backfillId);
  t.like(final, { state: 'done', total: String(CONTACTS + 1), queued: String(CONTACTS + 1) });
  t.truthy(final.finishedAt);
});

test('cancel stops it: nothing more is queued or sent, and what was not sent fails with the reason', async (t) => {
  t.timeout(120_000);
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  await pool.query(`alter database ${database.name} set webhooks.backfill_batch = '100'`);
  await pool.query(`alter database ${database.name} set webhooks.backfill_outstanding = '200'`);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], url: receiver.url('/sync') });
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  // the receiver holds its answers until the test has cancelled
  receiver.route('/sync', { secret: hook.secret, otherwise: { status: 200, after: held } });
  await manyContacts(pool, company.id, 2000);

  const api = await startTestApi(database.url);
  t.teardown(() => api.stop());
  const token = await api.token(company.id);
  const started = await api.gql(token, 'mutation($id: BigInt!) { startBackfill(input: { webhookId: $id }) { result } }', { id: hook.id });
  const backfillId: string = started.data.startBackfill.result;
  const child = spawnRelay(database.url, { RELAY_PER_WEBHOOK_IN_FLIGHT: '4' });
  t.teardown(() => stopChild(child, 'SIGKILL'));
  await receiver.waitFor(4, { path: '/sync' });

  const viewer = await api.token(company.id, 'webhook_viewer');
  const refused = await api.gql(viewer, 'mutation($id: BigInt!) { cancelBackfill(input: { id: $id }) { result { state } } }', { id: backfillId });
  t.truthy(refused.errors);
  const cancelled = await api.gql(token, 'mutation($id: BigInt!) { cancelBackfill(input: { id: $id }) { result { id state queued finishedAt } } }', { id: backfillId });
  t.falsy(cancelled.errors);
  t.is(cancelled.data.cancelBackfill.result.state, 'cancelled');
  const queued = Number(cancelled.data.cancelBackfill.result.queued);
  t.true(queued < 2000);
  release();

  const final = await waitForRows(pool,
    `select state, last_error from webhooks.deliveries where webhook_id = $1`, [hook.id],
    (rows) => rows.every((r) => r.state === 'succeeded' || r.state === 'failed'), 60_000);
  t.is(final.length, queued, 'nothing written after the cancel');
  const sent = final.filter((r) => r.state === 'succeeded').length;
  t.true(sent >= 4 && sent <= 8, `sent ${sent}: those in flight or queued in the relay when it was cancelled`);
  t.true(final.filter((r) => r.state === 'failed').every((r) => r.last_error === `not sent: backfill ${backfillId} was cancelled`));
  // the relay keeps stepping: still nothing more
  const { rows: [after] } = await pool.query('select state, queued from webhooks.backfills where id = $1', [backfillId]);
  t.like(after, { state: 'cancelled', queued: String(queued) });
  t.is(receiver.received('/sync').length, sent);
});

// docs/backfill.md: "A disabled webhook's backfill pauses". The snapshots written
// before the disable (up to webhooks.backfill_outstanding) failed "not sent: the
// webhook is disabled" as they came due, and the backfill, enabled again, went on after
// them: those contacts never got their snapshot. Held, they go after the enable.
test('disabled during a backfill, then enabled: every contact arrives once, no snapshot failed', async (t) => {
  t.timeout(120_000);
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  await pool.query(`alter database ${database.name} set webhooks.backfill_batch = '100'`);
  await pool.query(`alter database ${database.name} set webhooks.backfill_outstanding = '200'`);
  await pool.query(`alter database ${database.name} set webhooks.backfill_defer = '20 milliseconds'`);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.deleted'], fields: ['first_name'], url: receiver.url('/sync') });
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  // the receiver holds its answers until the webhook is disabled
  receiver.route('/sync', { secret: hook.secret, otherwise: { status: 200, after: held } });
  const CONTACTS_HERE = 1000;
  await manyContacts(pool, company.id, CONTACTS_HERE);
  const { rows: [{ id: backfillId }] } = await pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const child = spawnRelay(database.url, { RELAY_PER_WEBHOOK_IN_FLIGHT: '4' });
  t.teardown(() => stopChild(child, 'SIGKILL'));
  await receiver.waitFor(4, { path: '/sync' });

  await pool.query('select webhooks.disable_webhook($1)', [hook.id]);
  release();
  // the relay has settled what it was sending, handed back what it held, and its
  // claims have seen every snapshot left: none due, none in flight
  const waiting = await waitForRows(pool,
    `select count(*)::int as pending,
            count(*) filter (where q.locked_by is not null or q.next_attempt_at <> 'infinity')::int as not_held
     from webhooks.delivery_queue q where q.webhook_id = $1`, [hook.id],
    (rows) => rows[0].not_held === 0, 60_000);
  t.true(waiting[0].pending > 0, 'snapshots were waiting when it was disabled');
  const { rows: failed } = await pool.query(
    `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state = 'failed'`, [hook.id]);
  t.is(failed[0].n, 0, 'none failed while disabled');
  const { rows: [paused] } = await pool.query('select state, queued from webhooks.backfills where id = $1', [backfillId]);
  t.is(paused.state, 'running');

  await pool.query('select webhooks.enable_webhook($1)', [hook.id]);
  await waitForRows(pool, 'select state from webhooks.backfills where id = $1', [backfillId], (rows) => rows[0].state === 'done', 90_000);
  await waitForRows(pool,
    `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state in ('pending', 'in_flight')`,
    [hook.id], (rows) => rows[0].n === 0, 60_000);

  const { rows: snapshots } = await pool.query(
    `select contact_id, state from webhooks.deliveries where webhook_id = $1 order by contact_id`, [hook.id]);
  t.is(snapshots.length, CONTACTS_HERE);
  t.true(snapshots.every((s) => s.state === 'succeeded'));
  const requests = receiver.received('/sync');
  t.true(requests.every((r) => r.verified));
  const contactOf = new Map<string, number>();
  for (const request of requests) contactOf.set(String(request.headers['webhook-id']), JSON.parse(request.body).data.contact.id);
  const { rows: contacts } = await pool.query('select id from crm.contacts where company_id = $1 order by id', [company.id]);
  t.deepEqual([...contactOf.values()].sort((a, b) => a - b), contacts.map((c) => Number(c.id)), 'every contact once');
});

// docs/backfill.md: "live changes keep flowing". A snapshot came due
// webhooks.backfill_defer after it was written, and the claim takes a webhook's
// earliest due first: a live change made once they were due waited behind every
// snapshot the backfill had written (up to webhooks.backfill_outstanding, 1,000), about
// 3 s at a receiver of 100 ms and 32 requests at once. A backfill now keeps no more
// of its snapshots unfinished than four times the webhook's max_in_flight.
test('a live change made while snapshots are due goes after at most four times max_in_flight of them, not the whole backfill', async (t) => {
  t.timeout(120_000);
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  await pool.query(`alter database ${database.name} set webhooks.backfill_defer = '0 seconds'`);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name', 'city'], url: receiver.url('/sync') });
  const maxInFlight = 4;
  await pool.query('update webhooks.webhooks set max_in_flight = $2 where id = $1', [hook.id, maxInFlight]);
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  // the receiver holds its answers until the live change is written
  receiver.route('/sync', { secret: hook.secret, otherwise: { status: 200, after: held } });
  await manyContacts(pool, company.id, 3000);
  const { rows: [{ id: backfillId }] } = await pool.query('select webhooks.backfill($1) as id', [hook.id]);
  // its backfiller steps once, at its start; the test steps the backfill further. The
  // receiver holds its answers until the live change is written, which a loaded machine
  // took longer to reach than the relay's request timeout (15 s): each held snapshot
  // timed out, was retried, due before the live change, and its second request went
  // ahead of it too (20 requests for 16 snapshots). The relay's requests here outlast
  // the test itself (120 s), so a hold, however long, ends only in its answer.
  const child = spawnRelay(database.url, {
    RELAY_BACKFILL_INTERVAL_MS: '3600000', RELAY_REQUEST_TIMEOUT_MS: '120000', RELAY_LEASE_MS: '125000',
  });
  t.teardown(() => stopChild(child, 'SIGKILL'));
  await receiver.waitFor(maxInFlight, { path: '/sync', timeoutMs: 60_000 });
  // every batch the pacing allows now, written and due
  const stepper = await pool.connect();
  t.teardown(() => stepper.release(true));
  await stepper.query(`set webhooks.backfill_defer = '0 seconds'`);
  while ((await stepper.query('select webhooks_relay.backfill_step(p_only => $1) as n', [backfillId])).rows[0].n > 0);
  const { rows: [{ unfinished }] } = await pool.query(
    'select webhooks.backfills_unfinished(b)::int as unfinished from webhooks.backfills b where b.id = $1', [backfillId]);

  const { rows: [moved] } = await pool.query(
    `update crm.contacts set city = 'Moved' where id = (select max(id) from crm.contacts where company_id = $1) returning id`,
    [company.id]);
  release();
  await waitForRows(pool, `select 1 from webhooks.deliveries where webhook_id = $1 and action = 'contact.updated' and state = 'succeeded'`,
    [hook.id], (rows) => rows.length === 1, 60_000);
  const requests = receiver.received('/sync');
  const live = requests.findIndex((r) => JSON.parse(r.body).type === 'contact.updated');
  t.is(JSON.parse(requests[live]!.body).data.contact.id, Number(moved.id));
  // The promise is of the queue: the live change goes behind the snapshots unfinished
  // when it was written, those due before it. The claim that takes it may take
  // snapshots due after it too (written by the step a settle ran after the release),
  // and those, sent beside it, may reach the receiver first: at most max_in_flight - 1
  // of them, as many as are in flight with it. Counted by message (webhook-id): a
  // snapshot is one however many requests carry it.
  // (first due when written, backfill_defer being 0: created_at, compared in SQL, whole)
  const { rows: written } = await pool.query<{ message_id: string; before_live: boolean }>(
    `select d.message_id, d.created_at <= (select l.created_at from webhooks.deliveries l
                                            where l.webhook_id = $1 and l.action = 'contact.updated') as before_live
     from webhooks.deliveries d where d.webhook_id = $1`, [hook.id]);
  const dueBeforeLive = new Map(written.map((d) => [d.message_id, d.before_live]));
  const first = new Set(requests.slice(0, live).map((r) => String(r.headers['webhook-id'])));
  const ahead = [...first].filter((id) => dueBeforeLive.get(id)).length;
  const beside = first.size - ahead;
  t.log(`unfinished snapshots when the live change was written: ${unfinished}; ahead of it: ${ahead}; sent beside it, arrived first: ${beside}`);
  t.true(unfinished <= 4 * maxInFlight, `${unfinished} snapshots unfinished`);
  t.true(ahead <= unfinished, `${ahead} snapshots went ahead of the live change, ${unfinished} unfinished when it was written`);
  t.true(beside <= maxInFlight - 1, `${beside} snapshots due after the live change arrived before it`);
});

// docs/backfill.md: "Paced so live deliveries keep their latency". A step writes no
// more than leaves four times max_in_flight of a backfill's snapshots unfinished, and
// the backfiller stepped on its timer alone (250 ms): a receiver that answers at once
// got 16 × max_in_flight snapshots a second, whatever it could take. The relay now
// steps again once it has settled the snapshots of a backfill that was waiting for
// room. Its timer here is an hour: the first step is at its start, every other one
// follows a settle.
test('a backfill waiting for room steps again once its snapshots are settled, not on the backfiller\'s timer', async (t) => {
  t.timeout(120_000);
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  await pool.query(`alter database ${database.name} set webhooks.backfill_defer = '0 seconds'`);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name'], url: receiver.url('/sync') });
  const maxInFlight = 2;
  await pool.query('update webhooks.webhooks set max_in_flight = $2 where id = $1', [hook.id, maxInFlight]);
  receiver.route('/sync', { secret: hook.secret });
  const contacts = 10 * 4 * maxInFlight;
  await manyContacts(pool, company.id, contacts);
  const { rows: [{ id: backfillId }] } = await pool.query('select webhooks.backfill($1) as id', [hook.id]);
  const child = spawnRelay(database.url, { RELAY_BACKFILL_INTERVAL_MS: '3600000' });
  t.teardown(() => stopChild(child, 'SIGKILL'));
  const [done] = await waitForRows(pool, 'select state, queued from webhooks.backfills where id = $1', [backfillId],
    // (a wait for the signal, not a bound on the time: a loaded run took more than 20 s)
    (rows) => rows[0].state === 'done', 60_000);
  t.like(done, { state: 'done', queued: String(contacts) });
  await receiver.waitFor(contacts, { path: '/sync', timeoutMs: 60_000 });
  const ids = new Set(receiver.received('/sync').map((r) => JSON.parse(r.body).data.contact.id));
  t.is(ids.size, contacts, 'each contact once');
});
