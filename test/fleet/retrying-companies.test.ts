// Thousands of companies whose endpoints are dead (the breaker not yet open), each
// with a delivery waiting for its retry, beside one healthy company (issue #11). A
// discovery walks a window of the webhooks with deliveries waiting (eight times its
// batch, sql/28_lanes.sql), due or not: one that found nothing due in a full window
// claimed nothing, and the relay, finding no work, waited for its next poll before
// walking the next window. So a healthy change whose webhook lay windows away from the
// relay's place waited that many polls (1,500 companies at claims of 32: six windows,
// five seconds at the default poll of a second). A fruitless discovery whose window
// was full now says that more may be due (more_due), and the relay walks on at once,
// once round the webhooks at most.
import test from 'ava';
import { deadCompanies } from '../helpers/dead-companies.ts';
import { claimsTaking } from '../helpers/healthy-company.ts';
import { relayAsleepInProcess, relayScene, testRelay } from '../helpers/relay.ts';

const DEAD_COMPANIES = 1_500;
const BATCH = 32; // a discovery's window: 256 webhooks (discovery_window)
const WINDOWS = Math.ceil((DEAD_COMPANIES + 1) / 256);

test('a healthy change beside 1,500 companies each with a retry waiting is taken without waiting for a poll', async (t) => {
  const { database, receiver, f } = await relayScene(t);
  const { pool } = database;
  await deadCompanies(pool, DEAD_COMPANIES);
  const healthy = await f.company();
  const webhook = await f.webhook({ companyId: healthy.id, actions: ['contact.created'], url: receiver.url('/healthy') });
  receiver.route('/healthy', { secret: webhook.secret, otherwise: 200 });
  // a poll far longer than the wait below: the change is found by the discoveries its
  // NOTIFY starts, or not at all
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: '600000', RELAY_BATCH_SIZE: String(BATCH) });
  t.teardown(() => relay.stop());
  const taken = claimsTaking(relay, webhook.id);
  await relay.start();
  // asleep, its last look over: that look, a round of the lanes of its own, may be
  // under way once relay_idle is held, and a change committed during it was met by
  // the round its NOTIFY started after it (10 discoveries in a loaded run)
  await relayAsleepInProcess(relay, pool);

  const before = relay.stats.claims - relay.stats.refills;
  await f.contact(healthy.id);
  await receiver.waitFor(1, { path: '/healthy', timeoutMs: 30_000 });
  const discoveries = taken[0]!.discoveries - before;
  t.log(`discoveries from the change's commit to the claim that took it: ${discoveries} (${WINDOWS} windows)`);
  t.true(discoveries <= WINDOWS + 1, `${discoveries} discoveries`);
  const { rows: [{ waiting }] } = await pool.query(
    `select count(*)::int as waiting from webhooks.delivery_queue q join webhooks.webhooks w on w.id = q.webhook_id
     where w.name = 'Dead' and q.locked_by is null`);
  t.is(waiting, DEAD_COMPANIES, 'the dead companies\' retries still waited');
});

test('fruitless discoveries of one connection say more_due window after window until the walk comes round, then stop', async (t) => {
  const { database } = await relayScene(t);
  await deadCompanies(database.pool, DEAD_COMPANIES);
  const client = await database.pool.connect();
  t.teardown(() => client.release());
  const discover = async () => (await client.query(
    `select count(delivery_id)::int as leased, coalesce(bool_or(more_due), false) as more
     from webhooks_relay.claim_deliveries('measuring', $1, interval '60 s', 32, '{}', '{}', null, 512)`, [BATCH])).rows[0];
  // a round: discoveries up to the first that says nothing more, each its own transaction
  const round = async () => {
    const said: boolean[] = [];
    for (let i = 0; i < 4 * WINDOWS && (said.length === 0 || said.at(-1)); i++) {
      const { leased, more } = await discover();
      t.is(leased, 0);
      said.push(more);
    }
    return said;
  };
  for (const said of [await round(), await round()]) {
    t.false(said.at(-1), `the walk came round: ${said.join(' ')}`);
    t.true(said.length >= WINDOWS - 1 && said.length <= WINDOWS + 1, `${said.length} windows to come round (${WINDOWS} hold every lane)`);
  }
});

test('a sleeping relay beside 1,500 companies each with a retry waiting: a poll that walks walks the lanes once round, holding relay_idle, and asks nothing of its idle connection', async (t) => {
  const { database } = await relayScene(t);
  const { pool } = database;
  await deadCompanies(pool, DEAD_COMPANIES);
  // (the rescuer and the backfiller on the test relay's short timers: their statements,
  // on the relay's pool, no longer send a round's claims to another connection,
  // which kept no mark of the round, docs/relay-fairness.md. A poll far shorter than a
  // round: until 2026-12-07 its question whether it may skip its walk, asked beside
  // the round's claims, did the same, and the relay never fell asleep)
  const relay = testRelay(database.url, { RELAY_POLL_INTERVAL_MS: '20', RELAY_BATCH_SIZE: String(BATCH) });
  t.teardown(() => relay.stop());
  // at each time the relay falls asleep: the discoveries made and the questions its
  // idle connection was asked (going_idle(), awake()) so far
  const internals = relay as unknown as {
    wakeUp: { setPhase(phase: string): void; idle: { goingIdle(): Promise<boolean>; awake(): Promise<void> } };
  };
  const asleepAt: Array<{ discoveries: number; asked: number }> = [];
  const asked: string[] = [];
  let fellAsleep = () => {};
  const setPhase = internals.wakeUp.setPhase.bind(internals.wakeUp);
  internals.wakeUp.setPhase = (phase) => {
    if (phase === 'asleep') {
      asleepAt.push({ discoveries: relay.stats.claims - relay.stats.refills, asked: asked.length });
      fellAsleep();
    }
    setPhase(phase);
  };
  const idle = internals.wakeUp.idle;
  for (const question of ['goingIdle', 'awake'] as const) {
    const ask = (idle[question] as () => Promise<unknown>).bind(idle);
    (idle as Record<string, unknown>)[question] = () => {
      asked.push(question);
      return ask();
    };
  }
  await relay.start();
  await relayAsleepInProcess(relay, pool);
  const firstAsleep = asleepAt.length;
  await new Promise<void>((resolve) => {
    fellAsleep = () => asleepAt.length >= firstAsleep + 4 && resolve();
  });
  // from one sleep to the next: a poll's look (or a wake-up's discovery and last look)
  const between = asleepAt.slice(firstAsleep - 1).map((at, i, all) => i === 0 ? null : {
    discoveries: at.discoveries - all[i - 1]!.discoveries, asked: at.asked - all[i - 1]!.asked,
  }).slice(1) as Array<{ discoveries: number; asked: number }>;
  t.log(`discoveries, questions from one sleep to the next: ${between.map((b) => `${b.discoveries}, ${b.asked}`).join('; ')} (${WINDOWS} windows)`);
  // a poll's: one round, and relay_idle neither given back nor taken again (two rounds
  // and two questions, a discovery awake and the last look, until 2026-12-07). Not
  // every one: something else may wake the relay between (a reconnect). (Until
  // 2026-12-07 a claim of a round sent to another of the pool's connections also
  // walked on past the round's start: 18 for a round of six in a loaded run;
  // test/relay/claim-connection.test.ts)
  t.true(between.some((b) => b.discoveries <= WINDOWS + 1 && b.asked === 0), 'a poll\'s look: one round, no question');
});
