// A sleeping relay's poll skips its walk of the lanes while nothing can have become
// sendable since the last round of discoveries that found nothing (relay/quiet.ts,
// docs/relay.md "Quiet polls"): counted in discoveries and in polls, not in time.
import test, { type ExecutionContext } from 'ava';
import type pg from 'pg';
import pino from 'pino';
import { QUIET_POLLS_MAX } from '../../relay/quiet.ts';
import type { Relay } from '../../relay/loop.ts';
import type { TestDatabase } from '../helpers/db.ts';
import { deadCompanies } from '../helpers/dead-companies.ts';
import { gatedReplies } from '../helpers/receiver.ts';
import { relayAsleepInProcess, relayScene, testRelay, waitForRows } from '../helpers/relay.ts';
import { prepareTransaction, rollBackPrepared, transactionName, twoPhaseTest } from '../helpers/two-phase.ts';
import { until } from '../helpers/until.ts';

const BATCH = 32; // a discovery's window: 256 webhooks (discovery_window)

/** A delivery of `webhookId` through the view, due `dueIn` from now (an interval); returns when it is due (epoch ms). */
async function deliveryDueIn(pool: Pick<pg.Pool, 'query'>, webhookId: string, dueIn: string): Promise<number> {
  const { rows } = await pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, next_attempt_at)
     select w.id, w.company_id, 'contact.created', 1, '{"id": 1}', now() + $2::interval
     from webhooks.webhooks w where w.id = $1
     returning (extract(epoch from next_attempt_at) * 1000)::float8 as due`, [webhookId, dueIn]);
  return rows[0].due;
}

/** The discoveries the relay has made. */
const discoveries = (relay: Relay) => relay.stats.claims - relay.stats.refills;

/** Each poll's answer, in order: true, it skipped its walk; `askedAt`, when each was asked (epoch ms). */
function pollAnswers(relay: Relay, discoveriesAt: number[] = [], askedAt: number[] = []): boolean[] {
  const answers: boolean[] = [];
  const ask = relay.quiet.maySkip.bind(relay.quiet);
  relay.quiet.maySkip = async (check) => {
    const asked = Date.now();
    const skip = await ask(check);
    answers.push(skip);
    discoveriesAt.push(discoveries(relay));
    askedAt.push(asked);
    return skip;
  };
  return answers;
}

/**
 * A relay in this process with claims of BATCH and the poll `pollMs`, asleep, its
 * polls' answers recorded (pollAnswers); `skipping`: once a poll has skipped its walk.
 */
async function sleepingRelay(
  t: ExecutionContext, database: TestDatabase, { pollMs, skipping = false }: { pollMs: number; skipping?: boolean },
) {
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: String(pollMs), RELAY_BATCH_SIZE: String(BATCH) });
  t.teardown(() => relay.stop());
  const askedAt: number[] = [];
  const answers = pollAnswers(relay, [], askedAt);
  await relay.start();
  await relayAsleepInProcess(relay, database.pool);
  if (skipping) await until('a poll skipped', async () => answers.some(Boolean));
  return { relay, answers, askedAt };
}

/** The longest run of polls in a row that skipped their walk. */
const longestSkipRun = (answers: boolean[]) =>
  answers.reduce(([longest, run], skip) => (skip ? [Math.max(longest, run + 1), run + 1] : [longest, 0]), [0, 0])[0]!;

test('asleep beside 1,500 companies each with a retry an hour away: polls walk nothing, then one round every QUIET_POLLS_MAX + 1 polls', async (t) => {
  const { database } = await relayScene(t);
  await deadCompanies(database.pool, 1_500);
  const windows = Math.ceil(1_500 / 256);
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: '200', RELAY_BATCH_SIZE: String(BATCH) });
  t.teardown(() => relay.stop());
  // each poll's answer, and the discoveries made by then
  const discoveriesAt: number[] = [];
  const answers = pollAnswers(relay, discoveriesAt);
  await relay.start();
  await relayAsleepInProcess(relay, database.pool);
  // a run of skips to the bound, the walk after it, and a skip after that: counted
  // where it comes (a wake-up of another kind, a loaded machine's, may come between)
  const bounded = () => {
    const polls = answers.map((skip) => (skip ? '.' : 'W')).join('');
    const at = polls.indexOf('.'.repeat(QUIET_POLLS_MAX) + 'W.');
    return at < 0 ? null : at;
  };
  await until('a run of skipped polls to its bound, the walk after it and a skip', async () => bounded() !== null, 30_000);
  const start = bounded()!;
  const walk = start + QUIET_POLLS_MAX;
  t.log(`polls: ${answers.map((skip) => (skip ? '.' : 'W')).join('')}; discoveries at each: ${discoveriesAt.join(' ')}`);
  t.is(discoveriesAt[walk - 1]! - discoveriesAt[start]!, 0, 'the polls skipped walked nothing');
  const round = discoveriesAt[walk + 1]! - discoveriesAt[walk]!;
  t.true(round >= windows - 1 && round <= windows + 1, `${round} discoveries for the round after the bound (${windows} windows)`);
});

/**
 * The polls answered from `from` to `to` (when it was sent), those asked at `writtenAt`
 * or after (the lane's delivery committed by then), against `dueAt`, when its lane may send (the
 * database's clock, this machine's): polls skipped while it could not send, and none
 * asked once it could (poll_may_skip compares the database's clock then with the
 * earliest time the round's lanes may send), so that it is sent by the first poll
 * after, not by the bound.
 */
function skippedUntilDue(t: ExecutionContext, answers: boolean[], askedAt: number[], [from, to]: [number, number],
                         writtenAt: number, dueAt: number) {
  const polls = answers.slice(from, to).map((skip, i) => ({ skip, asked: askedAt[from + i]! })).filter(({ asked }) => asked >= writtenAt);
  t.log(`polls: ${answers.map((skip) => (skip ? '.' : 'W')).join('')} (from ${from}); those asked after the write, ms from when due: ` +
    polls.map(({ skip, asked }) => `${skip ? '.' : 'W'}${Math.round(asked - dueAt)}`).join(' '));
  t.true(polls.some(({ skip, asked }) => skip && asked < dueAt), 'polls skipped before it fell due');
  t.deepEqual(polls.filter(({ skip, asked }) => skip && asked >= dueAt).map(({ asked }) => asked - dueAt), [],
    'no poll asked once it was due skipped its walk');
  t.true(longestSkipRun(polls.map(({ skip }) => skip)) < QUIET_POLLS_MAX, 'no run of skips reached the bound');
}

// The delivery is written once the relay sleeps and skips: written before its start,
// due in 3 s, it was due before a loaded machine's relay had started and fallen asleep,
// and no poll had skipped. Written later, its commit wakes the relay (were it not, the
// poll after it would walk: the id moved), and that round sees the lane and when it
// may send. FALL_DUE_S after the write leaves a loaded machine's relay seconds to fall
// asleep again and skip, and holds at most 8 polls of 500 ms, short of QUIET_POLLS_MAX:
// a send at the bound cannot pass for one at the due time.
const FALL_DUE_S = 4;

test('a retry falling due ends the skipping: it is sent by a poll soon after, not by the bound', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await deadCompanies(database.pool, 300);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/due') });
  receiver.route('/due', { secret: webhook.secret, otherwise: 200 });
  const { answers, askedAt } = await sleepingRelay(t, database, { pollMs: 500, skipping: true });
  const from = answers.length;
  const dueAt = await deliveryDueIn(database.pool, webhook.id, `${FALL_DUE_S} seconds`);
  const writtenAt = Date.now();
  await receiver.waitFor(1, { path: '/due', timeoutMs: 15_000 });
  skippedUntilDue(t, answers, askedAt, [from, answers.length], writtenAt, dueAt);
});

test('a breaker\'s wait ending ends the skipping: its probe is sent by a poll soon after, not by the bound', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await deadCompanies(database.pool, 300);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/open') });
  receiver.route('/open', { secret: webhook.secret, otherwise: 200 });
  const { answers, askedAt } = await sleepingRelay(t, database, { pollMs: 500, skipping: true });
  const from = answers.length;
  // its breaker opened and a delivery due now, in one transaction (its commit wakes the relay)
  const writer = await database.pool.connect();
  t.teardown(() => writer.release());
  await writer.query('begin');
  const { rows } = await writer.query(
    `update webhooks_private.lanes set failures = 5, failing_since = now() - interval '1 minute',
       open_until = now() + $2::interval where webhook_id = $1
     returning (extract(epoch from open_until) * 1000)::float8 as open_until`, [webhook.id, `${FALL_DUE_S} seconds`]);
  t.is(rows.length, 1);
  await deliveryDueIn(writer, webhook.id, '0 seconds');
  await writer.query('commit');
  const writtenAt = Date.now();
  const openUntil: number = rows[0].open_until;
  const [probe] = await receiver.waitFor(1, { path: '/open', timeoutMs: 15_000 });
  const to = answers.length;
  t.true(probe!.receivedAt >= openUntil, `held by its breaker: sent ${Math.round(probe!.receivedAt - openUntil)} ms from its wait's end`);
  skippedUntilDue(t, answers, askedAt, [from, to], writtenAt, openUntil);
});

