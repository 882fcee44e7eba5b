// Polling for a state that nothing announces (a backend's wait, a pool's connections):
// checked every 10 ms, an error naming what did not happen after 10 s.
export async function until(what: string, done: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  for (const started = Date.now(); !(await done()); await new Promise((resolve) => setTimeout(resolve, 10))) {
    if (Date.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs / 1000} s: ${what}`);
  }
}
