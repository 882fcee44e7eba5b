// One request's exchange with undici's dispatcher (relay/deliver.ts), driven by hand:
// what it ends with, and when it aborts the request. No socket, no database.
import test from 'ava';
import type { Dispatcher } from 'undici';
import { Exchange, type Ended } from '../../relay/deliver.ts';

/** A stand-in for undici's controller: records the reasons it was aborted with. */
function controller() {
  const reasons: Error[] = [];
  let signal!: () => void;
  const c = {
    reasons,
    /** resolves at the first abort */
    abortedNow: new Promise<void>((resolve) => (signal = resolve)),
    get aborted() { return reasons.length > 0; },
    get paused() { return false; },
    get reason() { return reasons[0] ?? null; },
    abort(reason: Error) {
      reasons.push(reason);
      signal();
    },
    pause() {},
    resume() {},
  };
  return c as typeof c & Dispatcher.DispatchController;
}

function exchange(limit: number, timeoutMs: number) {
  const ends: Ended[] = [];
  let ended!: () => void;
  const first = new Promise<void>((resolve) => (ended = resolve));
  const x = new Exchange(limit, timeoutMs, Date.now, (end) => {
    ends.push(end);
    ended();
  });
  return { x, ends, first };
}

test('timed out before its connection is up: the attempt ends then, and the request is aborted when the connection comes', async (t) => {
  const { x, ends, first } = exchange(1024, 20);
  await first;
  t.like(ends[0], { kind: 'failed', timedOut: true });
  const c = controller();
  x.onRequestStart(c);
  t.is(c.reasons.length, 1, 'aborted before anything is written');
  x.onResponseError(c, c.reasons[0]);
  t.is(ends.length, 1, 'ended once');
});

test('timed out while the receiver answers: aborted, and ended as a timeout', async (t) => {
  const { x, ends, first } = exchange(1024, 20);
  const c = controller();
  x.onRequestStart(c);
  x.onResponseStart(c, 200, {});
  await c.abortedNow;
  t.is(ends.length, 0, 'not ended until undici reports the abort');
  // undici reports the abort as an error of the exchange
  x.onResponseError(c, c.reasons[0]);
  await first;
  t.like(ends[0], { kind: 'failed', timedOut: true });
});

test('a body past the limit: its first bytes kept, the connection dropped, the response counted', (t) => {
  const { x, ends } = exchange(4, 60_000);
  const c = controller();
  x.onRequestStart(c);
  x.onResponseStart(c, 503, { 'retry-after': '7' });
  x.onResponseData(c, Buffer.from('ab'));
  t.is(c.reasons.length, 0);
  x.onResponseData(c, Buffer.from('cdef'));
  t.is(c.reasons.length, 1, 'the connection is dropped rather than read on');
  x.onResponseError(c, c.reasons[0]);
  t.deepEqual(ends, [{ kind: 'response', status: 503, bodyExcerpt: 'abcd', retryAfterSeconds: 7, note: null }]);
});

test('a redirect ends as a response with its note; a body within the limit is kept whole', (t) => {
  const { x, ends } = exchange(1024, 60_000);
  const c = controller();
  x.onRequestStart(c);
  x.onResponseStart(c, 301, { location: 'https://elsewhere.example/' });
  x.onResponseData(c, Buffer.from('moved'));
  x.onResponseEnd();
  t.is(c.reasons.length, 0);
  t.deepEqual(ends, [{
    kind: 'response', status: 301, bodyExcerpt: 'moved', retryAfterSeconds: null,
    note: 'redirect not followed: HTTP 301 to https://elsewhere.example/',
  }]);
});

test('timed out after a final non-2xx status: ended as that response, said to be cut short; after an interim status, as a timeout', async (t) => {
  const gone = exchange(1024, 20);
  const c = controller();
  gone.x.onRequestStart(c);
  gone.x.onResponseStart(c, 429, { 'retry-after': '60' });
  gone.x.onResponseData(c, Buffer.from('slow'));
  await c.abortedNow;
  gone.x.onResponseError(c, c.reasons[0]);
  t.deepEqual(gone.ends, [{
    kind: 'response', status: 429, bodyExcerpt: 'slow', retryAfterSeconds: 60,
    note: "the response's body did not end within 20 ms",
  }]);

  const early = exchange(1024, 20);
  const d = controller();
  early.x.onRequestStart(d);
  early.x.onResponseStart(d, 103, {});
  await d.abortedNow;
  early.x.onResponseError(d, d.reasons[0]);
  t.like(early.ends[0], { kind: 'failed', timedOut: true });
});

test('timed out after a 302 or 303, which would acknowledge the delivery: a timeout, as after a 2xx, not a success cut short', async (t) => {
  for (const status of [302, 303]) {
    const { x, ends } = exchange(1024, 20);
    const c = controller();
    x.onRequestStart(c);
    x.onResponseStart(c, status, { location: 'https://script.googleusercontent.example/echo' });
    x.onResponseData(c, Buffer.from('Moved'));
    await c.abortedNow;
    x.onResponseError(c, c.reasons[0]);
    t.like(ends[0], { kind: 'failed', timedOut: true }, `HTTP ${status}`);
  }
});
