// Tokens revoked before they expire (sql/48_tokens.sql): every token of a company, or of
// one subject of it, issued up to a time, or one token by its id (jti). The API keeps
// the revocations in force in memory and asks the database whether they changed at
// most once a second (REVOCATIONS_FRESH_MS), on the request that finds them older: one
// row when nothing changed, all of them (at most token_revocations_max() + 1 a
// company) when something did. A token revoked is refused within that second, kept
// verified or not (api/auth.ts's VerifiedTokens keeps the claims, not the verdict).
import type pg from 'pg';
import { compactVerify, decodeJwt } from 'jose';
import { companyIdOf, type Claims } from './auth.ts';

/** How old the revocations an API answers by may be: a token revoked is refused within it. */
export const REVOCATIONS_FRESH_MS = 1_000;

/** extensions.code of a request refused for a token revoked (HTTP 401). */
export const TOKEN_REVOKED_CODE = 'TOKEN_REVOKED';

interface Revocations {
  version: string | null;
  /** jti → its company */
  ids: Map<string, string>;
  /** company, NUL, subject ('' for every subject) → issued at or before (seconds since the epoch) */
  before: Map<string, number>;
}

const key = (companyId: string, subject: string) => `${companyId}\u0000${subject}`;

export class RevokedTokens {
  readonly #pool: pg.Pool;
  readonly #freshMs: number;
  readonly #nowMs: () => number;
  #revocations: Revocations = { version: null, ids: new Map(), before: new Map() };
  #readAtMs = -Infinity;
  #reading: Promise<void> | undefined;

  constructor(pool: pg.Pool, options: { freshMs?: number; nowMs?: () => number } = {}) {
    this.#pool = pool;
    this.#freshMs = options.freshMs ?? REVOCATIONS_FRESH_MS;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  /**
   * Why the token of these claims is revoked, or undefined. Reads the revocations again
   * first if they are REVOCATIONS_FRESH_MS old (one read at a time, the requests meanwhile
   * waiting for it); a database that does not answer leaves the last ones read in force,
   * and is asked again at the next request a second later (the request fails on it anyway).
   */
  async revokedWhy(claims: Claims): Promise<string | undefined> {
    if (this.#nowMs() - this.#readAtMs >= this.#freshMs) await this.#read();
    const { ids, before } = this.#revocations;
    if (claims.jti !== undefined && ids.get(claims.jti) === claims.company_id) {
      return 'this token was revoked (by its id): ask for a new one';
    }
    for (const subject of claims.sub ? ['', claims.sub] : ['']) {
      const until = before.get(key(claims.company_id, subject));
      // (a token without iat may have been issued at any time before it)
      if (until !== undefined && (claims.iat === undefined || claims.iat <= until)) {
        return `this token was revoked: every token of ${subject === '' ? `company ${claims.company_id}` : 'its subject'} ` +
          `issued at or before ${new Date(until * 1000).toISOString()} is refused; ask for a new one`;
      }
    }
    return undefined;
  }

  #read(): Promise<void> {
    this.#reading ??= (async () => {
      try {
        const { rows } = await this.#pool.query<{ version: string | null; company_id: string | null; subject: string; jti: string; issued_before: string }>(
          'select * from webhooks.token_revocations_in_force($1)', [this.#revocations.version]);
        const version = rows.find((row) => row.company_id === null)?.version ?? null;
        if (version !== this.#revocations.version) {
          const ids = new Map<string, string>();
          const before = new Map<string, number>();
          for (const row of rows) {
            if (row.company_id === null) continue;
            if (row.jti !== '') ids.set(row.jti, row.company_id);
            else before.set(key(row.company_id, row.subject), Number(row.issued_before));
          }
          this.#revocations = { version, ids, before };
        }
      } catch {
        // (the request goes on to the database, and is refused by it by name)
      } finally {
        this.#readAtMs = this.#nowMs();
        this.#reading = undefined;
      }
    })();
    return this.#reading;
  }
}

/** What `npm run token -- --revoke …` did, or why it did nothing (refused: exit status 2). */
export type RevokeResult = { revoked: string } | { refused: string };

/** Every token of a company, or of one subject of it, issued until now; as the owner. */
export async function revokeTokens(client: pg.ClientBase, request: { companyId: string; sub?: string; actor: string }): Promise<RevokeResult> {
  if (companyIdOf(request.companyId) === null) {
    return { refused: `--company must be a company id (a positive integer, at most a bigint), got ${JSON.stringify(request.companyId)}` };
  }
  const { rows: [row] } = await client.query<{ issued_before: Date }>(
    `select issued_before from webhooks_private.revoke_tokens($1, $2, '', now(), null, $3)`,
    [request.companyId, request.sub ?? '', request.actor]);
  const whose = request.sub ? `subject ${JSON.stringify(request.sub)} of company ${request.companyId}` : `company ${request.companyId}`;
  return { revoked: `revoked every token of ${whose} issued at or before ${row!.issued_before.toISOString()}` };
}

/**
 * One token, given whole (what leaked), by its id: its signature is checked with the
 * secret, so that an id is never revoked for a company it does not belong to.
 */
export async function revokeOneToken(client: pg.ClientBase, secret: string, token: string, actor: string): Promise<RevokeResult> {
  const text = token.trim().replace(/^Bearer\s+/i, '');
  if (text.length > 2_048) return { refused: `a token has at most 2048 characters, not ${text.length}` };
  try {
    await compactVerify(text, new TextEncoder().encode(secret), { algorithms: ['HS256'] });
  } catch {
    return { refused: 'not a token of this JWT_SECRET (its signature does not match): nothing revoked' };
  }
  const claims = decodeJwt(text);
  const companyId = companyIdOf(claims.company_id);
  if (companyId === null) return { refused: 'the token names no company: nothing revoked' };
  if (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now()) {
    return { refused: 'the token has expired already (the API refuses it): nothing revoked' };
  }
  if (typeof claims.jti !== 'string' || claims.jti === '' || claims.jti.length > 64) {
    return { refused: `the token has no id (jti), as tokens issued before revocations did not: revoke its subject's ` +
      `tokens instead: --revoke --company ${companyId}${typeof claims.sub === 'string' ? ` --sub ${JSON.stringify(claims.sub)}` : ''}` };
  }
  const issued = typeof claims.iat === 'number' ? claims.iat : Math.floor(Date.now() / 1000);
  await client.query(`select webhooks_private.revoke_tokens($1, $2, $3, to_timestamp($4), to_timestamp($5), $6)`,
    [companyId, typeof claims.sub === 'string' ? claims.sub.slice(0, 200) : '', claims.jti, issued, claims.exp, actor]);
  return { revoked: `revoked token ${claims.jti} of company ${companyId} (it would have expired at ${new Date(claims.exp * 1000).toISOString()})` };
}
