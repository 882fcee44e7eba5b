// V8 flags the relay process runs with (`npm run relay` re-executes itself with them;
// the benchmark and the tests that run the relay as a process pass them too). The
// relay's live heap is small (~30 MB) but it allocates many short-lived objects per
// request; by default V8 lets the heap grow lazily to several times that under load.
// A small young generation and a capped old generation keep it near 130 MB resident
// at full speed.
export const RELAY_NODE_FLAGS = ['--max-semi-space-size=4', '--max-old-space-size=128'];

/** True when this process runs with every flag of RELAY_NODE_FLAGS. */
export function runsWithRelayFlags(execArgv: readonly string[] = process.execArgv): boolean {
  return RELAY_NODE_FLAGS.every((flag) => execArgv.includes(flag));
}
