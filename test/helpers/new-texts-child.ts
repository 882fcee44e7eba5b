// The process of floodOfNewTexts (test/helpers/new-texts.ts): sends new slow texts,
// FLOOD_IN_FLIGHT at once, tells its parent of each answer, and stops when told. A
// refused text is followed by the next FLOOD_PAUSE_AFTER_REFUSAL_MS later, whatever
// Retry-After says.
import { slowText, type FloodAnswer } from './new-texts.ts';

const { FLOOD_URL, FLOOD_TOKEN, FLOOD_WEBHOOK_ID, FLOOD_IN_FLIGHT, FLOOD_PAUSE_AFTER_REFUSAL_MS } = process.env;
let stopping = false;
let sent = 0;
process.on('message', (message) => {
  if (message === 'stop') stopping = true;
});

async function sendUntilStopped(): Promise<void> {
  while (!stopping) {
    const response = await fetch(`${FLOOD_URL}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${FLOOD_TOKEN}` },
      body: JSON.stringify({ query: slowText(`text ${sent++}`), variables: { id: FLOOD_WEBHOOK_ID } }),
    });
    const body = (await response.json()) as { errors?: Array<{ extensions?: { code?: string } }> };
    const answer: FloodAnswer = {
      at: performance.timeOrigin + performance.now(),
      status: response.status,
      code: body.errors?.[0]?.extensions?.code,
      retryAfter: response.headers.get('retry-after'),
    };
    process.send!(answer);
    if (response.status === 429) await new Promise((resolve) => setTimeout(resolve, Number(FLOOD_PAUSE_AFTER_REFUSAL_MS)));
  }
}

await Promise.all(Array.from({ length: Number(FLOOD_IN_FLIGHT) }, sendUntilStopped));
process.send!('stopped', () => process.disconnect());
