// Each company's budget of the API's one thread for new query texts
// (api/planning-budget.ts): a company that sends a stream of texts the API has not
// seen, each a comment apart and each slow to plan within every other limit, is
// refused past its budget, and another company's requests, whose texts are planned
// already, are not left waiting behind its planning.
import test from 'ava';
import { DEFAULT_LIMITS } from '../../api/limits.ts';
import { CACHED_PLANS_PER_OPERATION } from '../../api/preset.ts';
import { RATE_UNBOUNDED, startTestApi, useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { floodOfNewTexts, type FloodAnswer } from '../helpers/new-texts.ts';
import { scrape } from '../helpers/prometheus.ts';

// (the page's modules are plain JavaScript for the browser, without types)
const pageApiModule: string = '../../page/api.js';
const page = (await import(pageApiModule)) as Record<string, (...args: any[]) => Promise<any>> & { REPORT: string };
const { REPORT } = page;

const { db, api } = useTestDatabaseWithApi(test, { limits: RATE_UNBOUNDED });

/** A budget any new text spends, filled too slowly to matter while a test runs. */
const TINY_BUDGET = { ...RATE_UNBOUNDED, companyPlanningBurstMs: 0.001, companyPlanningMsPerSecond: 0.001 };

/** extensions.code of a new text refused for its company's budget */
const NEW_QUERIES = 'TOO_MANY_NEW_QUERIES';

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

  // A, from a process of its own: as many new texts at once as its share runs
  // (API_COMPANY_MAX_IN_FLIGHT), each sent as soon as the one before is answered, or
  // 50 ms after a refusal, Retry-After or not; until FLOOD_MS after its first refusal
  // (without a budget, A is never refused: 20 s). (Its refusals cost the thread too, as
  // any request does: sent again at once, 600 in 3 s, B's median was 75 ms, 18 alone.
  // A flood of requests, whatever they ask, is not what this measures.)
  const FLOOD_MS = 3_000;
  const now = () => performance.timeOrigin + performance.now();
  // (its budget is of the thread's CPU: on a machine loaded by other work its texts
  // take longer by the clock to spend it, so the flood waits for its first refusal
  // up to a minute and a half)
  let floodEnds = now() + 90_000;
  let refusedFirstAt: number | undefined;
  const aAnswers: FloodAnswer[] = [];
  const flood = floodOfNewTexts({
    url: api().api.url, token: aToken, webhookId: aHook.id, inFlight: DEFAULT_LIMITS.companyMaxInFlight, pauseAfterRefusalMs: 50,
    onAnswer(answer) {
      aAnswers.push(answer);
      if (answer.code === NEW_QUERIES && refusedFirstAt === undefined) {
        refusedFirstAt = answer.at;
        floodEnds = refusedFirstAt + FLOOD_MS;
      }
    },
  });
  // B: the page's report, over and over, while A's flood lasts
  const beside: Array<{ at: number; ms: number }> = [];
  while (now() < floodEnds) {
    const started = now();
    const answer = await report();
    t.is(answer.status, 200);
    t.is(answer.errors, undefined);
    beside.push({ at: started, ms: now() - started });
  }
  await flood.stop();

  const planned = (answers: typeof aAnswers) => answers.filter((answer) => answer.status === 200 && answer.code === undefined).length;
  const refused = aAnswers.filter((answer) => answer.code === NEW_QUERIES);
  // once A's budget is spent (its first refusal), A plans a text now and then (each
  // is 40 ms at least, and its budget fills at 20 ms a second: at most one a turn
  // of its share), and B is answered as fast as alone
  const spent = refusedFirstAt ?? 0;
  const plannedSince = planned(aAnswers.filter((answer) => answer.at > spent));
  const whileRefused = beside.filter((request) => request.at > spent).map((request) => request.ms);
  const metrics = await scrape(api().api.url);
  t.log(`A: ${planned(aAnswers)} texts planned, ${refused.length} refused, ${plannedSince} planned after its first refusal ` +
    `(plans made: ${metrics.get('bpd_webhooks_api_planning_seconds_count')} in ${((metrics.get('bpd_webhooks_api_planning_seconds_sum') ?? 0) * 1000).toFixed(0)} ms); ` +
    `B while A is refused: p50 ${quantile(whileRefused, 0.5).toFixed(0)} ms, p99 ${quantile(whileRefused, 0.99).toFixed(0)} ms ` +
    `over ${whileRefused.length} requests (alone: p50 ${quantile(alone, 0.5).toFixed(0)} ms, p99 ${quantile(alone, 0.99).toFixed(0)} ms)`);
  const turns = Math.ceil((FLOOD_MS / 1000) * DEFAULT_LIMITS.companyPlanningMsPerSecond / 40) + 1;
  // (B's times are logged, not asserted: on a machine loaded by other work B waits for
  // a core whatever A does, and a timed bound fails for it; what bounds A's hold on the
  // thread is that it is refused, and the count of its plans while refused, below.
  // The times on a quiet machine: docs/api-limits.md)
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
    await page.fetchSetupFacts();
    await page.searchChoices('user', 'a');
    await page.searchChoices('status', 'a');
    await page.fetchNames({ users: ['1'], statuses: ['1'] });
    await page.fetchWebhook(hook.id);
    await page.fetchWebhookToEdit(hook.id);
    await page.fetchHistoryCount({ webhookId: hook.id, ...since, state: null });
    const history = await page.fetchHistory({ webhookId: hook.id, ...since, state: null, offset: 0, first: 25 });
    await page.fetchHistory({ webhookId: hook.id, ...since, state: null, offset: 0, first: 25, fromOldest: true });
    const delivery = history.firings[0].id;
    await page.fetchAttempts(delivery);
    await page.fetchAttempts(delivery, 5);
    await page.fetchFiring(delivery);
    await page.fetchAuditLog(hook.id);
    await page.fetchBackfills();
    const created = await page.createWebhook({ name: 'Made on the page', url: 'https://receiver.example.com/in', fields: ['first_name'],
      actions: ['contact.created'], statusId: null, userId: null, ignoreSources: [], watchFields: [], conditions: null });
    const id = created.webhook.id;
    await page.updateWebhook(id, { name: 'Renamed on the page', url: 'https://receiver.example.com/in', fields: ['first_name'],
      actions: ['contact.created'], statusId: null, userId: null, ignoreSources: [], watchFields: [], conditions: null });
    // (a cap, then the order alone: each of its texts, and the read of the window it keeps)
    const defaults = { maxInFlight: null, rateLimit: null, coalesceSeconds: null, ordered: false };
    await page.saveDeliverySettings(id, { ...defaults, maxInFlight: 2 }, defaults);
    await page.saveDeliverySettings(id, { ...defaults, maxInFlight: 2, ordered: true }, { ...defaults, maxInFlight: 2 });
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

test.serial('past its budget a company\'s new text is refused before it is parsed, with Retry-After; texts already planned run, whoever planned them, and other companies are not refused', async (t) => {
  // a budget any new text spends, however little of the thread's CPU it takes (a small
  // text may take under a millisecond): a microsecond at once, filled a microsecond a second
  const small = await startTestApi(db().url, { limits: TINY_BUDGET });
  try {
    const f = factories(db().pool);
    const [a, b, c] = [await f.company(), await f.company(), await f.company()];
    const [aToken, bToken] = [await small.token(a.id, 'webhook_viewer'), await small.token(b.id, 'webhook_viewer')];
    const plansMade = async () => (await scrape(small.api.url)).get('bpd_webhooks_api_planning_seconds_count') ?? 0;
    // B plans a text; A's first new text is within its budget, and takes more than it
    t.is((await small.gql(bToken, '{ allWebhooks { totalCount } }')).errors, undefined);
    t.is((await small.gql(aToken, '{ currentCompanyId }')).errors, undefined);
    const plans = await plansMade();
    // a new text now: refused before it is parsed (a text that does not parse is
    // refused for the budget, not for its syntax) and before it is planned
    for (const text of ['{ currentCompanyId currentActor }', '{ currentCompanyId ']) {
      const response = await fetch(`${small.api.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${aToken}` },
        body: JSON.stringify({ query: text }),
      });
      t.is(response.status, 429);
      const seconds = Number(response.headers.get('retry-after'));
      t.true(Number.isSafeInteger(seconds) && seconds >= 1, `Retry-After: ${seconds}`);
      const body = (await response.json()) as { data?: unknown; errors: Array<{ message: string; extensions: Record<string, unknown> }> };
      t.is(body.data, undefined);
      t.deepEqual(body.errors[0].extensions, { code: NEW_QUERIES, retryAfter: seconds, statusCode: 429 });
      t.regex(body.errors[0].message, /API_COMPANY_PLANNING_MS_PER_SECOND.*API_COMPANY_PLANNING_BURST_MS.*variables/);
    }
    t.is(await plansMade(), plans);
    t.is((await scrape(small.api.url)).get('bpd_webhooks_api_new_texts_refused_total'), 2);
    // texts already planned run: its own, and the one B planned
    t.deepEqual((await small.gql(aToken, '{ currentCompanyId }')).data, { currentCompanyId: a.id });
    t.deepEqual((await small.gql(aToken, '{ allWebhooks { totalCount } }')).data, { allWebhooks: { totalCount: 0 } });
    // another company's budget is its own
    t.deepEqual((await small.gql(await small.token(c.id, 'webhook_viewer'), '{ company: currentCompanyId }')).data, { company: c.id });
    t.is(await plansMade(), plans + 1);
  } finally {
    await small.stop();
  }
});

