// Token rules on their own (no database): a token must expire and live at most the
// configured lifetime; the tokens this project issues stay within the default; the
// secret that signs them is long enough not to be guessed from one of them.
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
  VerifiedTokens,
} from '../../api/auth.ts';
import { jwtSecret, JWT_SECRET_MIN_BYTES, refuseWeakJwtSecret } from '../../api/jwt-secret.ts';
import { startApi } from '../../api/server.ts';

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

test('a short JWT_SECRET is refused at start: an admin of one company finds it from its own token and signs another company\'s', async (t) => {
  // the token an admin of company 1 holds, of an API whose secret is a word
  const WEAK = 'changeme';
  const held = await signToken(WEAK, { companyId: 1, sub: 'ann@one.example' });
  // offline, guesses tried against the held token's own signature (HS256 checks cost
  // microseconds: a dictionary, or every secret of 8 lower-case letters, is within reach)
  const found = [];
  for (const guess of ['secret', 'password', 'changeme', 'jwt-secret']) {
    if (await verifyAuthorization(`Bearer ${held}`, guess, { maxLifetimeSeconds: 86_400 }).then(() => true, () => false)) found.push(guess);
  }
  t.deepEqual(found, [WEAK]);
  // and with it, a token of company 2 that such an API took as genuine
  const forged = await signToken(found[0]!, { companyId: 2 });
  t.like(await verifyAuthorization(`Bearer ${forged}`, WEAK, { maxLifetimeSeconds: 86_400 }), { company_id: '2', role: 'webhook_admin' });

  // refused: the API does not start with it, nor do npm start and npm run token (jwtSecret),
  // and neither does one of 31 bytes, however random; 32 (HS256's own size) is the least
  const refusal = /^JWT_SECRET must be at least 32 bytes/;
  t.is(JWT_SECRET_MIN_BYTES, 32);
  for (const short of [WEAK, 'a-secret-for-the-token-rules-on', 'é'.repeat(15)]) {
    t.throws(() => refuseWeakJwtSecret(short), { message: refusal }, short);
    await t.throwsAsync(startApi({ databaseUrl: 'postgres://nowhere.invalid/none', jwtSecret: short, port: 0 }), { message: refusal });
  }
  const before = process.env.JWT_SECRET;
  t.teardown(() => (before === undefined ? delete process.env.JWT_SECRET : (process.env.JWT_SECRET = before)));
  process.env.JWT_SECRET = WEAK;
  await t.throwsAsync(jwtSecret({ allowDevSecret: true }), { message: refusal });
  // (counted in bytes: 16 two-byte letters are 32)
  t.notThrows(() => refuseWeakJwtSecret('é'.repeat(16)));
  t.notThrows(() => refuseWeakJwtSecret(SECRET));
});

test('no clock skew is allowed: nbf and exp are judged by the API\'s clock to the second; an iat ahead of it is no refusal', async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const signed = (claims: Record<string, unknown>) => new SignJWT({ role: 'webhook_admin', company_id: '1', ...claims })
    .setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET));
  const verifyAt = (token: string, nowMs: number) =>
    new VerifiedTokens({ secret: SECRET, maxLifetimeSeconds: 86_400, nowMs: () => nowMs }).verify(`Bearer ${token}`);
  const early = await signed({ nbf: now + 5, exp: now + 3600 });
  t.is((await t.throwsAsync(verifyAt(early, now * 1000), { instanceOf: AuthError }))!.claim, 'nbf');
  await t.notThrowsAsync(verifyAt(early, (now + 5) * 1000));
  const late = await signed({ exp: now });
  t.is((await t.throwsAsync(verifyAt(late, now * 1000), { instanceOf: AuthError }))!.claim, 'exp');
  await t.notThrowsAsync(verifyAt(late, now * 1000 - 1000));
  // issued "an hour from now" by a clock ahead: its life is counted from the API's now
  await t.notThrowsAsync(verifyAt(await signed({ iat: now + 3600, exp: now + 60 }), now * 1000));
});
