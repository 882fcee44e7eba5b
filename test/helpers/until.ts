// Polling for a state that nothing announces (a backend's wait, a pool's connections):
// checked every 10 ms, an error naming what did not happen after 10 s.
export async function until(what: string, done: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
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
