// Slots and the prefetch queue on their own (relay/slots.ts): no database, no
// receiver, the clock passed in. Each test names one rule of the bookkeeping.
import test from 'ava';
import type { DeliveryJob } from '../../relay/queries.ts';
import { missedSlot, PREFETCH_HORIZON_MS, Slots, type SlotLimits } from '../../relay/slots.ts';

const LEASE_MS = 60_000;
let nextId = 1;

/** A delivery of this webhook; of its own company unless another is named. */
function job(webhookId: string, slot: { sendAt: number; sendUntil: number } | null = null, companyId = `of ${webhookId}`): DeliveryJob {
  const id = String(nextId++);
  return {
    deliveryId: id, messageId: `msg_${id}`, webhookId, companyId, attempt: 1, url: 'http://127.0.0.1/', body: '{}', secret: null, previousSecrets: [],
    sendAt: slot?.sendAt ?? null, sendUntil: slot?.sendUntil ?? null,
  };
}

/** A delivery of this webhook whose body is `bytes` long. */
function sized(webhookId: string, bytes: number): DeliveryJob {
  return { ...job(webhookId), body: 'x'.repeat(bytes) };
}

const LIMITS: SlotLimits = { maxInFlight: 10, perWebhookInFlight: 2, prefetch: 2, batchSize: 100, requestTimeoutMs: 1_000 };

/** Jobs of these webhooks, as a claim brings them: nothing filled (no more due). */
function brought(...jobs: DeliveryJob[]) {
  return { jobs, filled: new Set<string>() };
}

/** Slots with these limits, and a helper that claims jobs as the loop does. */
function setup(limits: Partial<SlotLimits> = {}) {
  const slots = new Slots({ ...LIMITS, ...limits });
  /**
   * A discovery (only null) or refill that brought `jobs`; true for each started at
   * once. `filled`: the webhooks the database says took all it allowed them; by
   * default, as its caps alone would say (each webhook's cap less what was held).
   */
  const claim = (jobs: DeliveryJob[], options: { only?: string[] | null; filled?: string[]; now?: number } = {}) => {
    const view = slots.claimView();
    if (!view) throw new Error('no room to claim');
    const got = new Map<string, number>();
    for (const j of jobs) got.set(j.webhookId, (got.get(j.webhookId) ?? 0) + 1);
    const filled = new Set(options.filled ??
      [...got].filter(([id, n]) => n >= (view.capByWebhook.get(id) ?? view.perWebhookCap) - (view.heldByWebhook.get(id) ?? 0)).map(([id]) => id));
    slots.claimed(options.only ?? null, { jobs, filled }, (options.now ?? 0) + LEASE_MS);
    return jobs.map((j) => slots.admit(j));
  };
  return { slots, claim };
}

test('a webhook gets its request slots, the rest of its claim waits in its queue', (t) => {
  const { slots, claim } = setup();
  t.deepEqual(claim([job('a'), job('a'), job('a'), job('b')]), [true, true, false, true]);
  t.is(slots.inFlight, 3);
  t.is(slots.queued, 1);
  t.is(slots.heldOf('a'), 3);
  t.is(slots.heldOf('b'), 1);
});

test('the relay-wide cap holds requests back whatever their webhook', (t) => {
  const { slots, claim } = setup({ maxInFlight: 2, perWebhookInFlight: 2, prefetch: 2 });
  t.deepEqual(claim([job('a'), job('b'), job('c')]), [true, true, false]);
  t.is(slots.inFlight, 2);
  t.is(slots.queued, 1);
});

test('the relay-wide queue is as large beside maxInFlight as one webhook queue beside its slots', (t) => {
  t.is(setup({ maxInFlight: 256, perWebhookInFlight: 32, prefetch: 32 }).slots.maxQueued, 256);
  t.is(setup({ maxInFlight: 256, perWebhookInFlight: 32, prefetch: 16 }).slots.maxQueued, 128);
  t.is(setup({ maxInFlight: 10, perWebhookInFlight: 3, prefetch: 1 }).slots.maxQueued, 4, 'rounded up');
  t.is(setup({ prefetch: 0 }).slots.maxQueued, 0);
});

test('a claim is told what is held per webhook, in flight and queued, and how much room is left', (t) => {
  const { slots, claim } = setup({ maxInFlight: 4, perWebhookInFlight: 2, prefetch: 2 });
  claim([job('a'), job('a'), job('a'), job('b')]);
  const view = slots.claimView()!;
  t.is(view.perWebhookCap, 4, 'slots plus prefetch');
  t.deepEqual([...view.heldByWebhook].sort(), [['a', 3], ['b', 1]]);
  t.is(view.room, 4 + 4 - 4);
  claim([job('c'), job('c'), job('d'), job('d')]);
  t.true(slots.isFull());
  t.is(slots.claimView(), null, 'full: no claim');
});