test.serial('a text kept that is planned anew for its variables (@include) counts as a new text: past its company\'s budget it is refused before it is planned again', async (t) => {
  const small = await startTestApi(db().url, { limits: TINY_BUDGET });
  try {
    const f = factories(db().pool);
    const [a, b] = [await f.company(), await f.company()];
    const [aToken, bToken] = [await small.token(a.id, 'webhook_viewer'), await small.token(b.id, 'webhook_viewer')];
    const plansMade = async () => (await scrape(small.api.url)).get('bpd_webhooks_api_planning_seconds_count') ?? 0;
    // each choice of $a, $b, $c is a plan of its own, and the text keeps
    // CACHED_PLANS_PER_OPERATION of them: sent in turn, the text is planned each time
    const text = `query($a: Boolean!, $b: Boolean!, $c: Boolean!) {
      a: currentCompanyId @include(if: $a) b: currentCompanyId @include(if: $b) c: currentCompanyId @include(if: $c) }`;
    const choice = (n: number) => ({ a: (n & 1) > 0, b: (n & 2) > 0, c: (n & 4) > 0 });
    const before = await plansMade();
    const answers = [];
    for (let n = 0; n < 8; n++) answers.push(await small.gql(aToken, text, choice(n)));
    // its first plan (the new text) spent A's budget, and the text was planned again
    // for each choice until it had made more plans than it keeps: then it is a new
    // text each time, and refused
    t.is(await plansMade(), before + 1 + CACHED_PLANS_PER_OPERATION);
    t.deepEqual(answers.map((answer) => answer.errors?.[0]?.extensions?.code ?? answer.status),
      [...Array(1 + CACHED_PLANS_PER_OPERATION).fill(200), ...Array(7 - CACHED_PLANS_PER_OPERATION).fill(NEW_QUERIES)]);
    // another company's budget is its own: the text runs for it, planned anew
    t.deepEqual((await small.gql(bToken, text, choice(7))).data, { a: b.id, b: b.id, c: b.id });
  } finally {
    await small.stop();
  }
});
