// The Reports page: a folder of static files served beside the API. The page's own
// routes (/ and /reports/webhooks) answer with its index.html.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

/**
 * What the browser is told with every answer of the page's folder, files and refusals
 * alike (docs/security.md). The page is ES modules, a stylesheet and a data: icon from
 * its own origin, and talks to /graphql only: no inline script or style, no eval, no
 * other origin, so the policy allows nothing else. A page that injected markup (a
 * webhook's name, a payload) could run nothing, nor send anything anywhere but here.
 * No other site may frame it: an admin's Delete or Rotate secret clicked through a
 * transparent frame over another page (clickjacking). nosniff: a file is only what its
 * content-type says. no-referrer: the page's URL (a webhook's id, its hash) is no one
 * else's to read.
 */
export const PAGE_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const PAGE_SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': PAGE_CONTENT_SECURITY_POLICY,
  // (for browsers that know no frame-ancestors)
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
});

/**
 * What every answer of /graphql says, data and refusals alike: it is one company's
 * (a webhook's signing secret, as createWebhook and rotateWebhookSecret answer it, its
 * history's payloads), kept by no cache, the browser's or a proxy's; and JSON is read
 * as nothing else. Until 2026-12-07 an answer said neither.
 */
export const GRAPHQL_ANSWER_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
});

/**
 * What Ruru (the GraphQL IDE at /graphiql) and its files say. Ruru runs inline script,
 * so the page's policy cannot be its own; but no other site may frame it: Ruru keeps
 * an admin's editor tabs in the browser, and their headers (the token) if asked to,
 * and a click lured onto its Run button through a transparent frame ran the operation
 * last left there (a deleteWebhook, a rotateWebhookSecret). Until 2026-12-07 any site
 * could frame it.
 */
export const IDE_SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': "frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
});

/** Page routes that are the page itself, not files. */
const PAGE_ROUTES = new Set(['/', '/reports/webhooks', '/reports/webhooks/']);

export function staticFiles(root: string) {
  const base = normalize(root.endsWith(sep) ? root : root + sep);
  return async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const [name, value] of Object.entries(PAGE_SECURITY_HEADERS)) res.setHeader(name, value);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('bad path\n');
      return;
    }
    const file = PAGE_ROUTES.has(pathname) ? join(base, 'index.html') : normalize(join(base, pathname));
    // never leave the folder (../, encoded or not)
    if (!file.startsWith(base)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': info.size,
      'cache-control': 'no-cache',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    createReadStream(file).pipe(res);
  };
}
