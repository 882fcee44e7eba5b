// The wake-up protocol's phases on their own (relay/wakeup.ts): how soon an awake relay
// looks again after each kind of discovery, and how it goes idle. No database: the
// idle connection is a stand-in that records what it was asked.
import test from 'ava';
import pino from 'pino';
import { LINGER_MS, RECHECK_CAP_MS, TRICKLE_BELOW, WakeUp } from '../../relay/wakeup.ts';

/**
 * A WakeUp whose idle connection records what it is asked; going_idle() answers
 * `safe` at once, or, with `answerLater`, when the test calls `answer`.
 */
function setup(options: { safe?: boolean; answerLater?: boolean; capturesDone?: boolean } = {}) {
  const asked: string[] = [];
  let woken = 0;
  // relay_idle's holds, as the idle connection counts them (idle.ts `holding`)
  let held = 0;
  let lost = false;
  let onWake: () => void = () => {};
  let answerLatest: (safe: boolean) => void = () => {};
  const wakeUp = new WakeUp({
    idle: {
      goingIdle: async () => {
        asked.push('goingIdle');
        held++;
        if (options.answerLater) return new Promise<boolean>((resolve) => (answerLatest = resolve));
        return options.safe ?? true;
      },
      capturesDone: async () => {
        asked.push('capturesDone');
        return options.capturesDone ?? true;
      },
      awake: async () => {
        asked.push('awake');
        held = 0;
      },
      get holding() {
        return held > 0 && !lost;
      },
      close: async () => {},
    },
    log: pino({ level: 'silent' }),
    wake: () => {
      woken++;
      onWake();
    },
  });
  const nextWake = () => new Promise<void>((resolve) => (onWake = resolve));
  return {
    wakeUp, asked, woken: () => woken, nextWake, answer: (safe: boolean) => answerLatest(safe),
    /** the idle connection is lost, and relay_idle with it */
    lose: () => (lost = true),
  };
}

test('a full batch, or a few deliveries or more: the next discovery at once, still awake', async (t) => {
  const { wakeUp, asked } = setup();
  t.true(await wakeUp.afterDiscovery({ deliveries: 1, full: true }, false));
  t.is(wakeUp.phase, 'awake');
  t.true(await wakeUp.afterDiscovery({ deliveries: TRICKLE_BELOW, full: false }, false));
  t.is(wakeUp.phase, 'awake');
  t.deepEqual(asked, [], 'no announcement: captures still need not notify');
  await wakeUp.close();
});

test('a trickle: no discovery at once, one by itself LINGER_MS later, and captures still need not notify', async (t) => {
  const { wakeUp, asked, woken, nextWake } = setup();
  const started = performance.now();
  const woke = nextWake();
  t.false(await wakeUp.afterDiscovery({ deliveries: TRICKLE_BELOW - 1, full: false }, false));
  t.is(wakeUp.phase, 'lingering');
  await woke;
  t.true(performance.now() - started >= LINGER_MS - 1, 'not before the linger is over');
  t.is(woken(), 1);
  t.deepEqual(asked, [], 'relay_idle never taken');
  wakeUp.beforeDiscovery();
  t.is(wakeUp.phase, 'awake');
  await wakeUp.close();
});

test('a discovery sooner than the linger (a finished request, the poll timer) ends it: no second wake', async (t) => {
  const { wakeUp, woken } = setup();
  t.false(await wakeUp.afterDiscovery({ deliveries: 1, full: false }, false));
  wakeUp.beforeDiscovery();
  t.is(wakeUp.phase, 'awake');
  await new Promise((resolve) => setTimeout(resolve, LINGER_MS * 4));
  t.is(woken(), 0);
  await wakeUp.close();
});

test('nothing found: going idle, one last look once going_idle() answers, then asleep', async (t) => {
  const { wakeUp, asked, woken, nextWake } = setup();
  const woke = nextWake();
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false), 'the loop does not wait for the answer');
  await woke;
  t.is(wakeUp.phase, 'last_look', 'the answer asks for the last look');
  t.is(woken(), 1);
  wakeUp.beforeDiscovery();
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  t.is(wakeUp.phase, 'asleep');
  t.deepEqual(asked, ['goingIdle']);
  await wakeUp.close();
});

