// One clock for every process of the benchmark: wall-clock milliseconds with
// sub-millisecond resolution, so a commit time taken in one process and an arrival
// time taken in another can be subtracted.
export function now(): number {
  return performance.timeOrigin + performance.now();
}