test('a claim is told the company of each webhook held, in flight, queued or paced, until it holds none of it', (t) => {
  const { slots, claim } = setup({ maxInFlight: 4, perWebhookInFlight: 1, prefetch: 2 });
  const [a1, a2] = [job('a', null, 'c1'), job('a', null, 'c1')];
  const b1 = job('b', null, 'c2');
  claim([a1, a2, b1]);
  const paced = job('p', { sendAt: 10, sendUntil: 20 }, 'c3');
  slots.pace(paced);
  const view = slots.claimView()!;
  t.deepEqual([...view.companyByWebhook].sort(), [['a', 'c1'], ['b', 'c2'], ['p', 'c3']]);
  t.deepEqual([...view.companyByWebhook.keys()].sort(), [...view.heldByWebhook.keys()].sort(), 'every webhook held');
  slots.finished(a1, 1);
  t.is(slots.claimView()!.companyByWebhook.get('a'), 'c1', 'a2 started in its slot: still held');
  slots.finished(a2, 2);
  slots.finished(b1, 3);
  slots.unpace(paced);
  t.deepEqual([...slots.claimView()!.companyByWebhook], [], 'nothing held: no company');
});

test('a finished request starts the next of its own webhook first', (t) => {
  const { slots } = setup({ maxInFlight: 3, perWebhookInFlight: 1, prefetch: 1 });
  const a1 = job('a');
  const a2 = job('a');
  const b1 = job('b');
  const b2 = job('b');
  slots.claimed(null, brought(a1, b1, b2, a2), LEASE_MS);
  t.deepEqual([a1, b1, b2, a2].map((j) => slots.admit(j)), [true, true, false, false]);
  const freed = slots.finished(a1, 10);
  t.deepEqual(freed.start, [a2], "a's own queue first, though b's waited longer");
  t.deepEqual(freed.tooLate, []);
  t.is(slots.heldOf('a'), 1);
  t.is(slots.queued, 1);
});

test('a slot freed under the relay-wide cap goes to another webhook that waited for it', (t) => {
  const { slots } = setup({ maxInFlight: 2, perWebhookInFlight: 2, prefetch: 2 });
  const [a1, a2, b1] = [job('a'), job('a'), job('b')];
  slots.claimed(null, brought(a1, a2, b1), LEASE_MS);
  t.deepEqual([a1, a2, b1].map((j) => slots.admit(j)), [true, true, false]);
  t.deepEqual(slots.finished(a1, 10).start, [b1]);
  t.is(slots.inFlight, 2);
});

test('a slot freed under the relay-wide cap goes to the company with the fewest requests in flight, not back to the webhook whose request ended', (t) => {
  const { slots } = setup({ maxInFlight: 4, perWebhookInFlight: 2, prefetch: 2 });
  // a company's two webhooks fill every slot and queue more; another company's one
  // delivery, claimed after them, queues last
  const many = [job('a', null, 'many'), job('a', null, 'many'), job('b', null, 'many'), job('b', null, 'many')];
  const queuedOfMany = [job('a', null, 'many'), job('b', null, 'many')];
  const other = job('c', null, 'other');
  slots.claimed(null, brought(...many, ...queuedOfMany, other), LEASE_MS);
  t.deepEqual([...many, ...queuedOfMany, other].map((j) => slots.admit(j)), [true, true, true, true, false, false, false]);
  t.deepEqual(slots.finished(many[0]!, 10).start, [other], 'the other company first, though its delivery queued last');
  // within the company: the webhook with the fewest in flight, then the one whose request ended
  t.deepEqual(slots.finished(many[2]!, 11).start, [queuedOfMany[1]], "b's own queue: a and b hold one each now, b's request ended");
  t.deepEqual(slots.finished(many[1]!, 12).start, [queuedOfMany[0]], 'a has none in flight now');
  t.is(slots.queued, 0);
});

test('a slot a webhook frees under its own cap goes to its own queue when no other webhook waits', (t) => {
  const { slots } = setup({ maxInFlight: 10, perWebhookInFlight: 1, prefetch: 2 });
  const [a1, a2] = [job('a', null, 'x'), job('a', null, 'x')];
  slots.claimed(null, brought(a1, a2), LEASE_MS);
  t.deepEqual([a1, a2].map((j) => slots.admit(j)), [true, false]);
  t.deepEqual(slots.finished(a1, 10).start, [a2]);
});

