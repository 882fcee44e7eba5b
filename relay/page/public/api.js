// The page's only way to the data: the GraphQL API at /graphql, with the admin's
// token as a bearer token. The token lives in sessionStorage: it survives a reload
// but is gone when the browser tab closes.
import { inspectToken } from './format.js';

const TOKEN_KEY = 'bpd-webhooks.token';

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  save: (token) => sessionStorage.setItem(TOKEN_KEY, token),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/**
 * An error the page can explain. kind: 'signed-out' (no token), 'expired',
 * 'rejected' (the server does not accept the token), 'forbidden' (a read-only token
 * tried a change), 'network', 'api'.
 */
export class ApiError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const GET_A_TOKEN = 'Get a new one with "npm run token -- --company <your company id>".';

/** Runs one GraphQL operation; resolves with its data or rejects with an ApiError. */
export async function graphql(query, variables = {}) {
  const token = session.token();
  if (!token) throw new ApiError('signed-out', 'Paste a token to sign in.');
  const seen = inspectToken(token);
  if (seen.problem === 'expired') throw new ApiError('expired', expiredWords(seen.claims));

  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json',
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError('network', 'The server cannot be reached. Is "npm start" running?');
  }

  let body = null;
  try {
    body = await response.json();
  } catch {
    // a proxy's HTML error page, or an empty reply: judged by its status below
  }
  const errors = body?.errors ?? [];
  const message = errors.map((e) => e.message).join('; ');
  // the API answers 401 for a missing, malformed, forged or expired token, and only then
  if (response.status === 401) {
    if (/expired|"exp" claim/i.test(message)) throw new ApiError('expired', `This token has expired. ${GET_A_TOKEN}`);
    throw new ApiError('rejected', `The server does not accept this token${message ? ` (${message})` : ''}. ${GET_A_TOKEN}`);
  }
  if (errors.some((e) => e.extensions?.code === '42501')) {
    throw new ApiError('forbidden', 'This token may only read. Disabling, enabling and replaying need an admin token.');
  }
  if (errors.length) throw new ApiError('api', message);
  if (!response.ok || !body?.data) throw new ApiError('api', `The server answered ${response.status} ${response.statusText}.`);
  return body.data;
}

function expiredWords(claims) {
  const when = new Date(claims.exp * 1000).toLocaleString('en-US');
  return `This token expired on ${when}. ${GET_A_TOKEN}`;
}
