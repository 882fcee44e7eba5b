// One clock for every process of the benchmark, so that a commit time taken in one
// process and an arrival time taken in another can be subtracted: the system's
// monotonic clock (milliseconds since boot, the same in every process). Not the wall
// clock, which a time daemon may step during a run, nor each process's
// `performance.timeOrigin + performance.now()`, which is anchored to the wall clock at
// that process's start: a step between two processes' starts shifted every latency
// of a run by the step.
export function now(): number {
  const [seconds, nanoseconds] = process.hrtime();
  return seconds * 1000 + nanoseconds / 1e6;
}