test('a queued delivery whose lease would run out before its request could end is handed back, not sent', (t) => {
  const { slots } = setup({ maxInFlight: 10, perWebhookInFlight: 1, prefetch: 2, requestTimeoutMs: 1_000 });
  const [a1, a2, a3] = [job('a'), job('a'), job('a')];
  slots.claimed(null, brought(a1, a2, a3), LEASE_MS);
  [a1, a2, a3].forEach((j) => slots.admit(j));
  // one request timeout before the lease ends: too late to start
  const freed = slots.finished(a1, LEASE_MS - 1_000);
  t.deepEqual(freed.tooLate, [a2, a3]);
  t.deepEqual(freed.start, []);
  t.is(slots.inFlight, 0, 'no slot is held for what is handed back');
  t.is(slots.queued, 0);
  t.is(slots.heldOf('a'), 0);
});

test('while stopping, a freed slot starts nothing, and every queued delivery is taken for release', (t) => {
  const { slots, claim } = setup({ perWebhookInFlight: 1, prefetch: 2 });
  const jobs = [job('a'), job('a'), job('a')];
  claim(jobs);
  t.false(slots.admit(job('b'), false), 'admitted while stopping: queued, not started');
  t.deepEqual(slots.finished(jobs[0], 0, false), { start: [], tooLate: [] });
  const queued = slots.takeQueued();
  t.is(queued.length, 3);
  t.is(slots.queued, 0);
  t.is(slots.inFlight, 0);
});

test('one webhook\'s queue is taken for release (it changed): the others\' stay, its slots in flight too', (t) => {
  const { slots, claim } = setup({ perWebhookInFlight: 1, prefetch: 2 });
  const a = [sized('a', 10), sized('a', 20), sized('a', 30)];
  const b = [sized('b', 5), sized('b', 6)];
  claim([...a, ...b]);
  t.deepEqual(slots.takeQueued('a'), [a[1], a[2]]);
  t.deepEqual(slots.takeQueued('c'), [], 'a webhook not held: nothing');
  t.is(slots.queued, 1, "b's queued one stays");
  t.is(slots.heldOf('a'), 1, 'its request in flight');
  t.is(slots.heldBytes, 10 + 5 + 6);
  t.deepEqual(slots.finished(a[0], 0), { start: [], tooLate: [] }, 'its freed slot starts nothing of its own');
  t.deepEqual(slots.finished(b[0], 0).start, [b[1]]);
});

test('a webhook whose claim filled all it could take is backlogged; one that got less is not', (t) => {
  const { slots, claim } = setup({ perWebhookInFlight: 2, prefetch: 2 });
  claim([job('a'), job('a'), job('a'), job('a'), job('b')]);
  t.true(slots.isBacklogged('a'), 'a got its cap of 4');
  t.false(slots.isBacklogged('b'));
});

test('a webhook stays backlogged while the database says each claim filled all it allowed; a claim that brings less clears it', (t) => {
  const { slots, claim } = setup({ maxInFlight: 100, perWebhookInFlight: 2, prefetch: 0 });
  const first = [job('a'), job('a')];
  claim(first);
  t.true(slots.isBacklogged('a'));
  first.forEach((j) => slots.finished(j, 0));
  const [second] = [job('a')];
  claim([second], { filled: ['a'] });
  t.true(slots.isBacklogged('a'), 'one of two free, but its company share (say) allowed one: filled');
  slots.finished(second, 0);
  claim([], { only: ['a'] });
  t.false(slots.isBacklogged('a'), 'its own refill found nothing more');
  const third = [job('a'), job('a')];
  claim(third);
  third.forEach((j) => slots.finished(j, 0));
  claim([job('a')]);
  t.false(slots.isBacklogged('a'), 'a discovery that brought one of two it was allowed');
});

test('a backlogged webhook is refilled once its queue has run down to half the prefetch', (t) => {
  const { slots, claim } = setup({ maxInFlight: 100, perWebhookInFlight: 2, prefetch: 4 });
  const jobs = [job('a'), job('a'), job('a'), job('a'), job('a'), job('a')];
  claim(jobs);
  t.true(slots.isBacklogged('a'));
  t.deepEqual(slots.refillsDue(), [], 'queue of 4: not low yet');
  slots.finished(jobs[0], 0); // a queued one starts: queue 3
  t.false(slots.refillDue());
  slots.finished(jobs[1], 0); // queue 2 = half the prefetch
  t.deepEqual(slots.refillsDue(), ['a']);
  t.true(slots.refillDue());
});