test('nothing found right after finding work: one more look LINGER_MS later, and only then going idle', async (t) => {
  const { wakeUp, asked, woken, nextWake } = setup();
  t.true(await wakeUp.afterDiscovery({ deliveries: TRICKLE_BELOW, full: false }, false));
  wakeUp.beforeDiscovery();
  const started = performance.now();
  const woke = nextWake();
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false), 'no discovery at once');
  t.is(wakeUp.phase, 'lingering');
  t.false(asked.includes('goingIdle'), 'not announced: captures still need not notify');
  await woke;
  t.true(performance.now() - started >= LINGER_MS - 1, 'not before the linger is over');
  wakeUp.beforeDiscovery();
  // the look again finds nothing too: now the relay goes idle
  const lastLook = nextWake();
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  await lastLook;
  t.is(wakeUp.phase, 'last_look');
  t.deepEqual(asked.filter((q) => q === 'goingIdle'), ['goingIdle']);
  t.is(woken(), 2);
  await wakeUp.close();
});

test('the look again finds work: awake, never announced', async (t) => {
  const { wakeUp, asked } = setup();
  t.true(await wakeUp.afterDiscovery({ deliveries: 1, full: true }, false));
  wakeUp.beforeDiscovery();
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  t.is(wakeUp.phase, 'lingering');
  wakeUp.beforeDiscovery();
  t.true(await wakeUp.afterDiscovery({ deliveries: TRICKLE_BELOW, full: false }, false));
  t.is(wakeUp.phase, 'awake');
  t.false(asked.includes('goingIdle'));
  await wakeUp.close();
});

test('a trickle found by the last look: the next discovery at once, which gives relay_idle back', async (t) => {
  const { wakeUp, asked, woken, nextWake } = setup();
  const lastLook = nextWake();
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  await lastLook;
  t.is(wakeUp.phase, 'last_look');
  wakeUp.beforeDiscovery();
  t.true(await wakeUp.afterDiscovery({ deliveries: 1, full: false }, false));
  t.is(wakeUp.phase, 'awake');
  wakeUp.beforeDiscovery();
  t.deepEqual(asked, ['goingIdle', 'awake']);
  t.is(woken(), 1, 'only the last look');
  await wakeUp.close();
});

/** A WakeUp asleep: nothing found, going_idle() answered, the last look found nothing. */
async function asleep(options: Parameters<typeof setup>[0] = {}) {
  const wake = setup(options);
  const lastLook = wake.nextWake();
  await wake.wakeUp.afterDiscovery({ deliveries: 0, full: false }, false);
  await lastLook;
  wake.wakeUp.beforeDiscovery();
  await wake.wakeUp.afterDiscovery({ deliveries: 0, full: false }, false);
  wake.asked.length = 0;
  return wake;
}

test('asleep, the poll timer: a look that keeps relay_idle, and asleep again when it finds nothing, the idle connection asked nothing', async (t) => {
  const { wakeUp, asked, woken } = await asleep();
  t.is(wakeUp.phase, 'asleep');
  wakeUp.polled();
  t.is(wakeUp.phase, 'poll_look');
  wakeUp.beforeDiscovery();
  t.is(wakeUp.phase, 'poll_look', 'relay_idle not given back: captures go on notifying');
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  t.is(wakeUp.phase, 'asleep');
  t.deepEqual(asked, [], 'neither awake() nor going_idle()');
  t.is(woken(), 1, 'only the last look before it');
  await wakeUp.close();
});

test('a poll that finds work: awake, the next discovery at once, which gives relay_idle back', async (t) => {
  const { wakeUp, asked } = await asleep();
  wakeUp.polled();
  wakeUp.beforeDiscovery();
  t.true(await wakeUp.afterDiscovery({ deliveries: 1, full: false }, false));
  t.is(wakeUp.phase, 'awake');
  wakeUp.beforeDiscovery();
  t.deepEqual(asked, ['awake']);
  await wakeUp.close();
});

test('asleep with relay_idle lost, the poll timer: a discovery that wakes, and announces idleness again', async (t) => {
  const { wakeUp, asked, lose, nextWake } = await asleep();
  lose();
  wakeUp.polled();
  t.is(wakeUp.phase, 'asleep');
  wakeUp.beforeDiscovery();
  t.is(wakeUp.phase, 'awake');
  const lastLook = nextWake();
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  await lastLook;
  t.is(wakeUp.phase, 'last_look');
  t.deepEqual(asked, ['awake', 'goingIdle']);
  await wakeUp.close();
});

