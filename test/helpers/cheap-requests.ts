// A process of its own that sends a fixed number of cheap GraphQL requests with one
// Authorization header, `inFlight` at once, each sent again as soon as the one before
// is answered, refused or not: a client, careless or hostile, whose requests cost the
// API's thread only what the API itself does for them (test/api/request-rate.test.ts).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** How many answers came of each status and extensions.code ("429 REQUEST_RATE_EXCEEDED"), and the least Retry-After of a 429. */
export interface CheapRequestsAnswered {
  counts: Record<string, number>;
  leastRetryAfter: number | null;
}

const CHILD = fileURLToPath(new URL('./cheap-requests-child.ts', import.meta.url));

/** Sends `count` requests of `{ __typename }` with the header (none if undefined); resolves with what came back. */
export function cheapRequests(options: { url: string; authorization?: string; count: number; inFlight: number }): Promise<CheapRequestsAnswered> {
  const child = fork(CHILD, {
    env: { ...process.env, CHEAP_URL: options.url, CHEAP_AUTHORIZATION: options.authorization ?? '',
      CHEAP_COUNT: String(options.count), CHEAP_IN_FLIGHT: String(options.inFlight) },
    execArgv: process.execArgv,
  });
  return new Promise((resolve, reject) => {
    child.once('message', (message: CheapRequestsAnswered) => resolve(message));
    child.once('exit', (code) => { if (code !== 0) reject(new Error(`the requests' process exited ${code}`)); });
  });
}
