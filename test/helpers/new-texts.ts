// Query texts the API has not seen, each slow to plan within every limit, and a
// process of its own that sends them as fast as its company's share allows: a tenant
// whose requests come from elsewhere, so that its own client takes none of the
// API's thread (test/api/planning-budget.test.ts).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DEFAULT_LIMITS } from '../../api/limits.ts';

/**
 * A text of `n` one-row pages of a webhook's history, each an alias of its own: within
 * API_MAX_PLANNED_FIELDS at the default n, and some 40 to 250 ms of the thread to
 * plan. `tag` makes the text one the API has not seen.
 */
export function slowText(tag: string, n = Math.floor((DEFAULT_LIMITS.maxPlannedFields - 1) / 2)): string {
  const since = (i: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
  return `# ${tag}\nquery($id: BigInt!) { webhookById(id: $id) { ${Array.from({ length: n }, (_, i) =>
    `a${i}: history(since: "${since(i)}", first: 1) { nodes { id createdAt } }`).join(' ')} } }`;
}

/** One answer to a new text: when it came (ms since the epoch), its status, extensions.code and Retry-After. */
export interface FloodAnswer {
  at: number;
  status: number;
  code?: string;
  retryAfter: string | null;
}

const CHILD = fileURLToPath(new URL('./new-texts-child.ts', import.meta.url));

/**
 * Starts sending new slow texts of the webhook with the token, `inFlight` at once, each
 * sent as soon as the one before it is answered, or `pauseAfterRefusalMs` after a
 * refusal (429), whatever its Retry-After says; `onAnswer` is told of each answer.
 * stop() resolves once the last answer is in.
 */
export function floodOfNewTexts(options: {
  url: string; token: string; webhookId: string; inFlight: number; pauseAfterRefusalMs: number; onAnswer: (answer: FloodAnswer) => void;
}) {
  const child = fork(CHILD, {
    env: { ...process.env, FLOOD_URL: options.url, FLOOD_TOKEN: options.token, FLOOD_WEBHOOK_ID: options.webhookId, FLOOD_IN_FLIGHT: String(options.inFlight),
      FLOOD_PAUSE_AFTER_REFUSAL_MS: String(options.pauseAfterRefusalMs) },
    execArgv: process.execArgv,
  });
  const stopped = new Promise<void>((resolve, reject) => {
    child.on('message', (message: FloodAnswer | 'stopped') => {
      if (message === 'stopped') resolve();
      else options.onAnswer(message);
    });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`the flood's process exited ${code}`))));
  });
  return {
    async stop(): Promise<void> {
      child.send('stop');
      await stopped;
    },
  };
}
