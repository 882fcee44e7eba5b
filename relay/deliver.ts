// Deliver: one signed POST per attempt, over pooled keep-alive connections. Whatever
// happens (a 500, a timeout, a refused destination) comes back as a value describing
// the attempt; send() does not throw. Settle and SQL decide what the outcome means.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import type { DeliveryJob } from './queries.ts';
import { DestinationRefused, guardedConnector, refuseLiteralHost, type NetworkList } from './destinations.ts';
import { signatureHeaders } from './sign.ts';

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
export const USER_AGENT = `bpd-webhooks-relay/${version}`;

export type HttpOutcome =
  /** the endpoint answered with a status (a 3xx carries a note: redirects are not followed) */
  | { kind: 'response'; status: number; bodyExcerpt: string; retryAfterSeconds: number | null; note: string | null }
  /** no HTTP status: refused destination, DNS, connect failure, timeout, reset, … */
  | { kind: 'error'; error: string };

export interface AttemptResult {
  job: DeliveryJob;
  attemptedAt: Date;
  durationMs: number;
  outcome: HttpOutcome;
}

export interface SenderOptions {
  allowNetworks: NetworkList;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  responseExcerptBytes: number;
}

/** Where refusals are explained: the operator's log (the tenant sees TENANT_REFUSAL only). */
type RefusalLog = Pick<Logger, 'warn'>;

export class Sender {
  private readonly agent: Agent;
  private readonly options: SenderOptions;
  private readonly log: RefusalLog | null;

  constructor(options: SenderOptions, log: RefusalLog | null = null) {
    this.options = options;
    this.log = log;
    this.agent = new Agent({
      // the relay caps requests itself (per webhook and in total)
      connections: null,
      pipelining: 1,
      keepAliveTimeout: 10_000,
      headersTimeout: options.requestTimeoutMs,
      bodyTimeout: options.requestTimeoutMs,
      connect: guardedConnector(options.allowNetworks, { timeout: options.connectTimeoutMs }),
    });
  }

  async send(job: DeliveryJob): Promise<AttemptResult> {
    const attemptedAt = new Date();
    const started = performance.now();
    const outcome = await this.attempt(job);
    return { job, attemptedAt, durationMs: Math.round(performance.now() - started), outcome };
  }

  private async attempt(job: DeliveryJob): Promise<HttpOutcome> {
    let url: URL;
    try {
      url = new URL(job.url);
    } catch {
      return { kind: 'error', error: `invalid URL ${JSON.stringify(job.url)}` };
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return { kind: 'error', error: `unsupported URL scheme ${url.protocol}` };
    }
    const refused = refuseLiteralHost(url, this.options.allowNetworks);
    if (refused) return this.refused(job, refused);
    if (!job.secret) return { kind: 'error', error: 'not sent: the webhook has no signing secret' };

    // a timer cleared as soon as the attempt ends (AbortSignal.timeout would keep each
    // signal, and what listens to it, alive for the full timeout)
    const controller = new AbortController();
    const signal = controller.signal;
    const timer = setTimeout(() => controller.abort(), this.options.requestTimeoutMs);
    try {
      const response = await request(url, {
        dispatcher: this.agent,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          ...signatureHeaders(job.messageId, job.body, job.secret, job.previousSecret),
        },
        body: job.body,
        signal,
      });
      const bodyExcerpt = await readExcerpt(response.body, this.options.responseExcerptBytes);
      const status = response.statusCode;
      const location = response.headers.location;
      return {
        kind: 'response',
        status,
        bodyExcerpt,
        retryAfterSeconds: parseRetryAfter(response.headers['retry-after']),
        note: status >= 300 && status < 400
          ? `redirect not followed: HTTP ${status}${location ? ` to ${String(location)}` : ''}`
          : null,
      };
    } catch (error) {
      const refusedAtConnect = destinationRefused(error);
      if (refusedAtConnect) return this.refused(job, refusedAtConnect);
      return { kind: 'error', error: describe(error, signal, this.options, url) };
    } finally {
      clearTimeout(timer);
    }
  }

  private refused(job: DeliveryJob, refusal: DestinationRefused): HttpOutcome {
    this.log?.warn({ webhook: job.webhookId, delivery: job.deliveryId, attempt: job.attempt, why: refusal.detail }, refusal.detail);
    return { kind: 'error', error: refusal.message };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** Reads at most `limit` bytes of a response body, then lets the rest go. */
async function readExcerpt(body: AsyncIterable<Buffer> & { destroy(): void }, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size < limit) chunks.push(chunk.subarray(0, limit - size));
    size += chunk.length;
    if (size >= limit) {
      // a long body is not worth the wait: drop the connection instead of reading on
      if (size > limit) body.destroy();
      break;
    }
  }
  // text columns hold neither NUL nor broken UTF-8
  return new TextDecoder('utf-8', { fatal: false }).decode(Buffer.concat(chunks)).replaceAll('\u0000', '\uFFFD');
}

/** Retry-After as seconds from now: delta-seconds or an HTTP date; null if absent or unreadable. */
export function parseRetryAfter(header: string | string[] | undefined): number | null {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Math.min(Number(trimmed), 2_147_483_647);
  // an HTTP date names its day and month ("Wed, 21 Oct 2015 07:28:00 GMT"); this
  // keeps Date.parse from reading "-5" as the year 5 BC
  if (!/[a-z]{3}/i.test(trimmed)) return null;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.min(Math.max(0, Math.ceil((date - Date.now()) / 1000)), 2_147_483_647);
}

/** The refusal behind an error from undici (it may wrap what the connector gave it). */
function destinationRefused(error: unknown): DestinationRefused | null {
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof DestinationRefused) return e;
  return null;
}

function describe(error: unknown, signal: AbortSignal, options: SenderOptions, url: URL): string {
  const e = error as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } };
  if (signal.aborted) {
    return `timeout: no complete response from ${url.host} within ${options.requestTimeoutMs} ms`;
  }
  const code = e.code ?? e.cause?.code;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return `timeout: could not connect to ${url.host} within ${options.connectTimeoutMs} ms`;
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return `timeout: no complete response from ${url.host} within ${options.requestTimeoutMs} ms`;
    case 'ECONNREFUSED':
      return `connection refused by ${url.host}`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `DNS: cannot resolve ${url.hostname} (${code})`;
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
      return `connection to ${url.host} closed before a complete response`;
    default:
      return `${code ? `${code}: ` : ''}${e.message ?? String(error)}`.replaceAll('\u0000', '');
  }
}
