// Bearer JWTs (HS256) to Postgres settings. The database decides what a request may
// see and do; this file only checks that the token is genuine and names a role the
// API may become, then hands its claims to Postgres.
import { jwtVerify, SignJWT } from 'jose';

/** The roles a token may ask for; anything else is refused before Postgres is asked. */
export const API_ROLES = ['webhook_admin', 'webhook_viewer'] as const;
export type ApiRole = (typeof API_ROLES)[number];

export interface Claims {
  role: ApiRole;
  company_id: string;
  /** who is acting: recorded as disabled_by */
  sub?: string;
}

/** extensions.code of a request refused for its token (HTTP 401) */
export const UNAUTHENTICATED_CODE = 'UNAUTHENTICATED';

/**
 * A token refused, and why. `claim` names what was wrong (the client's answer says it
 * as extensions.claim): one of the claims this API reads (role, company_id, sub, exp,
 * iat, nbf), or 'token' for the token as a whole (none, not a JWT, not ours, too long).
 */
export class AuthError extends Error {
  readonly claim: string;
  constructor(message: string, claim = 'token') {
    super(message);
    this.claim = claim;
  }
}

/** The claims jose judges itself (a wrong type, a time passed): its error names them. */
const JOSE_CLAIMS: ReadonlySet<string> = new Set(['exp', 'iat', 'nbf']);

/**
 * The longest subject accepted: it is every change's actor (the audit log) and a
 * disable's disabled_by, kept and shown to every admin of the company, and a token
 * of any length once carried one of a megabyte into both.
 */
export const SUB_MAX_LENGTH = 200;

/**
 * The longest Authorization header read: a token of `npm run token` is some 250
 * characters, one with the longest subject some 550. A longer one is refused before its
 * signature is checked (its HMAC is over all of it, on the API's one thread), and each
 * one accepted may be kept verified (VerifiedTokens: at most size times this).
 */
export const MAX_AUTHORIZATION_LENGTH = 2_048;

const ALGORITHM = 'HS256';

/** The largest company_id Postgres can hold (bigint). */
const BIGINT_MAX = 9_223_372_036_854_775_807n;

/** A token's longest accepted life, exp minus iat (or minus now), unless JWT_MAX_LIFETIME says otherwise. */
export const DEFAULT_MAX_LIFETIME = '24h';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** "90s", "15m", "12h", "7d" as seconds; null if it is not such a duration. */
export function durationSeconds(text: string): number | null {
  const match = /^\s*([1-9][0-9]{0,8})\s*([smhd])\s*$/.exec(text);
  return match ? Number(match[1]) * UNIT_SECONDS[match[2]!]! : null;
}

/** JWT_MAX_LIFETIME in seconds; a bad value stops the API at start, naming the variable. */
export function maxTokenLifetime(env: Record<string, string | undefined> = process.env): number {
  const text = env.JWT_MAX_LIFETIME || DEFAULT_MAX_LIFETIME;
  const seconds = durationSeconds(text);
  if (seconds === null) {
    throw new Error(`JWT_MAX_LIFETIME must be a duration such as 24h, 30m or 7d, got ${JSON.stringify(text)}`);
  }
  return seconds;
}

function key(secret: string): Uint8Array {
  return new TextEncoder().encode(secret);
}

/** One positive integer in bigint range, as a string; null for anything else. */
export function companyIdOf(claim: unknown): string | null {
  // a JSON number beyond 2^53 has already lost digits: it could name another company
  if (typeof claim === 'number') return Number.isSafeInteger(claim) && claim > 0 ? String(claim) : null;
  if (typeof claim === 'string' && /^[1-9][0-9]{0,18}$/.test(claim) && BigInt(claim) <= BIGINT_MAX) return claim;
  return null;
}

/**
 * What a subject may not hold, as a webhook's name may not (sql/10_config.sql:
 * webhooks_private.control_characters(), line_separators() and bidi_controls();
 * test/api/schema.test.ts refuses each character they name): it is every change's actor
 * and a disable's disabled_by, which the API answers to every admin and viewer of the
 * company, and a line break or an escape in it, or a bidi control (U+202E reorders the
 * text shown after it wherever it is not isolated), was recorded as it came.
 */
