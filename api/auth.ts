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

export class AuthError extends Error {}

const ALGORITHM = 'HS256';

function key(secret: string): Uint8Array {
  return new TextEncoder().encode(secret);
}

/** Verifies an Authorization header value; throws AuthError saying what is wrong. */
export async function verifyAuthorization(header: string | undefined, secret: string): Promise<Claims> {
  if (!header) throw new AuthError('missing Authorization header: send "Authorization: Bearer <token>"');
  const match = /^Bearer\s+(\S+)$/i.exec(header.trim());
  if (!match) throw new AuthError('Authorization header must be "Bearer <token>"');
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(match[1], key(secret), { algorithms: [ALGORITHM] }));
  } catch (error) {
    throw new AuthError(`invalid token: ${(error as Error).message}`);
  }
  const role = payload.role;
  if (typeof role !== 'string' || !(API_ROLES as readonly string[]).includes(role)) {
    throw new AuthError(`invalid token: claim "role" must be one of ${API_ROLES.join(', ')}`);
  }
  const companyId = String(payload.company_id ?? '');
  if (!/^[1-9][0-9]{0,18}$/.test(companyId)) {
    throw new AuthError('invalid token: claim "company_id" must be a positive integer');
  }
  const sub = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : undefined;
  return { role: role as ApiRole, company_id: companyId, sub };
}

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
  /** e.g. '12h', '7d' */
  expiresIn?: string;
}

export async function signToken(secret: string, request: TokenRequest): Promise<string> {
  const role = request.role ?? 'webhook_admin';
  return await new SignJWT({ role, company_id: String(request.companyId) })
    .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
    .setSubject(request.sub ?? `${role}@company-${request.companyId}`)
    .setIssuedAt()
    .setExpirationTime(request.expiresIn ?? '12h')
    .sign(key(secret));
}
