// Polling for a state that nothing announces (a backend's wait, a pool's connections):
// checked every 10 ms, an error naming what did not happen after 60 s. The bound only
// says when to give up: a state that comes returns at once, one that never comes fails
// all the same. It was 10 s, which a process started on a loaded machine (node and
// its TypeScript, then its connection) took before it could wait at all: a migrate's
// wait for another's lock, not seen within 10 s at a load average of 40.
export async function until(what: string, done: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  for (const started = Date.now(); !(await done()); await new Promise((resolve) => setTimeout(resolve, 10))) {
    if (Date.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs / 1000} s: ${what}`);
  }
}

/** Resolves with what happened first: the promise, or `ms` passing (a wait on an event
 *  that a defect would never send). */
export function within<T>(ms: number, promise: Promise<T>): Promise<T | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<'still waiting'>((resolve) => {
      timer = setTimeout(() => resolve('still waiting'), ms);
    }),
  ]);
}
