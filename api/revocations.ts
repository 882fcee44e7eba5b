// Tokens revoked before they expire (sql/48_tokens.sql): every token of a company, or of
// one subject of it, issued up to a time, or one token by its id (jti). The API keeps
// the revocations in force in memory and asks the database whether they changed once a
// second at most (REVOCATIONS_FRESH_MS), started by the first request after that second
// and not waited for: one row when nothing changed, all of them (at most
// token_revocations_max() + 1 a company) when something did. A token revoked is
// refused once that read has answered, kept verified or not (api/auth.ts's
// VerifiedTokens keeps the claims, not the verdict). The read has a connection of its
// own: on the requests' pool it took the connection a request would have used, and a
// request waited on it. Revocations older than REVOCATIONS_STALE_MS (a database that
// does not answer the read) are waited for, and past it every request is refused
// (DATABASE_UNAVAILABLE): a revoked token is never served on an old list.
import type pg from 'pg';
import { compactVerify, decodeJwt } from 'jose';
import { companyIdOf, type Claims } from './auth.ts';

/** How often the API asks whether the revocations changed, at most. */
export const REVOCATIONS_FRESH_MS = 1_000;

/** The oldest revocations a request is answered by: past it, requests wait for the read, and are refused if it fails. */
export const REVOCATIONS_STALE_MS = 5_000;

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
  readonly #nowMs: () => number;
  #revocations: Revocations = { version: null, ids: new Map(), before: new Map() };
  /** when the last read that answered began */
  #readAtMs = -Infinity;
  #reading: Promise<void> | undefined;

  /** pool: the read's own (one connection) */
  constructor(pool: pg.Pool, options: { nowMs?: () => number } = {}) {
    this.#pool = pool;
    this.#nowMs = options.nowMs ?? Date.now;
  }

  /**
   * Why the token of these claims is revoked ({ revoked }), nothing if it is not, or
   * { unread } when the revocations could not be read for REVOCATIONS_STALE_MS.
   */
  async check(claims: Claims): Promise<{ revoked: string } | { unread: true } | undefined> {
    if (this.#nowMs() - this.#readAtMs >= REVOCATIONS_FRESH_MS) void this.#read();
    if (this.#nowMs() - this.#readAtMs >= REVOCATIONS_STALE_MS) {
      await this.#read();
      if (this.#nowMs() - this.#readAtMs >= REVOCATIONS_STALE_MS) return { unread: true };
    }
    const { ids, before } = this.#revocations;
    if (claims.jti !== undefined && ids.get(claims.jti) === claims.company_id) {
      return { revoked: 'this token was revoked (by its id): ask for a new one' };
    }
    for (const subject of claims.sub ? ['', claims.sub] : ['']) {
      const until = before.get(key(claims.company_id, subject));
      // (a token without iat may have been issued at any time before it)
      if (until !== undefined && (claims.iat === undefined || claims.iat <= until)) {
        return { revoked: `this token was revoked: every token of ${subject === '' ? `company ${claims.company_id}` : 'its subject'} ` +
          `issued at or before ${new Date(until * 1000).toISOString()} is refused; ask for a new one` };
      }
    }
    return undefined;
  }

  /** Reads the revocations (one read at a time; a failed one leaves the last in force). */
  #read(): Promise<void> {
    this.#reading ??= (async () => {
      const startedMs = this.#nowMs();
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
        this.#readAtMs = startedMs;
      } catch {
        // (tried again at the next request; past REVOCATIONS_STALE_MS requests are refused)
      } finally {
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
