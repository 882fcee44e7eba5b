// Turns the receiver's records into figures: which changes arrived, which twice, and
// how long each took from its commit to its first arrival.
import type { Arrivals } from './receiver.ts';

export interface Delivery {
  /** distinct changes that arrived */
  delivered: number;
  /** expected changes that never arrived */
  missing: number;
  /** requests beyond the first for the same webhook-id */
  duplicates: number;
  firstArrival: number;
  lastArrival: number;
  /** seq → first arrival time */
  arrivedAt: Map<number, number>;
}

/** `expected`: the sequence numbers that were committed and so must arrive. */
export function analyse(arrivals: Arrivals, expected: Iterable<number>): Delivery {
  const arrivedAt = new Map<number, number>();
  const ids = new Set<string>();
  let duplicates = 0;
  let firstArrival = Infinity;
  let lastArrival = -Infinity;
  for (let i = 0; i < arrivals.seqs.length; i++) {
    const seq = arrivals.seqs[i];
    const time = arrivals.times[i];
    if (ids.has(arrivals.ids[i])) duplicates++;
    ids.add(arrivals.ids[i]);
    if (!arrivedAt.has(seq)) arrivedAt.set(seq, time);
    firstArrival = Math.min(firstArrival, time);
    lastArrival = Math.max(lastArrival, time);
  }
  let missing = 0;
  for (const seq of expected) if (!arrivedAt.has(seq)) missing++;
  return { delivered: arrivedAt.size, missing, duplicates, firstArrival, lastArrival, arrivedAt };
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export interface Latency {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  samples: number;
}

/** The percentiles of a set of durations (sorted here, in place). */
function summary(values: number[]): Latency {
  values.sort((a, b) => a - b);
  return {
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
    max: values.length ? values[values.length - 1] : Number.NaN,
    samples: values.length,
  };
}

/** Commit-to-arrival latency over the changes that arrived. */
export function latency(committedAt: Float64Array, delivery: Delivery): Latency {
  const values: number[] = [];
  for (const [seq, arrived] of delivery.arrivedAt) {
    const committed = committedAt[seq];
    if (committed > 0) values.push(arrived - committed);
  }
  return summary(values);
}

export interface LatencySplit {
  /** commit to the sender's first attempt: waiting for, and in, the claim */
  toSend: Latency;
  /** that attempt to its arrival at the receiver: the request, and the sender's own delays */
  toArrival: Latency;
}

/**
 * The commit-to-arrival latency in two, over the changes whose first send is known
 * (`firstSends`: seq → epoch ms, the sender's clock; this machine's, as the
 * benchmark's clock is).
 */
export function latencySplit(committedAt: Float64Array, firstSends: Map<number, number>, delivery: Delivery): LatencySplit {
  const toSend: number[] = [];
  const toArrival: number[] = [];
  for (const [seq, arrived] of delivery.arrivedAt) {
    const committed = committedAt[seq];
    const sent = firstSends.get(seq);
    if (!(committed > 0) || sent === undefined) continue;
    toSend.push(sent - committed);
    toArrival.push(arrived - sent);
  }
  return { toSend: summary(toSend), toArrival: summary(toArrival) };
}

/** 1..count */
export function upTo(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i + 1);
}

/** The sequence numbers whose commit returned. */
export function committedSeqs(committedAt: Float64Array): number[] {
  const seqs: number[] = [];
  for (let seq = 1; seq < committedAt.length; seq++) if (committedAt[seq] > 0) seqs.push(seq);
  return seqs;
}
