// The one backoff the project's retries share (the listener's reconnects, settles
// while the database is unreachable, npm start restarting a crashed part): doubling
// from a base, capped. A reconnect storm after a database restart stays at one try
// per cap per connection.

/** The wait before retry number `attempt` (0 for the first retry). */
export function backoffMs(attempt: number, options: { baseMs?: number; capMs: number }): number {
  const base = options.baseMs ?? 100;
  return Math.min(base * 2 ** Math.max(0, attempt), options.capMs);
}