test('without prefetch, a backlogged webhook is refilled as soon as a slot is free', (t) => {
  const { slots, claim } = setup({ maxInFlight: 100, perWebhookInFlight: 2, prefetch: 0 });
  const jobs = [job('a'), job('a')];
  claim(jobs);
  t.deepEqual(slots.refillsDue(), [], 'both slots busy');
  slots.finished(jobs[0], 0);
  t.deepEqual(slots.refillsDue(), ['a']);
});

test('paced deliveries count as held until their rate_limit slot; one whose slot passed is handed back, not sent', (t) => {
  const slots = new Slots({ ...LIMITS, maxInFlight: 10, perWebhookInFlight: 1, prefetch: 1 });
  const now = Date.now();
  const paced = job('p', { sendAt: now + 500, sendUntil: now + 550 });
  slots.pace(paced);
  t.is(slots.heldOf('p'), 1);
  t.is(slots.claimView()!.heldByWebhook.get('p'), 1, 'the claim hears of it');
  t.is(slots.room(), 10 + 10 - 1);
  t.is(slots.unpace(paced), 0);
  t.is(slots.heldOf('p'), 0);

  t.false(missedSlot(paced, now + 549));
  t.true(missedSlot(paced, now + 550));
  t.false(missedSlot(job('q'), now + 10_000), 'an unpaced delivery has no slot to miss');

  // queued behind a busy slot until its own slot has passed: handed back
  const first = job('p');
  const late = job('p', { sendAt: now - 100, sendUntil: now - 50 });
  slots.claimed(null, brought(first, late), performance.now() + LEASE_MS);
  t.true(slots.admit(first));
  t.false(slots.admit(late));
  const freed = slots.finished(first, performance.now());
  t.deepEqual(freed, { start: [], tooLate: [late] });
});

test('a webhook whose requests come back fast and well may queue what its slots send in the horizon, within two batches and the relay-wide queue', (t) => {
  const { slots } = setup({ maxInFlight: 100, perWebhookInFlight: 2, prefetch: 2, batchSize: 30 });
  t.is(slots.maxQueued, 100);
  t.is(slots.queueCap('a'), 2, 'nothing measured: the prefetch');
  slots.measured('a', PREFETCH_HORIZON_MS / 10, true);
  t.is(slots.queueCap('a'), 20, 'two slots, each sending ten requests in the horizon');
  t.is(slots.capOf('a'), 22);
  slots.measured('b', PREFETCH_HORIZON_MS / 100, true);
  t.is(slots.queueCap('b'), 60, 'two batches of 30 at most');
  slots.measured('c', PREFETCH_HORIZON_MS * 4, true);
  t.is(slots.queueCap('c'), 2, 'slow: never below the prefetch');
  t.is(setup({ prefetch: 0 }).slots.queueCap('a'), 0, 'no prefetch: no queue, however fast');
});

test('one failed request puts a fast webhook back to the prefetch; its mean follows later requests', (t) => {
  const { slots } = setup({ maxInFlight: 100, perWebhookInFlight: 2, prefetch: 2 });
  slots.measured('a', 10, true);
  t.is(slots.queueCap('a'), 50);
  slots.measured('a', 10, false);
  t.is(slots.queueCap('a'), 2, 'a failure: the prefetch');
  slots.measured('a', 10, true);
  for (let i = 0; i < 40; i++) slots.measured('a', 250, true);
  t.is(slots.queueCap('a'), 2, 'slower again: the mean follows');
});

test('a claim is told the cap of each held webhook that may queue more, and a refill is due at half its queue', (t) => {
  const { slots, claim } = setup({ maxInFlight: 100, perWebhookInFlight: 2, prefetch: 2 });
  const jobs = Array.from({ length: 4 }, () => job('a'));
  claim(jobs);
  t.true(slots.isBacklogged('a'), 'filled its cap of 4');
  t.deepEqual([...slots.claimView()!.capByWebhook], [], 'nothing measured yet');
  slots.measured('a', 25, true);
  slots.finished(jobs[0], 0);
  t.is(slots.queueCap('a'), 20);
  t.deepEqual([...slots.claimView()!.capByWebhook], [['a', 22]]);
  t.deepEqual(slots.refillsDue(), ['a'], 'queue of 1: at most half of 20');
  claim(Array.from({ length: 19 }, () => job('a')), { only: ['a'] });
  t.is(slots.heldOf('a'), 22);
  t.deepEqual(slots.refillsDue(), [], 'held all it may');
});

