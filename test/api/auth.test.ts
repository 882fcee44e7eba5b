// Token rules on their own (no database): a token must expire and live at most the
// configured lifetime; the tokens this project issues stay within the default.
import test from 'ava';
import { SignJWT } from 'jose';
import {
  AuthError,
  DEFAULT_MAX_LIFETIME,
  DEFAULT_TOKEN_LIFETIME,
  durationSeconds,
  maxTokenLifetime,
  signToken,
  verifyAuthorization,
} from '../../api/auth.ts';

const SECRET = 'a-secret-for-the-token-rules-only';

test('JWT_MAX_LIFETIME: 24h unless set; a bad value is named', (t) => {
  t.is(DEFAULT_MAX_LIFETIME, '24h');
  t.is(maxTokenLifetime({}), 86_400);
  t.is(maxTokenLifetime({ JWT_MAX_LIFETIME: '15m' }), 900);
  t.is(maxTokenLifetime({ JWT_MAX_LIFETIME: '7d' }), 604_800);
  for (const bad of ['forever', '0h', '-1h', '12', '1.5h', '1w']) {
    t.throws(() => maxTokenLifetime({ JWT_MAX_LIFETIME: bad }), { message: /^JWT_MAX_LIFETIME must be a duration such as 24h/ }, bad);
  }
  t.is(durationSeconds('90s'), 90);
  t.is(durationSeconds('soon'), null);
});

test('the tokens this project issues by default are accepted under the default lifetime', async (t) => {
  t.true(durationSeconds(DEFAULT_TOKEN_LIFETIME)! <= durationSeconds(DEFAULT_MAX_LIFETIME)!);
  const token = await signToken(SECRET, { companyId: 3 });
  t.like(await verifyAuthorization(`Bearer ${token}`, SECRET, { maxLifetimeSeconds: 86_400 }), { company_id: '3', role: 'webhook_admin' });
  const day = await signToken(SECRET, { companyId: 3, expiresIn: '24h' });
  await t.notThrowsAsync(verifyAuthorization(`Bearer ${day}`, SECRET, { maxLifetimeSeconds: 86_400 }));
});

test('the lifetime is configurable: a shorter maximum refuses a longer token', async (t) => {
  const token = await signToken(SECRET, { companyId: 3, expiresIn: '2h' });
  await t.notThrowsAsync(verifyAuthorization(`Bearer ${token}`, SECRET, { maxLifetimeSeconds: 7200 }));
  const error = await t.throwsAsync(verifyAuthorization(`Bearer ${token}`, SECRET, { maxLifetimeSeconds: 3600 }), { instanceOf: AuthError });
  t.regex(error!.message, /lives longer than the 3600 seconds/);
});

test('a token without exp is refused, whatever else it says', async (t) => {
  const token = await new SignJWT({ role: 'webhook_admin', company_id: '1' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt()
    .sign(new TextEncoder().encode(SECRET));
  await t.throwsAsync(verifyAuthorization(`Bearer ${token}`, SECRET), { instanceOf: AuthError, message: /claim "exp" is required/ });
});
