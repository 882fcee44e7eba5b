// Tokens revoked before they expire (sql/48_tokens.sql, api/revocations.ts): an admin
// revokes their own company's, every one or one subject's, through GraphQL; an operator
// any company's, or one token given whole, with `npm run token -- --revoke…`. A token
// revoked is refused (401, TOKEN_REVOKED) within REVOCATIONS_STALE_MS (a second and a
// read, while the database answers), however often it was used before; another company's tokens, and the subject's not named, go on.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { SignJWT } from 'jose';
import { signToken } from '../../api/auth.ts';
import { REVOCATIONS_STALE_MS, TOKEN_REVOKED_CODE } from '../../api/revocations.ts';
import { useTestDatabaseWithApi } from '../helpers/api.ts';
import { factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';

const { db, api } = useTestDatabaseWithApi(test);
const make = () => factories(db().pool);
const TOOL = fileURLToPath(new URL('../../tools/token.ts', import.meta.url));
const ASK = '{ allWebhooks { totalCount } }';
const REVOKE = 'mutation ($subject: String) { revokeTokens(input: { subject: $subject }) { result } }';

/** How the API answers the token now: 'ok', or the code it was refused with. */
async function answer(token: string): Promise<string> {
  const { status, data, errors } = await api().gql(token, ASK);
  if (status === 200 && data?.allWebhooks) return 'ok';
  return `${status} ${errors?.[0]?.extensions?.code}`;
}

/** Waits until the token is refused as revoked; how long that took after `since`. */
async function refusedWithin(token: string, since: number): Promise<number> {
  await until('the token refused as revoked', async () => (await answer(token)) === `401 ${TOKEN_REVOKED_CODE}`, 5_000);
  return Date.now() - since;
}

async function tool(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [TOOL, ...args], {
      env: { ...process.env, DATABASE_URL: db().url, JWT_SECRET: api().jwtSecret },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
    return { code, stdout, stderr };
  }
}

test('an admin revokes one subject\'s tokens, then every one of the company; another company\'s go on', async (t) => {
  const [a, b] = [await make().company(), await make().company()];
  const alice = await api().token(a.id, 'webhook_admin', 'alice');
  const bob = await api().token(a.id, 'webhook_admin', 'bob');
  const viewer = await api().token(a.id, 'webhook_viewer', 'bob');
  const other = await api().token(b.id, 'webhook_admin', 'bob');
  for (const token of [alice, bob, viewer, other]) t.is(await answer(token), 'ok');

  const started = Date.now();
  const revoked = await api().gql(alice, REVOKE, { subject: 'bob' });
  t.deepEqual(revoked.errors, undefined);
  t.truthy(revoked.data.revokeTokens.result);
  // (bob's tokens were verified and kept before: revoked all the same)
  const tookMs = await refusedWithin(bob, started);
  // (a second and the read's time when the database answers; never more than the stale bound)
  t.true(tookMs <= REVOCATIONS_STALE_MS, `refused ${tookMs} ms after the revocation`);
  t.is(await answer(viewer), `401 ${TOKEN_REVOKED_CODE}`);
  const { errors } = await api().gql(bob, ASK);
  t.regex(errors![0]!.message, /^this token was revoked: every token of its subject issued at or before \d{4}-.*; ask for a new one$/);
  t.is(await answer(alice), 'ok');
  t.is(await answer(other), 'ok', 'the same subject in another company is not revoked');

  const all = await api().gql(alice, REVOKE, {});
  t.deepEqual(all.errors, undefined);
  await refusedWithin(alice, Date.now());
  t.is(await answer(other), 'ok');
  // a token issued after the revocation's second is good (the page's next sign-in)
  const at = Math.floor(Date.parse(all.data.revokeTokens.result) / 1000);
  const next = await new SignJWT({ role: 'webhook_admin', company_id: a.id }).setProtectedHeader({ alg: 'HS256' })
    .setSubject('alice').setIssuedAt(at + 1).setExpirationTime(at + 3600).sign(new TextEncoder().encode(api().jwtSecret));
  t.is(await answer(next), 'ok');
  const { rows } = await db().pool.query(
    'select company_id::text, subject, jti, revoked_by from webhooks_private.token_revocations where company_id = any($1) order by subject',
    [[a.id, b.id]]);
  // (the company's revocation replaced the subject's it covers)
  t.deepEqual(rows, [{ company_id: a.id, subject: '', jti: '', revoked_by: 'alice' }]);
});

test('a viewer may not revoke; a subject is bounded; a company holds a bounded number of revocations, and one of them all replaces them', async (t) => {
  const a = await make().company();
  const viewer = await api().token(a.id, 'webhook_viewer', 'vic');
  const refused = await api().gql(viewer, REVOKE, {});
  t.is(refused.errors?.[0]?.extensions?.code, '42501');
  t.is(await answer(viewer), 'ok');
  const admin = await api().token(a.id, 'webhook_admin', 'ada');
  const long = await api().gql(admin, REVOKE, { subject: 'x'.repeat(201) });
  t.is(long.errors?.[0]?.extensions?.code, '22023');
  t.is(long.errors?.[0]?.message, 'a token\'s subject has at most 200 characters, not 201');
  for (let i = 0; i < 100; i++) {
    await db().pool.query(`select webhooks_private.revoke_tokens($1, $2, '', now(), null, 'test')`, [a.id, `s${i}`]);
  }
  const past = await api().gql(admin, REVOKE, { subject: 'one-more' });
  t.is(past.errors?.[0]?.extensions?.code, '54000');
  t.is(past.errors?.[0]?.extensions?.constraint, 'token_revocations_max');
  t.is(await answer(admin), 'ok', 'nothing was revoked');
  const all = await api().gql(admin, REVOKE, {});
  t.deepEqual(all.errors, undefined);
  const { rows: [{ n }] } = await db().pool.query('select count(*)::int as n from webhooks_private.token_revocations where company_id = $1', [a.id]);
  t.is(n, 1);
});

test('npm run token -- --revoke-token: that token alone is refused; a token not of this secret, without an id or expired is a clear answer', async (t) => {
  const a = await make().company();
  const leaked = await api().token(a.id, 'webhook_admin', 'ops');
  const kept = await api().token(a.id, 'webhook_admin', 'ops');
  t.is(await answer(leaked), 'ok');
  const started = Date.now();
  const done = await tool('--revoke-token', leaked);
  t.is(done.code, 0, done.stderr);
  t.regex(done.stdout, new RegExp(`^revoked token [0-9a-f-]{36} of company ${a.id} \\(it would have expired at `));
  await refusedWithin(leaked, started);
  const { errors } = await api().gql(leaked, ASK);
  t.is(errors![0]!.message, 'this token was revoked (by its id): ask for a new one');
  t.is(await answer(kept), 'ok', 'another token of the same subject goes on');

  const foreign = await signToken('another-secret-of-sufficient-length-0123', { companyId: a.id });
  t.like(await tool('--revoke-token', foreign), { code: 2, stdout: '', stderr: 'not a token of this JWT_SECRET (its signature does not match): nothing revoked\n' });
  const now = Math.floor(Date.now() / 1000);
  const key = new TextEncoder().encode(api().jwtSecret);
  const old = await new SignJWT({ role: 'webhook_admin', company_id: a.id }).setProtectedHeader({ alg: 'HS256' })
    .setSubject('ops').setIssuedAt(now).setExpirationTime(now + 600).sign(key);
  const noId = await tool('--revoke-token', old);
  t.is(noId.code, 2);
  t.is(noId.stderr, `the token has no id (jti), as tokens issued before revocations did not: revoke its subject's tokens instead: --revoke --company ${a.id} --sub "ops"\n`);
  const expired = await new SignJWT({ role: 'webhook_admin', company_id: a.id }).setProtectedHeader({ alg: 'HS256' })
    .setJti('gone').setIssuedAt(now - 600).setExpirationTime(now - 60).sign(key);
  t.like(await tool('--revoke-token', expired), { code: 2, stderr: 'the token has expired already (the API refuses it): nothing revoked\n' });
  t.like(await tool('--revoke-token', 'not-a-token'), { code: 2 });
  t.like(await tool('--revoke-token', 'x'.repeat(3000)), { code: 2, stderr: 'a token has at most 2048 characters, not 3000\n' });
  const { rows } = await db().pool.query('select subject, jti <> \'\' as by_id from webhooks_private.token_revocations where company_id = $1', [a.id]);
  t.deepEqual(rows, [{ subject: 'ops', by_id: true }]);
});

test('npm run token -- --revoke --company: every token of that company, and of it alone', async (t) => {
  const [a, b] = [await make().company(), await make().company()];
  const [ofA, ofB] = [await api().token(a.id), await api().token(b.id)];
  const started = Date.now();
  const done = await tool('--revoke', '--company', a.id);
  t.is(done.code, 0, done.stderr);
  t.regex(done.stdout, new RegExp(`^revoked every token of company ${a.id} issued at or before \\d{4}-`));
  await refusedWithin(ofA, started);
  t.is(await answer(ofB), 'ok');
  t.like(await tool('--revoke'), { code: 2, stderr: '--revoke revokes a company\'s tokens (or one subject\'s): --revoke --company <id> [--sub <who>]\n' });
  t.like(await tool('--revoke', '--company', 'abc'), { code: 2 });
});