const SUBJECT_REFUSED = /[\u0001-\u001f\u007f-\u009f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** The token's subject (undefined: none, or empty); throws AuthError for one this API would not record as an actor. */
function subjectOf(payload: Record<string, unknown>): string | undefined {
  if (!('sub' in payload) || payload.sub === '') return undefined;
  const sub = payload.sub;
  // another type was dropped unsaid, and the actor recorded became the database role
  if (typeof sub !== 'string') throw new AuthError('invalid token: claim "sub" must be a string', 'sub');
  if (sub.length > SUB_MAX_LENGTH) {
    throw new AuthError(`invalid token: claim "sub" has at most ${SUB_MAX_LENGTH} characters, not ${sub.length}`, 'sub');
  }
  // the subject becomes a Postgres setting, whose text holds no NUL: such a token failed
  // every request, after the token was accepted, with a masked error; a lone UTF-16
  // surrogate is no character (the setting held U+FFFD in its place)
  if (sub.includes('\u0000') || !sub.isWellFormed()) {
    throw new AuthError('invalid token: claim "sub" must be a string without NUL characters or lone UTF-16 surrogates', 'sub');
  }
  if (SUBJECT_REFUSED.test(sub)) {
    throw new AuthError('invalid token: claim "sub" must be one line without control characters or bidi controls, as a webhook name', 'sub');
  }
  return sub;
}

/** The token of an Authorization header ("Bearer", in any case, then white space, then the token), or undefined. */
function bearerToken(header: string): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec(header.trim())?.[1];
}

/**
 * Verifies an Authorization header value; throws AuthError saying what is wrong.
 * A token must expire, and live at most `maxLifetimeSeconds` (from its iat, or from
 * now if that is later or it has none).
 */
export async function verifyAuthorization(
  header: string | undefined,
  secret: string,
  options: { maxLifetimeSeconds?: number } = {},
): Promise<Claims> {
  return (await verifiedToken(header, secret, options)).claims;
}

/** The claims of an Authorization header and when its token expires (seconds since the epoch); throws AuthError. */
async function verifiedToken(
  header: string | undefined,
  secret: string,
  options: { maxLifetimeSeconds?: number; nowMs?: number },
): Promise<{ claims: Claims; exp: number }> {
  const nowMs = options.nowMs ?? Date.now();
  if (!header) throw new AuthError('missing Authorization header: send "Authorization: Bearer <token>"');
  if (header.length > MAX_AUTHORIZATION_LENGTH) {
    throw new AuthError(`invalid token: the Authorization header has at most ${MAX_AUTHORIZATION_LENGTH} characters, not ${header.length}`);
  }
  const token = bearerToken(header);
  if (token === undefined) throw new AuthError('Authorization header must be "Bearer <token>"');
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, key(secret), { algorithms: [ALGORITHM], currentDate: new Date(nowMs) }));
  } catch (error) {
    const claim = (error as { claim?: unknown }).claim;
    throw new AuthError(`invalid token: ${(error as Error).message}`,
      typeof claim === 'string' && JOSE_CLAIMS.has(claim) ? claim : 'token');
  }
  if (typeof payload.exp !== 'number') {
    throw new AuthError('invalid token: claim "exp" is required (a token must expire)', 'exp');
  }
  const maxLifetime = options.maxLifetimeSeconds ?? maxTokenLifetime();
  const now = Math.floor(nowMs / 1000);
  const issued = typeof payload.iat === 'number' ? Math.min(payload.iat, now) : now;
  if (payload.exp - issued > maxLifetime) {
    throw new AuthError(`invalid token: it lives longer than the ${maxLifetime} seconds this API accepts (exp minus iat)`, 'exp');
  }
  const role = payload.role;
  if (typeof role !== 'string' || !(API_ROLES as readonly string[]).includes(role)) {
    throw new AuthError(`invalid token: claim "role" must be one of ${API_ROLES.join(', ')}`, 'role');
  }
  const companyId = companyIdOf(payload.company_id);
  if (companyId === null) {
    throw new AuthError(
      `invalid token: claim "company_id" must be one positive integer, at most ${BIGINT_MAX} (a number or a string of digits)`,
      'company_id',
    );
  }
  const sub = subjectOf(payload);
  return { claims: { role: role as ApiRole, company_id: companyId, sub }, exp: payload.exp };
}

/**
 * The tokens verified lately, each kept with its claims until it expires: a token
 * sent again is not verified again. Its signature's check (HMAC, through WebCrypto)
 * took some 90 to 180 µs of the API's one thread a request (a 401 for a token of another
 * secret cost 340 to 480 µs, one without a token 250 to 370: test/api/request-rate.test.ts), paid by
 * every request of every company, and again by each request its company's rate refuses.
 * A token once valid stays valid until it expires: its lifetime is counted from its
 * iat, or from the time it is checked if that is later, which only shortens it. Only
 * tokens that passed are kept: failures, which anyone may make up, would push them out.
 */
