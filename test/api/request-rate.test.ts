// Each company's rate of requests (api/server.ts, API_COMPANY_REQUESTS_PER_SECOND): a
// client that sends cheap requests as fast as it can, each sent again at once whatever
// the answer, is refused by name past its company's rate, before its body is read, and
// another company's requests are all answered meanwhile. What each kind of request
// costs the API's one thread is logged (the flood comes from a process of its own, so
// this process's thread is the API's): times are not asserted, the machine is shared.
import test from 'ava';
import { DEFAULT_LIMITS } from '../../api/limits.ts';
import { TOKEN_FAILURES_UNBOUNDED, useTestDatabaseWithApi } from '../helpers/api.ts';
import { cheapRequests, type CheapRequestsAnswered } from '../helpers/cheap-requests.ts';
import { factories } from '../helpers/factories.ts';
import { threadCpuMs } from '../../api/planning-budget.ts';

// (the page's modules are plain JavaScript for the browser, without types)
const pageApiModule: string = '../../page/api.js';
const { REPORT } = (await import(pageApiModule)) as { REPORT: string };

// (no bound on an address's refused tokens: what a 401 costs is measured here, the
// bound itself in test/api/token-failure-rate.test.ts)
// A company's rate of a tenth of the default's: the API promises refusals only to a
// client that sends faster than its company's rate, and "as fast as it can" on a loaded
// machine was slower than the default 20 a second (a fresh-clone run: 1,500 requests in
// 154 s, 10 a second, every one served, none refused). At 2 a second any flood passes it.
const LIMITS = { ...TOKEN_FAILURES_UNBOUNDED, companyRequestsPerSecond: DEFAULT_LIMITS.companyRequestsPerSecond / 10, companyRequestBurst: DEFAULT_LIMITS.companyRequestBurst / 10 };
const { db, api } = useTestDatabaseWithApi(test, { limits: LIMITS });

/** extensions.code of a request refused for its company's rate */
const RATE = 'REQUEST_RATE_EXCEEDED';
const FLOOD = 1_500;

/** The requests' answers, and the API's thread time each took on average (µs), logged. */
async function flood(t: { log: (...values: unknown[]) => void }, what: string, authorization: string | undefined): Promise<CheapRequestsAnswered> {
  const before = threadCpuMs();
  const started = performance.now();
  const answered = await cheapRequests({ url: api().api.url, authorization, count: FLOOD, inFlight: 4 });
  const seconds = (performance.now() - started) / 1000;
  t.log(`${what}: ${FLOOD} requests in ${seconds.toFixed(1)} s (${(FLOOD / seconds).toFixed(0)} a second), ` +
    `${(((threadCpuMs() - before) * 1000) / FLOOD).toFixed(0)} µs of the API's thread each: ${JSON.stringify(answered.counts)}`);
  return answered;
}

test.serial('a company that sends cheap requests as fast as it can is refused past its rate, and another company\'s requests are all answered', async (t) => {
  const f = factories(db().pool);
  const [a, b] = [await f.company(), await f.company()];
  await f.webhook({ companyId: b.id, actions: ['contact.created'] });
  const [aToken, bToken] = [await api().token(a.id, 'webhook_viewer'), await api().token(b.id, 'webhook_viewer')];
  const report = () => api().gql(bToken, REPORT, { since: '2026-01-01T00:00:00Z', until: '2026-02-01T00:00:00Z' });
  t.is((await report()).errors, undefined);

  let flooding = true;
  const started = performance.now();
  const aAnswered = flood(t, 'A, one token, as fast as it can', `Bearer ${aToken}`).finally(() => { flooding = false; });
  const bStatuses: number[] = [];
  const bErrors: unknown[] = [];
  // B keeps to half its own company's rate: a report answered in a few milliseconds,
  // asked again at once, went past it (160 a second in a fresh-clone run) and was
  // refused for its own rate, not for A's
  const bEveryMs = 1000 / (LIMITS.companyRequestsPerSecond / 2);
  while (flooding) {
    const asked = performance.now();
    const answer = await report();
    bStatuses.push(answer.status);
    if (answer.errors) bErrors.push(answer.errors);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, bEveryMs - (performance.now() - asked))));
  }
  const answered = await aAnswered;
  const seconds = (performance.now() - started) / 1000;
  t.log(`B: ${bStatuses.length} reports while A flooded`);

  t.true(bStatuses.length > 0);
  t.deepEqual(bStatuses.filter((status) => status !== 200), [], 'B is never refused');
  t.deepEqual(bErrors, []);
  const served = answered.counts['200'] ?? 0;
  const refused = answered.counts[`429 ${RATE}`] ?? 0;
  t.is(served + refused, FLOOD, `A is refused for its rate and nothing else: ${JSON.stringify(answered.counts)}`);
  t.true(refused > 0, 'A is refused by name');
  // (a second of slack: the bucket fills while the flood's process starts)
  t.true(served <= LIMITS.companyRequestBurst + Math.ceil((seconds + 1) * LIMITS.companyRequestsPerSecond),
    `A is served at most its burst and its rate: ${served} in ${seconds.toFixed(1)} s`);
  t.true((answered.leastRetryAfter ?? 0) >= 1, 'each refusal says when to send again');
});

test.serial('requests without a token, with a bad one, or past their company\'s rate are refused by name; what each costs the thread is logged', async (t) => {
  const none = await flood(t, 'no Authorization header', undefined);
  t.deepEqual(none.counts, { '401 UNAUTHENTICATED': FLOOD });
  const forged = await flood(t, 'a token of another secret',
    'Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoid2ViaG9va19hZG1pbiIsImNvbXBhbnlfaWQiOiIxIn0.c2lnbmF0dXJlLW9mLWFub3RoZXItc2VjcmV0LXh4eHh4eA');
  t.deepEqual(forged.counts, { '401 UNAUTHENTICATED': FLOOD });
  // a genuine token, its company past its rate after its burst: refused after its token
  const company = await factories(db().pool).company();
  const spent = await flood(t, 'a company past its rate', `Bearer ${await api().token(company.id, 'webhook_viewer')}`);
  t.deepEqual(Object.keys(spent.counts).sort(), ['200', `429 ${RATE}`]);
});
