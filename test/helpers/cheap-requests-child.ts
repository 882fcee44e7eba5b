// The process of cheapRequests (test/helpers/cheap-requests.ts).
import type { CheapRequestsAnswered } from './cheap-requests.ts';

const { CHEAP_URL, CHEAP_AUTHORIZATION, CHEAP_COUNT, CHEAP_IN_FLIGHT } = process.env;
const answered: CheapRequestsAnswered = { counts: {}, leastRetryAfter: null };
let left = Number(CHEAP_COUNT);

async function sendWhileLeft(): Promise<void> {
  while (left > 0) {
    left--;
    const response = await fetch(`${CHEAP_URL}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(CHEAP_AUTHORIZATION ? { authorization: CHEAP_AUTHORIZATION } : {}) },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    const body = (await response.json()) as { errors?: Array<{ extensions?: { code?: string } }> };
    const key = `${response.status} ${body.errors?.[0]?.extensions?.code ?? ''}`.trim();
    answered.counts[key] = (answered.counts[key] ?? 0) + 1;
    if (response.status === 429) {
      const seconds = Number(response.headers.get('retry-after'));
      answered.leastRetryAfter = Math.min(answered.leastRetryAfter ?? seconds, seconds);
    }
  }
}

await Promise.all(Array.from({ length: Number(CHEAP_IN_FLIGHT) }, sendWhileLeft));
process.send!(answered, () => process.disconnect());