test('a delivery id taken with no NOTIFY (a writer past the view, into the tables) ends the skipping: the next poll walks', async (t) => {
  const { database } = await relayScene(t);
  await deadCompanies(database.pool, 300);
  const { relay, answers } = await sleepingRelay(t, database, { pollMs: 300, skipping: true });
  const written = answers.length;
  const before = discoveries(relay);
  await database.pool.query(`select nextval(pg_get_serial_sequence('webhooks.delivery_history', 'id'))`);
  // (the first answer after it may be one asked before it)
  await until('two polls', async () => answers.length >= written + 2);
  t.log(`polls: ${answers.map((skip) => (skip ? '.' : 'W')).join('')}`);
  t.true(answers.slice(written, written + 2).includes(false), 'a poll after the id was taken walked');
  await until('its walk', async () => discoveries(relay) > before);
  t.pass();
});

const twoPhase = twoPhaseTest(test);

twoPhase('a two-phase capture prepared before a round and committed after it: the next poll walks and sends it', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  t.teardown(async () => void (await rollBackPrepared(database.url)));
  await deadCompanies(database.pool, 300);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret, otherwise: 200 });
  const { relay, answers } = await sleepingRelay(t, database, { pollMs: 200, skipping: true });
  const name = transactionName();
  await prepareTransaction(database.pool, name, 'set local webhooks.two_phase = on',
    (client) => client.query('insert into crm.contacts (company_id) values ($1)', [company.id]));
  // a whole round walked while it stays prepared (its delivery not yet visible), and
  // a poll after that round
  // (the first answer after it may be one asked before it)
  const prepared = answers.length + 1;
  await until('two polls while prepared', async () => answers.length >= prepared + 2);
  t.deepEqual(answers.slice(prepared, prepared + 2), [false, false], 'capturing held: the polls walked');
  const committed = answers.length;
  await database.pool.query(`commit prepared '${name}'`);
  await receiver.waitFor(1, { path: '/hook', timeoutMs: 15_000 });
  const skipped = answers.slice(committed).filter(Boolean).length;
  t.log(`polls: ${answers.map((skip) => (skip ? '.' : 'W')).join('')}`);
  // (one asked before the commit may answer after it)
  t.true(skipped <= 1, `${skipped} polls skipped between the commit and the delivery`);
});

