// The claim scheduler on its own (relay/scheduler.ts): one mode, the transitions it
// allows, and what the loop does next. No database.
import test from 'ava';
import {
  LANES_BUSY_RETRY_MAX_MS,
  LANES_BUSY_RETRY_MS,
  Scheduler,
  UNSETTLED_BATCHES_LIMIT,
  type LoopMode,
  type SchedulerView,
} from '../../relay/scheduler.ts';

function view(overrides: Partial<SchedulerView> = {}): SchedulerView {
  return { full: false, unsettled: 0, settleBatchSize: 10, refillsDue: () => [], ...overrides };
}

test('a scheduler starts new, and a kick starts a round only while waiting, full or held back', (t) => {
  const scheduler = new Scheduler();
  t.is(scheduler.mode, 'new');
  const kickable: Record<LoopMode, boolean> = {
    new: false, waiting: true, claiming: false, full: true, held_back: true, lanes_busy: false, stopping: false,
  };
  for (const mode of ['waiting', 'claiming', 'lanes_busy', 'waiting', 'claiming', 'full', 'held_back', 'stopping'] as const) {
    scheduler.setMode(mode);
    t.is(scheduler.mayStartRound(), kickable[mode], mode);
  }
});

test('setMode refuses transitions the header does not list, and reports the others', (t) => {
  const seen: string[] = [];
  const scheduler = new Scheduler({ onMode: (from, to) => seen.push(`${from}→${to}`) });
  t.throws(() => scheduler.setMode('claiming'), { message: /no transition from new to claiming/ });
  scheduler.setMode('waiting');
  scheduler.setMode('claiming');
  scheduler.setMode('claiming');
  scheduler.setMode('held_back');
  scheduler.setMode('stopping');
  t.throws(() => scheduler.setMode('waiting'), { message: /no transition from stopping to waiting/ });
  t.deepEqual(seen, ['new→waiting', 'waiting→claiming', 'claiming→held_back', 'held_back→stopping'], 'staying in a mode is no change');
});

test('full comes first, then back-pressure, then a discovery, then refills', (t) => {
  const scheduler = new Scheduler();
  scheduler.requestDiscovery();
  const refills = () => ['7'];
  const backlog = UNSETTLED_BATCHES_LIMIT * 10 + 1;
  t.deepEqual(scheduler.nextStep(view({ full: true, unsettled: backlog, refillsDue: refills })), { kind: 'rest', mode: 'full' });
  t.deepEqual(scheduler.nextStep(view({ unsettled: backlog, refillsDue: refills })), { kind: 'rest', mode: 'held_back' });
  t.true(scheduler.wantsDiscovery, 'resting keeps the discovery due');
  t.deepEqual(scheduler.nextStep(view({ refillsDue: refills })), { kind: 'discovery' });
  t.false(scheduler.wantsDiscovery, 'taking the discovery clears it');
  t.deepEqual(scheduler.nextStep(view({ refillsDue: refills })), { kind: 'refill', webhooks: ['7'] });
  t.deepEqual(scheduler.nextStep(view()), { kind: 'rest', mode: 'waiting' });
});

test('back-pressure starts above two batches of results waiting, not at', (t) => {
  const scheduler = new Scheduler();
  scheduler.requestDiscovery();
  t.deepEqual(scheduler.nextStep(view({ unsettled: UNSETTLED_BATCHES_LIMIT * 10 + 1 })), { kind: 'rest', mode: 'held_back' });
  t.deepEqual(scheduler.nextStep(view({ unsettled: UNSETTLED_BATCHES_LIMIT * 10 })), { kind: 'discovery' });
});

test('after a claim, another follows while a discovery or a refill is due, never once stopping', (t) => {
  const scheduler = new Scheduler();
  scheduler.setMode('waiting');
  scheduler.setMode('claiming');
  t.false(scheduler.moreToClaim(view()));
  t.true(scheduler.moreToClaim(view({ refillsDue: () => ['1'] })));
  scheduler.requestDiscovery();
  t.true(scheduler.moreToClaim(view()));
  scheduler.setMode('stopping');
  t.false(scheduler.moreToClaim(view({ refillsDue: () => ['1'] })));
});

test('lanes busy: a rest of 40 ms, doubled while claims keep finding them busy, up to the most; any other claim starts again', (t) => {
  const scheduler = new Scheduler();
  const waits = [];
  for (let i = 0; i < 6; i++) waits.push(scheduler.lanesBusyWait(true));
  t.deepEqual(waits, [LANES_BUSY_RETRY_MS, 80, 160, 160, 160, 160]);
  t.is(LANES_BUSY_RETRY_MS, 40);
  t.is(LANES_BUSY_RETRY_MAX_MS, 160);
  t.is(scheduler.lanesBusyWait(false), null, 'a claim that found its lanes free rests not at all');
  t.is(scheduler.lanesBusyWait(true), LANES_BUSY_RETRY_MS);
});

test('lanes busy is entered from a claim only, and left for waiting or stopping', (t) => {
  const scheduler = new Scheduler();
  scheduler.setMode('waiting');
  t.throws(() => scheduler.setMode('lanes_busy'), { message: /no transition from waiting to lanes_busy/ });
  scheduler.setMode('claiming');
  scheduler.setMode('lanes_busy');
  t.throws(() => scheduler.setMode('claiming'), { message: /no transition from lanes_busy to claiming/ });
  scheduler.setMode('waiting');
  scheduler.setMode('claiming');
  scheduler.setMode('lanes_busy');
  scheduler.setMode('stopping');
  t.is(scheduler.mode, 'stopping');
});
