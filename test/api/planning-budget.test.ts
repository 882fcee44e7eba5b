// Each company's budget of the API's one thread for new query texts
// (api/planning-budget.ts): a company that sends a stream of texts the API has not
// seen, each a comment apart and each slow to plan within every other limit, is
// refused past its budget, and another company's requests, whose texts are planned
// already, are not left waiting behind its planning.
import test from 'ava';
import { DEFAULT_LIMITS } from '../../api/limits.ts';
import { startTestApi, useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { scrape } from '../helpers/prometheus.ts';

// (the page's modules are plain JavaScript for the browser, without types)
const pageApiModule: string = '../../page/api.js';
const page = (await import(pageApiModule)) as Record<string, (...args: any[]) => Promise<any>> & { REPORT: string };
const { REPORT } = page;

const { db, api } = useTestDatabaseWithApi(test);

/** extensions.code of a new text refused for its company's budget */
const NEW_QUERIES = 'TOO_MANY_NEW_QUERIES';

/**
 * A text of `n` one-row pages of a webhook's history, each an alias of its own: within
 * API_MAX_PLANNED_FIELDS at n = 24, and some 40 to 250 ms of the thread to plan. `tag`
 * makes the text one the API has not seen.
 */
function slowText(tag: string, n = Math.floor((DEFAULT_LIMITS.maxPlannedFields - 1) / 2)): string {
  const since = (i: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
  return `# ${tag}\nquery($id: BigInt!) { webhookById(id: $id) { ${Array.from({ length: n }, (_, i) =>
    `a${i}: history(since: "${since(i)}", first: 1) { nodes { id createdAt } }`).join(' ')} } }`;
}

async function post(token: string, query: string, variables: Record<string, unknown>) {
  const response = await fetch(`${api().api.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: unknown; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
  return { status: response.status, retryAfter: response.headers.get('retry-after'), ...body };
}

/** The value at quantile q of the values. */
function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * q) - 1)]!;
}

test.serial('a company that sends new texts as fast as its share allows is refused past its budget of the thread, and another company\'s planned requests do not wait behind it', async (t) => {
  const f = factories(db().pool);
  const [a, b] = [await f.company(), await f.company()];
  const aHook = await f.webhook({ companyId: a.id, actions: ['contact.created'] });
  await f.webhook({ companyId: b.id, actions: ['contact.created'] });
  const [aToken, bToken] = [await api().token(a.id, 'webhook_viewer'), await api().token(b.id, 'webhook_viewer')];
  const report = () => post(bToken, REPORT, { since: '2026-01-01T00:00:00Z', until: '2026-02-01T00:00:00Z' });

  // B's report alone, once planned: what it takes on this machine now
  t.is((await report()).errors, undefined);
  const alone: number[] = [];
  for (let i = 0; i < 30; i++) {
    const started = performance.now();
    t.is((await report()).status, 200);
    alone.push(performance.now() - started);
  }

  // A: as many new texts at once as its share runs (API_COMPANY_MAX_IN_FLIGHT), each
  // sent again as soon as the one before is answered, until FLOOD_MS after its first refusal
  const FLOOD_MS = 3_000;
  // (without a budget, A is never refused: the flood ends after 20 s)
  let floodEnds = performance.now() + 20_000;
  let sent = 0;
  let refusedFirstAt: number | undefined;
  const aAnswers: Array<{ at: number; status: number; code: unknown; retryAfter: string | null }> = [];
  const flood = Array.from({ length: DEFAULT_LIMITS.companyMaxInFlight }, async () => {
    while (performance.now() < floodEnds) {
      const answer = await post(aToken, slowText(`text ${sent++}`), { id: aHook.id });
      const code = answer.errors?.[0]?.extensions?.code;
      aAnswers.push({ at: performance.now(), status: answer.status, code, retryAfter: answer.retryAfter });
      if (code === NEW_QUERIES && refusedFirstAt === undefined) {
        refusedFirstAt = performance.now();
        floodEnds = refusedFirstAt + FLOOD_MS;
      }
    }
  });
  // B: the page's report, over and over, while A's flood lasts
  const beside: Array<{ at: number; ms: number }> = [];
  while (performance.now() < floodEnds) {
    const started = performance.now();
    const answer = await report();
    t.is(answer.status, 200);
    t.is(answer.errors, undefined);
    beside.push({ at: started, ms: performance.now() - started });
  }
  await Promise.all(flood);

  const planned = (answers: typeof aAnswers) => answers.filter((answer) => answer.status === 200 && answer.code === undefined).length;
  const refused = aAnswers.filter((answer) => answer.code === NEW_QUERIES);
  // once A's budget is spent (its first refusal), A plans a text now and then (each
  // is 40 ms at least, and its budget fills at 20 ms a second: at most one a turn
  // of its share), and B is answered as if alone
  const spent = refusedFirstAt ?? 0;
  const plannedSince = planned(aAnswers.filter((answer) => answer.at > spent));
  const whileRefused = beside.filter((request) => request.at > spent).map((request) => request.ms);
  const metrics = await scrape(api().api.url);
  t.log(`A: ${planned(aAnswers)} texts planned, ${refused.length} refused, ${plannedSince} planned after its first refusal ` +
    `(plans made: ${metrics.get('bpd_webhooks_api_planning_seconds_count')} in ${((metrics.get('bpd_webhooks_api_planning_seconds_sum') ?? 0) * 1000).toFixed(0)} ms); ` +
    `B while A is refused: p50 ${quantile(whileRefused, 0.5).toFixed(0)} ms, p99 ${quantile(whileRefused, 0.99).toFixed(0)} ms ` +
    `over ${whileRefused.length} requests (alone: p50 ${quantile(alone, 0.5).toFixed(0)} ms, p99 ${quantile(alone, 0.99).toFixed(0)} ms)`);
  const turns = Math.ceil((FLOOD_MS / 1000) * DEFAULT_LIMITS.companyPlanningMsPerSecond / 40) + 1;
  t.true(quantile(whileRefused, 0.5) < quantile(alone, 0.99) + 20, 'B\'s median request is as fast as alone');
  t.true(quantile(whileRefused, 0.99) < quantile(alone, 0.99) + 300, 'B\'s p99 waits behind one of A\'s plans at most');
  t.true(refused.length > 0, `A is refused by name, at last: ${planned(aAnswers)} texts planned, then ${JSON.stringify(aAnswers.at(-1))}`);
  t.true(refused.every((answer) => answer.status === 429 && Number(answer.retryAfter) >= 1), 'each refusal is a 429 with Retry-After');
  t.deepEqual(aAnswers.filter((answer) => answer.status !== 200 && answer.code !== NEW_QUERIES), [], 'A is refused for nothing else');
  t.true(plannedSince <= turns * DEFAULT_LIMITS.companyMaxInFlight, `A planned ${plannedSince} texts while refused`);
});

test.serial('the Reports page\'s own texts, each new to a fresh API and sent by one company, are within its budget: none is refused', async (t) => {
  // a fresh API: none of the page's texts is planned yet, and this company pays for all
  const fresh = await startTestApi(db().url);
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.contact(company.id);
  const token = await fresh.token(company.id, 'webhook_admin');
  // the page's own functions (page/api.js), as the browser runs them, to the fresh API
  const answered: number[] = [];
  const saved = { fetch: globalThis.fetch, sessionStorage: (globalThis as any).sessionStorage };
  (globalThis as any).sessionStorage = { getItem: () => token, setItem() {}, removeItem() {} };
  globalThis.fetch = async (input, init) => {
    const response = await saved.fetch(new URL(String(input), fresh.api.url), init);
    answered.push(response.status);
    return response;
  };
  try {
    const since = { from: '2026-01-01T00:00:00Z', to: '2027-01-01T00:00:00Z' };
    await page.fetchReport(since);
    await page.fetchChoices();
    await page.fetchWebhook(hook.id);
    await page.fetchHistoryCount({ webhookId: hook.id, ...since, state: null });
    const history = await page.fetchHistory({ webhookId: hook.id, ...since, state: null, offset: 0, first: 25 });
    await page.fetchHistory({ webhookId: hook.id, ...since, state: null, offset: 0, first: 25, fromOldest: true });
    const delivery = history.firings[0].id;
    await page.fetchAttempts(delivery);
    await page.fetchAttempts(delivery, 5);
    await page.fetchFiring(delivery);
    await page.fetchDeliverySettings(hook.id);
    await page.fetchAuditLog(hook.id);
    await page.fetchBackfills();
    const created = await page.createWebhook({ name: 'Made on the page', url: 'https://receiver.example.com/in', fields: ['first_name'],
      actions: ['contact.created'], statusId: null, userId: null, ignoreSources: [], watchFields: [], conditions: null });
    const id = created.webhook.id;
    await page.updateWebhook(id, { name: 'Renamed on the page', url: 'https://receiver.example.com/in', fields: ['first_name'],
      actions: ['contact.created'], statusId: null, userId: null, ignoreSources: [], watchFields: [], conditions: null });
    await page.saveDeliverySettings(id, { maxInFlight: 2, rateLimit: null, coalesceSeconds: null, ordered: false });
    await page.setWebhookEnabled(id, false);
    await page.setWebhookEnabled(id, true);
    await page.rotateSecret(id);
    await page.sendTest(id);
    const backfill = await page.startBackfill(id);
    if (backfill?.id) await page.cancelBackfill(backfill.id);
    await page.deleteWebhook(id);
    const metrics = await scrape(fresh.api.url);
    t.log(`${answered.length} requests, ${metrics.get('bpd_webhooks_api_planning_seconds_count')} plans made in ` +
      `${((metrics.get('bpd_webhooks_api_planning_seconds_sum') ?? 0) * 1000).toFixed(0)} ms`);
    t.true(answered.length >= 20);
    t.deepEqual(answered.filter((status) => status !== 200), [], 'no request of the page is refused');
  } finally {
    globalThis.fetch = saved.fetch;
    (globalThis as any).sessionStorage = saved.sessionStorage;
    await fresh.stop();
  }
});
