// A backfill of 200,000 contacts against a real relay: its steps stay small (no more
// snapshots unfinished than the pacing allows), a writer updating the contacts just
// ahead of the walk is not held, another company's deliveries stay prompt, progress
// shows through the API as it goes, a relay killed mid-way is resumed by the next one
// with no contact skipped or written twice, and a cancel stops it.
import test from 'ava';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import pg from 'pg';
import { startTestApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { spawnRelay, relayScene, waitForRows } from '../helpers/relay.ts';

const CONTACTS = 200_000;

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

test('200,000 contacts on an ordered webhook: bounded steps, a writer ahead of the walk not held, another company prompt, progress through the API, resumed after SIGKILL, cancelled', async (t) => {
  t.timeout(600_000);
  const { database, receiver, f, company } = await relayScene(t);
  const pool = database.pool;
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name', 'city'], url: receiver.url('/sync') });
  receiver.route('/sync', { secret: hook.secret });
  await pool.query(`select webhooks.set_webhook_delivery($1, null, true)`, [hook.id]);
  const other = await f.company();
  const otherHook = await f.webhook({ companyId: other.id, actions: ['contact.created'], fields: ['first_name'], url: receiver.url('/other') });
  receiver.route('/other', { secret: otherHook.secret });

  await pool.query('alter table crm.contacts disable trigger "!webhooks_created"');
  await pool.query(
    `insert into crm.contacts (company_id, first_name, last_name, email, city)
     select $1, 'Contact ' || i, 'Backfilled', 'c' || i || '@example.com', 'City ' || i
     from generate_series(1, $2) i`, [company.id, CONTACTS]);
  await pool.query('alter table crm.contacts enable trigger "!webhooks_created"');
  await pool.query('analyze crm.contacts');

  const api = await startTestApi(database.url);
  t.teardown(() => api.stop());
  const token = await api.token(company.id);
  const started = await api.gql(token, 'mutation($id: BigInt!) { startBackfill(input: { webhookId: $id }) { result } }', { id: hook.id });
  t.falsy(started.errors);
  const backfillId: string = started.data.startBackfill.result;

  const relays: ChildProcess[] = [];
  t.teardown(() => Promise.all(relays.map((r) => stopChild(r, 'SIGKILL'))));
  const relay = () => {
    const child = spawnRelay(database.url, { RELAY_LEASE_MS: '20000', RELAY_REQUEST_TIMEOUT_MS: '5000' });
    relays.push(child);
    return child;
  };

  // meanwhile: a writer updating contacts just ahead of the walk, another company's
  // creates, and the progress the API shows, until told to stop
  let running = true;
  const writer = new pg.Client({ connectionString: database.url });
  await writer.connect();
  t.teardown(() => writer.end());
  const writes: number[] = [];
  const written = new Set<string>();
  const writing = (async () => {
    for (let n = 0; running; n++) {
      const { rows: [b] } = await writer.query('select position from webhooks.backfills where id = $1', [backfillId]);
      const start = performance.now();
      const { rows } = await writer.query(
        `update crm.contacts set city = 'Written ' || $3 where id = (
           select id from crm.contacts where company_id = $1 and id > coalesce($2::bigint, 0) order by id offset ($3 % 40) limit 1)
         returning id`, [company.id, b?.position ?? null, n]);
      writes.push(performance.now() - start);
      if (rows[0]) written.add(String(rows[0].id));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  const otherF = factories(pool);
  const latencies: number[] = [];
  const othering = (async () => {
    while (running) {
      const before = Date.now();
      const contact = await otherF.contact(other.id, { first_name: 'Prompt' });
      const deadline = Date.now() + 30_000;
      let arrived: number | undefined;
      while (arrived === undefined && Date.now() < deadline) {
        const hit = receiver.received('/other').find((r) => JSON.parse(r.body).data.contact.id === Number(contact.id));
        if (hit) arrived = hit.receivedAt;
        else await new Promise((resolve) => setTimeout(resolve, 10));
      }
      latencies.push((arrived ?? Infinity) - before);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  const progressSeen: number[] = [];
  const unfinishedSeen: number[] = [];
  const watching = (async () => {
    while (running) {
      const answer = await api.gql(token, 'query($id: BigInt!) { backfillById(id: $id) { state total queued unfinished } }', { id: backfillId });
      if (answer.errors) throw new Error(JSON.stringify(answer.errors));
      const b = answer.data.backfillById;
      if (b.state === 'running') progressSeen.push(Number(b.queued));
      const { rows: [u] } = await pool.query(
        `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and action = 'contact.snapshot' and state in ('pending', 'in_flight')`, [hook.id]);
      unfinishedSeen.push(u.n);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  })();

  try {
    const first = relay();
    await receiver.waitFor(5_000, { path: '/sync', timeoutMs: 240_000 });
    await stopChild(first, 'SIGKILL');
    relay();
    await receiver.waitFor(10_000, { path: '/sync', timeoutMs: 240_000 });
    const cancelled = await api.gql(token, 'mutation($id: BigInt!) { cancelBackfill(input: { id: $id }) { result { state queued } } }', { id: backfillId });
    t.falsy(cancelled.errors);
    t.is(cancelled.data.cancelBackfill.result.state, 'cancelled');
  } finally {
    running = false;
    await Promise.allSettled([writing, othering, watching]);
  }
  await Promise.all([writing, othering, watching]);

  await waitForRows(pool,
    `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state in ('pending', 'in_flight')`,
    [hook.id], (rows) => rows[0].n === 0, 120_000);
  const { rows: [b] } = await pool.query('select state, queued, position from webhooks.backfills where id = $1', [backfillId]);
  t.is(b.state, 'cancelled');
  {
    const max = (xs: number[]) => xs.reduce((a, x) => Math.max(a, x), 0);
    const p = (xs: number[], q: number) => [...xs].sort((a, x) => a - x)[Math.floor(xs.length * q)] ?? 0;
    t.log(`writer: ${writes.length} updates, median ${p(writes, 0.5).toFixed(1)} ms, p99 ${p(writes, 0.99).toFixed(1)} ms, max ${max(writes).toFixed(1)} ms`);
    t.log(`other company: ${latencies.length} creates, median ${p(latencies, 0.5).toFixed(0)} ms, max ${max(latencies).toFixed(0)} ms`);
    t.log(`unfinished snapshots: max ${max(unfinishedSeen)}; progress readings ${progressSeen.length}, queued ${b.queued}, position ${b.position}`);
  }

  // every contact the walk passed has one snapshot, none twice, none ahead of it
  const { rows: [walk] } = await pool.query(
    `select count(*)::int as passed,
            (select count(*)::int from webhooks.deliveries where webhook_id = $2 and action = 'contact.snapshot') as snapshots,
            (select count(distinct contact_id)::int from webhooks.deliveries where webhook_id = $2 and action = 'contact.snapshot') as contacts,
            (select count(*)::int from webhooks.deliveries where webhook_id = $2 and action = 'contact.snapshot' and contact_id > $3) as ahead
     from crm.contacts where company_id = $1 and id <= $3`, [company.id, hook.id, b.position]);
  t.deepEqual(walk, { passed: Number(b.queued), snapshots: Number(b.queued), contacts: Number(b.queued), ahead: 0 });
  // (the receiver's 10,000 counted the writer's updates and a killed relay's repeats too)
  t.true(Number(b.queued) >= 5_000 && Number(b.queued) < CONTACTS, `queued ${b.queued}`);
  const { rows: ends } = await pool.query(
    `select state, last_error, count(*)::int as n from webhooks.deliveries where webhook_id = $1 and action = 'contact.snapshot' group by 1, 2 order by 1, 2`, [hook.id]);
  // (a snapshot the killed relay held, its lease run out after the cancel, is failed by
  // the rescue with the cancel named: it may have reached the receiver, and is not sent again)
  const cancelledEnds = [`not sent: backfill ${backfillId} was cancelled`, /^lease expired: the relay did not settle attempt \d+; not tried again: its backfill was cancelled$/];
  t.true(ends.every((e) => e.state === 'succeeded'
    || (e.state === 'failed' && cancelledEnds.some((m) => typeof m === 'string' ? e.last_error === m : m.test(e.last_error)))), JSON.stringify(ends));

  // each contact's messages arrived in the order of its deliveries (the receiver's
  // last arrival of each message, retries and a killed relay's repeats aside)
  const { rows: deliveries } = await pool.query(
    `select id, message_id, contact_id from webhooks.deliveries where webhook_id = $1 and state = 'succeeded' and contact_id = any ($2::bigint[]) order by id`,
    [hook.id, [...written]]);
  const lastArrival = new Map<string, number>();
  for (const r of receiver.received('/sync')) lastArrival.set(String(r.headers['webhook-id']), r.index);
  const byContact = new Map<string, number[]>();
  for (const d of deliveries) byContact.set(d.contact_id, [...(byContact.get(d.contact_id) ?? []), lastArrival.get(d.message_id)!]);
  const outOfOrder = [...byContact].filter(([, order]) => order.some((x, i) => i > 0 && x < order[i - 1]!));
  t.deepEqual(outOfOrder, []);

  const max = (xs: number[]) => xs.reduce((a, x) => Math.max(a, x), 0);
  t.true(progressSeen.length > 10 && progressSeen.every((q, i) => i === 0 || q >= progressSeen[i - 1]!), 'progress seen growing');
  t.true(max(unfinishedSeen) <= 4 * 32, 'no more snapshots unfinished than four times max_in_flight');
  // (measured on the shared two-core machine: the writer 2.3 to 2.6 ms median, 0.72 to 0.83 s at most,
  // waiting for a step's commit; the other company 33 to 36 ms median, 3.1 to 4.8 s at most, the
  // relay's restart after the SIGKILL among them)
  const median = (xs: number[]) => [...xs].sort((a, x) => a - x)[Math.floor(xs.length / 2)] ?? 0;
  // (bounds wide enough for a machine running the whole suite beside it: what they
  // catch is a writer or another company held for a step's whole walk, not a slow second)
  t.true(max(writes) < 10_000, `the writer waited ${max(writes).toFixed(0)} ms`);
  t.true(median(latencies) < 2_000 && max(latencies) < 30_000, `another company waited ${median(latencies).toFixed(0)} ms (median), ${max(latencies).toFixed(0)} ms (most)`);
});