test('a webhook no longer held forgets how fast it was', (t) => {
  const { slots, claim } = setup({ maxInFlight: 100, perWebhookInFlight: 2, prefetch: 2 });
  const [a1] = [job('a')];
  claim([a1]);
  slots.measured('a', 10, true);
  t.is(slots.queueCap('a'), 50);
  slots.finished(a1, 0);
  t.is(slots.queueCap('a'), 2);
});

// The measure of a webhook is kept while it holds anything. Its last request may end
// while others wait for their rate_limit slot: when those leave without a request
// (the webhook changed or was deleted, the slot passed), it holds nothing, and a
// relay that runs for months must not keep a measure of every webhook that ever
// went so (nor claim ahead for one from a stale measure).
test('a webhook whose last paced deliveries leave without a request forgets how fast it was', (t) => {
  const now = Date.now();
  const { slots, claim } = setup({ maxInFlight: 100, perWebhookInFlight: 1, prefetch: 2 });
  const [a1] = [job('a')];
  claim([a1]);
  const paced = job('a', { sendAt: now + 500, sendUntil: now + 550 });
  slots.pace(paced);
  slots.measured('a', 10, true);
  t.deepEqual(slots.finished(a1, 0), { start: [], tooLate: [] });
  t.is(slots.queueCap('a'), 25, 'still held (paced): still measured');
  t.is(slots.unpace(paced), 0);
  t.is(slots.heldOf('a'), 0);
  t.is(slots.queueCap('a'), 2, 'held no more: measured no more');

  // (none kept: a Map entry per webhook that ever went so, for months)
  t.is((slots as unknown as { meanMs: Map<string, number> }).meanMs.size, 0);
});

test('the bodies held are counted in bytes per webhook until their request ends; the relay is full once it holds its byte budget', (t) => {
  const { slots, claim } = setup({ maxHeldBytes: 1_000 });
  const [a1, a2, b1] = [sized('a', 400), sized('a', 400), sized('b', 100)];
  t.deepEqual(claim([a1, a2, b1]), [true, true, true]);
  t.is(slots.heldBytes, 900);
  const view = slots.claimView()!;
  t.deepEqual(view.heldBytesByWebhook, new Map([['a', 800], ['b', 100]]));
  t.is(view.byteBudget, 1_000);
  t.is(slots.byteRoom(), 100);

  // a claim always brings one delivery, however large: the budget is passed, and no claim follows
  claim([sized('c', 300)]);
  t.is(slots.heldBytes, 1_200);
  t.true(slots.isFull(), 'full in bytes, with room for 16 deliveries');
  t.is(slots.claimView(), null);

  slots.finished(a1, 0);
  t.is(slots.heldBytes, 800);
  t.false(slots.isFull());
  t.deepEqual(slots.claimView()!.heldBytesByWebhook, new Map([['a', 400], ['b', 100], ['c', 300]]));
  slots.finished(a2, 0);
  t.false(slots.claimView()!.heldBytesByWebhook.has('a'), 'a webhook no longer held is not reported');
});

test('queued, paced and handed-back deliveries hold their bytes until they leave the relay', (t) => {
  const { slots, claim } = setup({ maxHeldBytes: 10_000, perWebhookInFlight: 1, prefetch: 2 });
  const [a1, a2, a3] = [sized('a', 100), sized('a', 200), sized('a', 300)];
  t.deepEqual(claim([a1, a2, a3]), [true, false, false]);
  t.is(slots.heldBytes, 600, 'the queued ones count');
  const paced = { ...sized('p', 50), sendAt: Date.now() + 500, sendUntil: Date.now() + 550 };
  slots.pace(paced);
  t.is(slots.heldBytes, 650);
  slots.unpace(paced);
  t.is(slots.heldBytes, 600);

  // a2 and a3 too late for their lease: handed back, their bytes with them
  const freed = slots.finished(a1, LEASE_MS - 1_000);
  t.deepEqual(freed.tooLate, [a2, a3]);
  t.is(slots.heldBytes, 0);

  const [b1, b2] = [sized('b', 70), sized('b', 80)];
  claim([b1, b2]);
  t.deepEqual(slots.takeQueued(), [b2]);
  t.is(slots.heldBytes, 70, 'the one still in flight');
  slots.finished(b1, 0, false);
  t.is(slots.heldBytes, 0);
  t.deepEqual(slots.claimView()!.heldBytesByWebhook, new Map());
});

test('without a byte budget the bytes are counted and bound nothing', (t) => {
  const { slots, claim } = setup();
  claim([sized('a', 5_000_000)]);
  t.is(slots.heldBytes, 5_000_000);
  t.false(slots.isFull());
  t.is(slots.claimView()!.byteBudget, null);
});
