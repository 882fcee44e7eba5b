// The benchmark's arithmetic (bench/analysis.ts), without a database: which changes
// count, and where each one's latency went.
import test from 'ava';
import { analyse, latencySplit } from '../../bench/analysis.ts';

test('the open loop\'s latency splits at the first send: only changes committed, sent and arrived count', (t) => {
  // seq 1..4 committed at 1000, 1010, 1020 and 1030 ms; seq 4 never sent; seq 5 never committed
  const committedAt = new Float64Array([0, 1000, 1010, 1020, 1030, 0]);
  const firstSends = new Map([[1, 1002], [2, 1040], [3, 1021], [5, 1100]]);
  const delivery = analyse(
    { seqs: [1, 2, 3, 4, 5, 1], times: [1005, 1045, 1030, 1040, 1101, 1200], ids: ['a', 'b', 'c', 'd', 'e', 'a'] },
    [1, 2, 3, 4],
  );
  const split = latencySplit(committedAt, firstSends, delivery);
  // to the send: 2, 30 and 1 ms; from it to the (first) arrival: 3, 5 and 9 ms
  t.deepEqual(split.toSend, { p50: 2, p95: 30, p99: 30, max: 30, samples: 3 });
  t.deepEqual(split.toArrival, { p50: 5, p95: 9, p99: 9, max: 9, samples: 3 });
});