test('an ordered webhook made unordered while the relay sleeps: its deliveries put off behind a retry go at once, not at the bound', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/freed') });
  receiver.route('/freed', { secret: webhook.secret, otherwise: 200 });
  await database.pool.query('update webhooks.webhooks set ordered = true where id = $1', [webhook.id]);
  // the contact's first delivery waits for its retry, an hour away; its second, due,
  // is held back behind it (put off by the first claim, until that retry)
  await database.pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, attempts, next_attempt_at)
     values ($1, $2, 'contact.created', 7, '{"id": 7}', 1, now() + interval '1 hour')`, [webhook.id, company.id]);
  await deliveryDueIn(database.pool, webhook.id, '0 seconds');
  await database.pool.query(`update webhooks.deliveries set contact_id = 7 where webhook_id = $1`, [webhook.id]);
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: '300' });
  t.teardown(() => relay.stop());
  const answers = pollAnswers(relay);
  await relay.start();
  await relayAsleepInProcess(relay, database.pool);
  await until('a poll skipped', async () => answers.some(Boolean));
  t.is(receiver.received('/freed').length, 0, 'held back');
  const freed = answers.length;
  await database.pool.query('update webhooks.webhooks set ordered = false where id = $1', [webhook.id]);
  await receiver.waitFor(1, { path: '/freed', timeoutMs: 15_000 });
  t.log(`polls: ${answers.map((skip) => (skip ? '.' : 'W')).join('')}`);
  // (one asked before the update may answer after it)
  t.true(answers.slice(freed).filter(Boolean).length <= 1, 'no poll skipped between the update and the delivery');
});

test('a delivery written through the view, due later, in a transaction open across a round: the relay is woken at its commit, not left to the bound', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await deadCompanies(database.pool, 300);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/open') });
  receiver.route('/open', { secret: webhook.secret, otherwise: 200 });
  const { relay, answers } = await sleepingRelay(t, database, { pollMs: 300, skipping: true });
  const writer = await database.pool.connect();
  t.teardown(() => writer.release());
  await writer.query('begin');
  // its id taken now, its row seen by no round until it commits
  await deliveryDueIn(writer as unknown as pg.Pool, webhook.id, '1 second');
  const written = answers.length;
  await until('a round walked and a poll after it', async () => answers.length >= written + 3);
  await writer.query('commit');
  const committed = answers.length;
  await receiver.waitFor(1, { path: '/open', timeoutMs: 15_000 });
  t.log(`polls: ${answers.map((skip) => (skip ? '.' : 'W')).join('')}`);
  // (one asked before the commit may answer after it, and one come before it fell due)
  const skipped = answers.slice(committed).filter(Boolean).length;
  t.true(skipped <= 2, `${skipped} polls skipped between the commit and the delivery`);
});

test('deliveries a stopping relay hands back, unsent, wake the sleeping relays: sent by one at once, not at the bound', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  const { replies, opens } = gatedReplies(2);
  receiver.route('/hook', { secret: webhook.secret, replies });
  for (let i = 0; i < 5; i++) await f.contact(company.id);
  // the polls the sleeping one had answered when the stopping one's release was
  // committed: its log line, written on the release's answer
  let answers: boolean[] = [];
  let atRelease: number | null = null;
  const log = pino({ level: 'info' }, {
    write(line: string) {
      const { msg, why } = JSON.parse(line) as { msg: string; why?: string };
      if (msg === 'released deliveries claimed but not sent' && why === 'stopping') atRelease ??= answers.length;
    },
  });
  // the stopping one: two requests held at the receiver, two more queued behind them
  const stopping = testRelay(database.url, { RELAY_ID: 'relay-stopping', RELAY_PER_WEBHOOK_IN_FLIGHT: '2', RELAY_PREFETCH: '2' }, { log });
  t.teardown(() => stopping.stop());
  await stopping.start();
  await receiver.waitFor(2, { path: '/hook' });
  await waitForRows(database.pool, `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state = 'in_flight'`,
    [webhook.id], (rows) => rows[0].n === 4);
  // the sleeping one: takes the fifth, then nothing it may take, so its polls skip
  const sleeping = testRelay(database.url, { RELAY_ID: 'relay-sleeping', RELAY_POLL_INTERVAL_MS: '200' });
  t.teardown(() => sleeping.stop());
  answers = pollAnswers(sleeping);
  await sleeping.start();
  await receiver.waitFor(3, { path: '/hook' });
  await relayAsleepInProcess(sleeping, database.pool);
  await until('a poll that skipped its walk', async () => answers.includes(true));
  const stopped = stopping.stop();
  for (const open of opens) open();
  await stopped;
  t.is(stopping.stats.released, 2);
  await receiver.waitFor(5, { path: '/hook', timeoutMs: 30_000 });
  t.log(`polls: ${answers.map((skip) => (skip ? '.' : 'W')).join('')} (the release after ${atRelease})`);
  // Counted from the release's commit, not from the call to stop(): the stop first
  // closes its listener and waits for its claim round, and a loaded machine's polls
  // meanwhile skipped (nothing had been handed back yet). One poll asked before the
  // commit may answer after it (a poll asks once its last question is answered).
  t.not(atRelease, null, 'released');
  const skipped = answers.slice(atRelease!).filter(Boolean).length;
  t.true(skipped <= 1, `${skipped} polls skipped once they were handed back`);
  t.is(sleeping.stats.claimed, 3);
});

/**
 * Polls answered from `from` until `sent` resolves: the first walk after `from` must
 * send it, within the bound (QUIET_POLLS_MAX skips; one answer asked before `from` may
 * come after it). Returns the answers after `from`, as '.' (skipped) and 'W'.
 */
async function pollsUntilSent(t: ExecutionContext, answers: boolean[], from: number, sent: Promise<unknown>): Promise<string> {
  await sent;
  const after = answers.slice(from);
  t.log(`polls: ${answers.map((skip) => (skip ? '.' : 'W')).join('')} (from ${from})`);
  t.true(after.length <= QUIET_POLLS_MAX + 2, `${after.length} polls before it was sent: past the bound`);
  return after.map((skip) => (skip ? '.' : 'W')).join('');
}

// What none of the quiet polls' checks sees is sent by the bound: a walk at least every
// QUIET_POLLS_MAX + 1 polls (docs/relay.md, "Quiet polls"). A DBA's update of the queue
// table itself (not through webhooks.deliveries: no trigger, no NOTIFY, no new id)
// making a retry an hour away due now:
test('a DBA\'s update of the queue table making a delivery due now, no NOTIFY: sent by a poll within the bound', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await deadCompanies(database.pool, 300);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/by-hand') });
  receiver.route('/by-hand', { secret: webhook.secret, otherwise: 200 });
  await deliveryDueIn(database.pool, webhook.id, '1 hour');
  const { answers } = await sleepingRelay(t, database, { pollMs: 300, skipping: true });
  t.is(receiver.received('/by-hand').length, 0, 'an hour away');
  const { rowCount } = await database.pool.query(
    'update webhooks.delivery_queue set next_attempt_at = now() where webhook_id = $1 and locked_by is null', [webhook.id]);
  t.is(rowCount, 1);
  const from = answers.length;
  await pollsUntilSent(t, answers, from, receiver.waitFor(1, { path: '/by-hand', timeoutMs: 30_000 }));
  await waitForRows(database.pool, 'select state, attempts from webhooks.deliveries where webhook_id = $1', [webhook.id],
    (rows) => rows.length === 1 && rows[0].state === 'succeeded' && rows[0].attempts === 1);
  t.pass();
});

// A relay that wrote a retry and died before sending it again: its settle wakes no one
// (a living relay sends its own retry when due), and the sleeping relay's last round
// did not walk that webhook (its delivery was in flight). The bound sends it.
test('a retry written by a relay that died right after: a sleeping relay sends it within the bound', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  await deadCompanies(database.pool, 300);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/orphan') });
  receiver.route('/orphan', { secret: webhook.secret, otherwise: 200 });
  await deliveryDueIn(database.pool, webhook.id, '0 seconds');
  // the relay that dies: it claims (a lease of ten minutes: no rescue meanwhile) …
  const { rows: claimed } = await database.pool.query(
    `select delivery_id from webhooks_relay.claim_deliveries('relay-dead', 10, interval '10 minutes', 10,
       '{}'::bigint[], '{}'::integer[], array[$1::bigint])`, [webhook.id]);
  t.is(claimed.length, 1);
  const { answers } = await sleepingRelay(t, database, { pollMs: 300, skipping: true });
  // … and writes the attempt, failed, retried after the schedule's first wait (20 ms, as
  // the relays' connections have it: the pool's were opened before that setting)
  const dying = await database.pool.connect();
  t.teardown(() => dying.release());
  await dying.query(`begin; set local webhooks.retry_base = '20 milliseconds'`);
  const { rows: settled } = await dying.query(
    `select state, next_attempt_at from webhooks_relay.settle_deliveries('relay-dead', $1::bigint[], '{1}', $2::timestamptz[],
       '{5}', '{503}', '{null}', '{busy}', '{null}')`, [[claimed[0].delivery_id], [new Date()]]);
  await dying.query('commit');
  t.is(settled[0].state, 'pending');
  await until('the retry due', async () =>
    (await database.pool.query('select now() >= $1::timestamptz as due', [settled[0].next_attempt_at])).rows[0].due);
  const from = answers.length;
  await pollsUntilSent(t, answers, from, receiver.waitFor(1, { path: '/orphan', timeoutMs: 30_000 }));
  await waitForRows(database.pool, 'select state, attempts from webhooks.deliveries where webhook_id = $1', [webhook.id],
    (rows) => rows.length === 1 && rows[0].state === 'succeeded' && rows[0].attempts === 2);
  t.pass();
});