export class VerifiedTokens {
  readonly #secret: string;
  readonly #maxLifetimeSeconds: number;
  readonly #size: number;
  readonly #nowMs: () => number;
  /** by the token (not the header's text: "bearer", "BEARER  " and "Bearer\t" spelled one
   * token three times, and a company sending its own token spelled anew each request pushed
   * every other company's out), the latest used last */
  readonly #kept = new Map<string, { claims: Claims; expiresAtMs: number }>();

  constructor(options: { secret: string; maxLifetimeSeconds: number; size?: number; nowMs?: () => number }) {
    this.#secret = options.secret;
    this.#maxLifetimeSeconds = options.maxLifetimeSeconds;
    this.#size = options.size ?? VERIFIED_TOKENS_KEPT;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  get size(): number {
    return this.#kept.size;
  }

  /** The claims of the header's token if it was verified before and has not expired (no signature is checked); else undefined. */
  kept(header: string | undefined): Claims | undefined {
    const token = header === undefined || header.length > MAX_AUTHORIZATION_LENGTH ? undefined : bearerToken(header);
    const kept = token === undefined ? undefined : this.#kept.get(token);
    if (kept === undefined) return undefined;
    this.#kept.delete(token!);
    if (this.#nowMs() >= kept.expiresAtMs) return undefined;
    this.#kept.set(token!, kept);
    return kept.claims;
  }

  /** As verifyAuthorization, from what is kept when the header's token was verified before and has not expired. */
  async verify(header: string | undefined): Promise<Claims> {
    const kept = this.kept(header);
    if (kept !== undefined) return kept;
    const nowMs = this.#nowMs();
    const token = header === undefined || header.length > MAX_AUTHORIZATION_LENGTH ? undefined : bearerToken(header);
    const { claims, exp } = await verifiedToken(header, this.#secret, { maxLifetimeSeconds: this.#maxLifetimeSeconds, nowMs });
    // (a header is at most MAX_AUTHORIZATION_LENGTH: the memory kept is at most size times that)
    this.#kept.set(token!, { claims, expiresAtMs: exp * 1000 });
    if (this.#kept.size > this.#size) this.#kept.delete(this.#kept.keys().next().value!);
    return claims;
  }
}

/** How many verified tokens an API process keeps: more than the companies that use it at once. */
export const VERIFIED_TOKENS_KEPT = 10_000;

/** The Postgres settings of one request: SET LOCAL role and the claims sql/ reads. */
export function pgSettingsFor(claims: Claims): Record<string, string> {
  const settings: Record<string, string> = {
    role: claims.role,
    'jwt.claims.role': claims.role,
    'jwt.claims.company_id': claims.company_id,
  };
  if (claims.sub) settings['jwt.claims.sub'] = claims.sub;
  return settings;
}

export interface TokenRequest {
  companyId: string | number;
  role?: ApiRole;
  sub?: string;
  /** e.g. '12h', '7d' (durationSeconds); default DEFAULT_TOKEN_LIFETIME */
  expiresIn?: string;
}

/** What `npm run token` and tests issue unless told otherwise: within DEFAULT_MAX_LIFETIME. */
export const DEFAULT_TOKEN_LIFETIME = '12h';

export async function signToken(secret: string, request: TokenRequest): Promise<string> {
  const role = request.role ?? 'webhook_admin';
  const expiresIn = request.expiresIn ?? DEFAULT_TOKEN_LIFETIME;
  const lifetime = durationSeconds(expiresIn);
  if (lifetime === null) throw new Error(`a token lifetime must be a duration such as 12h, 30m or 7d, got ${JSON.stringify(expiresIn)}`);
  if (request.sub !== undefined && request.sub.length > SUB_MAX_LENGTH) {
    throw new Error(`a token's subject has at most ${SUB_MAX_LENGTH} characters (the API refuses a longer one), got ${request.sub.length}`);
  }
  const now = Math.floor(Date.now() / 1000);
  return await new SignJWT({ role, company_id: String(request.companyId) })
    .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
    .setSubject(request.sub ?? `${role}@company-${request.companyId}`)
    .setIssuedAt(now)
    .setExpirationTime(now + lifetime)
    .sign(key(secret));
}
