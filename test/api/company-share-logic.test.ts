// The bookkeeping of each company's share of the API (api/company-share.ts), without a
// server or a database: who runs, who waits, in what order, and what is left after.
import test from 'ava';
import { CompanyShare, type Admission } from '../../api/company-share.ts';

function admitted(admission: Admission): () => void {
  if (!admission.admitted) throw new Error(`refused: ${admission.why}`);
  return admission.release;
}

test('a company runs up to its share at once; the next waits and runs when one ends, first come first served', async (t) => {
  const share = new CompanyShare({ maxInFlight: 2, maxQueued: 5, maxWaitMs: 60_000 });
  const first = admitted(await share.admit('1'));
  admitted(await share.admit('1'));
  const order: number[] = [];
  const third = share.admit('1').then((a) => (order.push(3), a));
  const fourth = share.admit('1').then((a) => (order.push(4), a));
  t.is(share.waiting, 2);
  t.is(share.running('1'), 2);
  first();
  first(); // a second release of the same turn changes nothing
  admitted(await third);
  t.deepEqual(order, [3]);
  t.is(share.running('1'), 2);
  t.is(share.waiting, 1);
  // another company is not behind the first one's queue
  admitted(await share.admit('2'));
  t.is(share.running('2'), 1);
  t.deepEqual(order, [3]);
});

test('past the queue a request is refused at once; the others keep their places', async (t) => {
  const share = new CompanyShare({ maxInFlight: 1, maxQueued: 1, maxWaitMs: 60_000 });
  const running = admitted(await share.admit('1'));
  const queued = share.admit('1');
  t.deepEqual(await share.admit('1'), { admitted: false, why: 'queue_full' });
  running();
  const next = admitted(await queued);
  next();
  t.is(share.running('1'), 0);
  t.is(share.waiting, 0);
});

test('a request that waits too long is refused and leaves the queue', async (t) => {
  const share = new CompanyShare({ maxInFlight: 1, maxQueued: 3, maxWaitMs: 20 });
  const running = admitted(await share.admit('1'));
  t.deepEqual(await share.admit('1'), { admitted: false, why: 'waited_too_long' });
  t.is(share.waiting, 0);
  running();
  t.is(share.running('1'), 0);
});

test('a client gone while it waits gives its place to the one behind it, and one gone before it asks takes none', async (t) => {
  const share = new CompanyShare({ maxInFlight: 1, maxQueued: 3, maxWaitMs: 60_000 });
  const running = admitted(await share.admit('1'));
  const leaving = new AbortController();
  const gone = share.admit('1', leaving.signal);
  const behind = share.admit('1');
  leaving.abort();
  t.deepEqual(await gone, { admitted: false, why: 'gone' });
  t.is(share.waiting, 1);
  running();
  const next = admitted(await behind);
  t.deepEqual(await share.admit('1', AbortSignal.abort()), { admitted: false, why: 'gone' });
  t.is(share.waiting, 0);
  next();
  t.is(share.running('1'), 0);
});

test('a company is remembered only while it has a request running or waiting: many companies, each token a new one, leave nothing behind', async (t) => {
  const share = new CompanyShare({ maxInFlight: 1, maxQueued: 1, maxWaitMs: 10 });
  for (let company = 1; company <= 200; company++) {
    const id = String(company);
    const running = admitted(await share.admit(id));
    // one refused for waiting too long, one for a full queue, one gone
    const waited = share.admit(id);
    t.deepEqual(await share.admit(id), { admitted: false, why: 'queue_full' });
    t.deepEqual(await waited, { admitted: false, why: 'waited_too_long' });
    const leaving = new AbortController();
    const gone = share.admit(id, leaving.signal);
    leaving.abort();
    t.deepEqual(await gone, { admitted: false, why: 'gone' });
    t.is(share.companies, 1);
    running();
  }
  t.is(share.companies, 0);
  t.is(share.waiting, 0);
});