test('the poll timer while awake, lingering or announcing: nothing changes', async (t) => {
  const { wakeUp } = setup({ answerLater: true });
  wakeUp.polled();
  t.is(wakeUp.phase, 'awake');
  await wakeUp.afterDiscovery({ deliveries: 1, full: false }, false);
  wakeUp.polled();
  t.is(wakeUp.phase, 'lingering');
  wakeUp.beforeDiscovery();
  await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false);
  await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false);
  t.is(wakeUp.phase, 'announcing');
  wakeUp.polled();
  t.is(wakeUp.phase, 'announcing');
  await wakeUp.close();
});

test('stopping: neither a linger nor going idle', async (t) => {
  const { wakeUp, asked, woken } = setup();
  t.false(await wakeUp.afterDiscovery({ deliveries: 1, full: false }, true));
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, true));
  await new Promise((resolve) => setTimeout(resolve, LINGER_MS * 4));
  t.is(woken(), 0);
  t.deepEqual(asked, []);
  await wakeUp.close();
});

test('going_idle() unanswered: a discovery meanwhile wakes the relay, going idle again asks nothing more, and the answer serves it', async (t) => {
  const { wakeUp, asked, answer, woken } = setup({ answerLater: true });
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  t.is(wakeUp.phase, 'announcing');
  // a NOTIFY: a discovery while the question is unanswered, which finds nothing
  wakeUp.beforeDiscovery();
  t.is(wakeUp.phase, 'awake');
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  t.is(wakeUp.phase, 'announcing');
  t.deepEqual(asked, ['goingIdle', 'awake'], 'one question on the idle connection at a time');
  answer(true);
  await new Promise((resolve) => setImmediate(resolve));
  t.is(wakeUp.phase, 'last_look');
  t.is(woken(), 1);
  await wakeUp.close();
});

test('going_idle() answered after the relay woke and found work: relay_idle is given back', async (t) => {
  const { wakeUp, asked, answer, woken } = setup({ answerLater: true });
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  wakeUp.beforeDiscovery();
  t.true(await wakeUp.afterDiscovery({ deliveries: 1, full: true }, false));
  answer(true);
  await new Promise((resolve) => setImmediate(resolve));
  t.is(wakeUp.phase, 'awake');
  t.deepEqual(asked, ['goingIdle', 'awake', 'awake'], 'given back after the answer (the first awake found nothing held yet)');
  t.is(woken(), 0, 'no last look: the relay is awake');
  await wakeUp.close();
});

test('a capture that stays open: rechecks back off to the cap, then a look each second that keeps relay_idle, and back to waiting', async (t) => {
  const { wakeUp, asked, woken, nextWake } = setup({ safe: false, capturesDone: false });
  const started = performance.now();
  const look = nextWake();
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  await look;
  t.true(performance.now() - started >= RECHECK_CAP_MS, 'not before the wait has reached the cap');
  t.is(wakeUp.phase, 'open_look');
  const rechecks = asked.filter((q) => q === 'capturesDone').length;
  t.true(rechecks >= 5 && rechecks <= 12, `${rechecks} questions before the look`);
  wakeUp.beforeDiscovery();
  t.false(asked.includes('awake'), 'relay_idle kept for the look');
  // (the time before the call that sets the next look's timer: taken after it, a
  // loaded machine's delay in between came off the wait measured)
  const again = performance.now();
  t.false(await wakeUp.afterDiscovery({ deliveries: 0, full: false }, false));
  t.is(wakeUp.phase, 'captures_open');
  t.is(woken(), 1);

  // the next look comes a whole cap later; one that finds work wakes the relay
  const nextLook = nextWake();
  await nextLook;
  t.true(performance.now() - again >= RECHECK_CAP_MS - 1);
  t.is(woken(), 2);
  wakeUp.beforeDiscovery();
  t.true(await wakeUp.afterDiscovery({ deliveries: 1, full: false }, false), 'the next discovery at once');
  t.is(wakeUp.phase, 'awake');
  wakeUp.beforeDiscovery();
  t.deepEqual(asked.filter((q) => q !== 'capturesDone'), ['goingIdle', 'awake']);
  await wakeUp.close();
});
