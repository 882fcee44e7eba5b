// The bookkeeping of a company's rate of requests (api/request-rate.ts) and of the
// tokens kept verified (api/auth.ts), on a clock of the test's own.
import test from 'ava';
import { AuthError, signToken, VerifiedTokens } from '../../api/auth.ts';
import { RequestRate } from '../../api/request-rate.ts';

test('a company may send its burst at once, then its rate; another company is counted apart', (t) => {
  let now = 0;
  const rate = new RequestRate({ perSecond: 10, burst: 3 }, () => now);
  t.deepEqual([rate.take('a'), rate.take('a'), rate.take('a')], [0, 0, 0]);
  const wait = rate.take('a');
  t.true(wait > 0 && wait <= 100, `refused, for about one request's time (${wait} ms)`);
  t.is(rate.take('b'), 0, 'another company has its own bucket');
  now += wait;
  t.is(rate.take('a'), 0, 'after the wait it said, one more');
  t.true(rate.take('a') > 0);
  now += 10_000;
  t.is(rate.take('c'), 0);
  t.is(rate.companies, 1, 'companies whose bucket filled again are forgotten');
});

test('a token kept verified is refused once it has expired; a token of another secret is never kept', async (t) => {
  const secret = 'a secret of this test, long enough for HS256';
  let nowMs = Date.now();
  const tokens = new VerifiedTokens({ secret, maxLifetimeSeconds: 86_400, size: 2, nowMs: () => nowMs });
  const header = `Bearer ${await signToken(secret, { companyId: '7', expiresIn: '30m' })}`;
  t.is((await tokens.verify(header)).company_id, '7');
  t.is(tokens.size, 1);
  t.is((await tokens.verify(header)).company_id, '7');
  nowMs += 31 * 60_000;
  await t.throwsAsync(tokens.verify(header), { instanceOf: AuthError, message: /"exp" claim timestamp check failed/ });
  t.is(tokens.size, 0);
  const forged = `Bearer ${await signToken('another secret, as long as the first one', { companyId: '7' })}`;
  await t.throwsAsync(tokens.verify(forged), { instanceOf: AuthError });
  await t.throwsAsync(tokens.verify(forged), { instanceOf: AuthError });
  t.is(tokens.size, 0);
});

test('the tokens kept are the latest used, at most their number', async (t) => {
  const secret = 'a secret of this test, long enough for HS256';
  const tokens = new VerifiedTokens({ secret, maxLifetimeSeconds: 86_400, size: 2 });
  const headers = await Promise.all(['1', '2', '3'].map(async (companyId) => `Bearer ${await signToken(secret, { companyId })}`));
  for (const header of headers) await tokens.verify(header);
  t.is(tokens.size, 2);
});

// Kept by the whole header's text, one valid token sent as "bearer", "BEARER", with two
// spaces, with a tab… was kept once a spelling: a company's own token, spelled anew each
// request, pushed every other company's out of the keeping (each then verified again).
test('one token is kept once, however its header spells "Bearer" and the space after it', async (t) => {
  const secret = 'a secret of this test, long enough for HS256';
  const tokens = new VerifiedTokens({ secret, maxLifetimeSeconds: 86_400, size: 10 });
  const other = `Bearer ${await signToken(secret, { companyId: '8' })}`;
  await tokens.verify(other);
  const token = await signToken(secret, { companyId: '7' });
  for (const header of [`Bearer ${token}`, `bearer ${token}`, `BEARER  ${token}`, `Bearer\t${token}`, ` Bearer ${token} `]) {
    t.is((await tokens.verify(header)).company_id, '7');
  }
  t.is(tokens.size, 2, 'the token once, beside the other company\'s');
});
