// Deliver: one signed POST per attempt, over pooled keep-alive connections. Whatever
// happens (a 500, a timeout, a refused destination) comes back as a value describing
// the attempt; send() does not throw. Settle and SQL decide what the outcome means.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Socket } from 'node:net';
import { Agent, Client, Pool, type buildConnector, type Dispatcher } from 'undici';
import type { DeliveryJob } from './queries.ts';
import { DestinationRefused, guardedConnector, refuseLiteralHost, type NetworkList } from './destinations.ts';
import { receiverResolver, type ReceiverResolver } from './dns.ts';
import { leastRecentlyUsed } from './lru.ts';
import { deliveryHeaders, signatures, signedTimestamp } from './sign.ts';

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
export const USER_AGENT = `bpd-webhooks-relay/${version}`;

export type HttpOutcome =
  /** the endpoint answered with a status (a 3xx carries a note: redirects are not followed) */
  | { kind: 'response'; status: number; bodyExcerpt: string; retryAfterSeconds: number | null; note: string | null }
  /** no HTTP status: refused destination, DNS, connect failure, timeout, reset, … */
  | { kind: 'error'; error: string };

/**
 * A 2xx, or a 302 or 303 (the receiver took the POST and points to its answer
 * elsewhere, not followed): the delivery succeeded. The settle decides the same
 * (webhooks_private.delivered_status, sql/22_outbox.sql), which says why.
 */
export function succeeded(outcome: HttpOutcome): boolean {
  return outcome.kind === 'response' && acknowledges(outcome.status);
}

/** A status that says the receiver took the POST: a 2xx, 302 or 303 (succeeded). */
function acknowledges(status: number): boolean {
  return (status >= 200 && status < 300) || status === 302 || status === 303;
}

export interface AttemptResult {
  job: DeliveryJob;
  attemptedAt: Date;
  durationMs: number;
  outcome: HttpOutcome;
}

export interface SenderOptions {
  allowNetworks: NetworkList;
  /** the DNS servers receivers' names are asked of (null: the system's; dns.ts) */
  dnsServers: string[] | null;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  responseExcerptBytes: number;
  /** how long an idle connection is kept (KEEP_ALIVE_MS unless a test says otherwise) */
  keepAliveMs?: number;
  /** to how many origins at most connections are kept (KEPT_ORIGINS_MAX unless a test says otherwise) */
  keptOriginsMax?: number;
  /** how many connections to kept origins are open at most, past those in use (KEPT_CONNECTIONS_MAX unless a test says otherwise) */
  keptConnectionsMax?: number;
}

/**
 * An idle connection to a receiver is closed after this long, whatever the receiver's
 * `Keep-Alive: timeout=…` asks for (undici would keep one up to 10 minutes): each is a
 * file descriptor, and a tenant's receivers could otherwise keep thousands of them
 * open, across webhooks and names, until the relay could open no more for anyone.
 */
export const KEEP_ALIVE_MS = 10_000;

/**
 * Connections are kept alive to at most this many origins (scheme, host and port) at
 * once; a request to any other opens a connection that closes after its answer. Each
 * origin the relay keeps connections to holds undici's dispatcher for it (a Pool,
 * whose request queue alone is a 16 KiB array) and its connections, a file
 * descriptor each: about 27 KB of heap over HTTP, 31 KB over TLS and some 160 KB
 * more outside the heap (OpenSSL's), measured on loopback with undici 7.30. The
 * keep-alive bounds how long, not how many: a relay that sent to 3,000 receivers
 * within KEEP_ALIVE_MS held 82 MB of heap for them, most of the 128 MB its heap may
 * grow to (node-flags.ts), beside the payloads it holds (RELAY_MAX_HELD_BYTES, 48
 * MiB), and nothing bounded it further. At the bound, TLS receivers hold about 16
 * MB of heap. A busy receiver past it gets a connection a request until an origin
 * kept has let its last connection go (the keep-alive); the next origin the relay
 * sends to then takes its place.
 */
export const KEPT_ORIGINS_MAX = 500;

/**
 * The most connections open to kept origins, in use or idle, past which idle ones are
 * closed. A kept origin's dispatcher keeps as many connections as it once had
 * requests at once (a webhook's RELAY_PER_WEBHOOK_IN_FLIGHT, more with several
 * webhooks on one origin), each until the keep-alive (KEEP_ALIVE_MS, 10 s): a burst
 * to one origin after another, each answered quickly, left each its peak open, up to
 * KEPT_ORIGINS_MAX × 32 = 16,000 connections, where the relay never has more than
 * RELAY_MAX_IN_FLIGHT (512) requests under way: a file descriptor each, 12 KB of heap
 * (measured on loopback, undici 7.30: 16,000 would be 190 MB, past the 128 MB the
 * relay's heap may grow to) and over TLS some 160 KB of OpenSSL's memory outside the
 * heap. Each connection that opens past the bound closes idle ones, the most recently
 * opened first; one in use is never closed, so a relay with more requests in flight
 * than this holds one a request. Twice the default RELAY_MAX_IN_FLIGHT: a relay at
 * its cap keeps as many idle connections for what comes next.
 */
export const KEPT_CONNECTIONS_MAX = 1_024;

/**
 * The connections of kept origins open now, in the order they opened, held to `max`
 * (KEPT_CONNECTIONS_MAX): each one that opens past it closes idle ones (no request on
 * them, under way or waiting), which undici opens again if their origin needs them.
 * The most recently opened go first: a connection idle for the keep-alive closes by
 * itself, so one open long is used again and again, and a burst's extra connections
 * are the young ones. Told of connections opening and closing, never of a request: a
 * request on a connection kept costs nothing here.
 */
function keptConnections(max: number) {
  const open = new Map<Client, Socket>();
  return {
    opened(client: Client, socket: Socket): void {
      open.set(client, socket);
      if (open.size <= max) return;
      const newestFirst = [...open].reverse();
      for (const [other, otherSocket] of newestFirst) {
        if (other.stats.size > 0) continue;
        open.delete(other);
        otherSocket.destroy();
        if (open.size <= max) return;
      }
    },
    closed(client: Client): void {
      open.delete(client);
    },
  };
}

/**
 * A kept origin's connections (undici's Clients, one connection each at a time, for a
 * Pool's `factory`): each tells `connections` when it opens, with its socket (the one
 * its connector made last), and when it closes.
 */
function keptClients(connections: ReturnType<typeof keptConnections>) {
  return (origin: URL, options: object): Dispatcher => {
    const { connect, ...rest } = options as Client.Options & { connect: buildConnector.connector };
    let socket: Socket | null = null;
    const client = new Client(origin, {
      ...rest,
      connect: (target, callback) => connect(target, (...made) => {
        socket = made[1] as Socket | null;
        callback(...made);
      }),
    });
    client
      .on('connect', () => connections.opened(client, socket!))
      .on('disconnect', () => connections.closed(client));
    return client;
  };
}

/**
 * undici's per-origin dispatchers for an Agent (`factory`, its option): a Pool that
 * keeps its connections alive while fewer than `max` such Pools are open, else one
 * that closes each connection after its answer (pipelining 0, undici's word for no
 * keep-alive), which the Agent drops once that connection has closed. Asked only
 * when the Agent has no dispatcher for an origin, never per request. The Agent closes
 * a Pool when its last connection closes or fails, from its own listener of that
 * event (which runs after the one here): a Pool closed then counts no more (`kept`).
 * The kept Pools' connections together are held to `connectionsMax` (keptConnections).
 */
export function keptOrigins(max: number, connectionsMax: number = KEPT_CONNECTIONS_MAX): { factory: (origin: string | URL, options: object) => Dispatcher; kept: () => number } {
  let kept = 0;
  const clients = keptClients(keptConnections(connectionsMax));
  const factory = (origin: string | URL, options: object): Dispatcher => {
    if (kept >= max) return new Pool(origin, { ...(options as Pool.Options), pipelining: 0 });
    const pool = new Pool(origin, { ...(options as Pool.Options), factory: clients });
    kept++;
    let counted = true;
    const closed = () => {
      if (counted && (pool.closed || pool.destroyed)) {
        counted = false;
        kept--;
      }
    };
    const connectionGone = () => queueMicrotask(closed);
    pool.on('disconnect', connectionGone).on('connectionError', connectionGone);
    return pool;
  };
  return { factory, kept: () => kept };
}

/**
 * The most bytes of a response's status line and headers: undici's own bound, set
 * here so that it is one named fact (an attempt past it says so). A receiver's 80 KB
 * header, thousands of header lines or a header line without end stop there.
 */
export const RESPONSE_MAX_HEADER_BYTES = 16 * 1024;

/**
 * The most bytes read from a connection for one request's answer: far above any the
 * relay keeps (RESPONSE_MAX_HEADER_BYTES of headers and RELAY_RESPONSE_EXCERPT_BYTES of
 * body, 64 KiB at most) with their framing. Past it the connection is dropped. The
 * body past the excerpt is cut off by Exchange, but undici counts neither a chunk's
 * extensions nor interim (1xx) responses, and says nothing while they arrive: a
 * receiver could stream them for the whole request timeout, hundreds of megabytes
 * and a quarter of a core of the relay's CPU for each such request on loopback.
 */
export const RESPONSE_MAX_BYTES = 1024 * 1024;

class ResponseTooLong extends Error {
  readonly code = 'ERR_RESPONSE_TOO_LONG';
}

/**
 * A connector whose connections drop an answer that runs past `maxBytes`: the bytes the
 * connection has read since its last request was written (undici writes a request and
 * reads its answer, one at a time: pipelining 1), looked at as each part of the answer
 * arrives. A listener of the socket's, not a replacement of its read and write
 * methods, which undici calls and a later undici may call otherwise.
 */
export function boundedConnector(connect: buildConnector.connector, maxBytes: number): buildConnector.connector {
  return (target, callback) => {
    connect(target, (error, socket) => {
      if (error) return callback(error, null);
      const connection = socket as Socket;
      let writtenAt = -1;
      let readBefore = 0;
      // (before undici's own listener: what arrived is still buffered)
      connection.on('readable', () => {
        if (connection.bytesWritten !== writtenAt) {
          // the first part of the answer to a request written since
          writtenAt = connection.bytesWritten;
          readBefore = connection.bytesRead - connection.readableLength;
        }
        if (connection.bytesRead - readBefore > maxBytes) {
          connection.destroy(new ResponseTooLong(`more than ${maxBytes} bytes in answer`));
        }
      });
      callback(null, socket!);
    });
  };
}

/** A webhook's URL as its requests need it: parsed, and its origin and path. */
interface Target {
  url: URL;
  origin: string;
  path: string;
}

/**
 * The URLs kept parsed (a Target: about half a kilobyte each), least recently used out
 * (relay/lru.ts). Parsing a URL and reading its origin and path made about 460 bytes
 * of heap a send; a relay sends to few URLs, many times each.
 */
export const PARSED_URLS_MAX = 1_000;

/** Throws as new URL() does on a text that is not a URL. */
function parseTarget(text: string): Target {
  const url = new URL(text);
  return { url, origin: url.origin, path: url.pathname + url.search };
}

/** Where refusals are explained: the operator's log (the tenant sees TENANT_REFUSAL only). */
type RefusalLog = Pick<Logger, 'warn'>;

export class Sender {
  private readonly agent: Agent;
  private readonly kept: ReturnType<typeof keptOrigins>;
  private readonly resolver: ReceiverResolver;
  private readonly options: SenderOptions;
  private readonly log: RefusalLog | null;
  private readonly now: () => number;
  /** the webhooks' URLs, parsed (PARSED_URLS_MAX) */
  private readonly targets = new Map<string, Target>();

  /**
   * `now`: the time an attempt is recorded at, and signed with (webhook-timestamp). The
   * relay gives the database's clock as it reads it (database-clock.ts): SQL compares
   * attempts' times with its own now() (the breaker's and auto-disable's spans,
   * history), and a relay's clock days behind made a webhook's first failure look
   * days old and disabled it. The timestamp a receiver checks is that same time, so
   * that what it was sent and what history shows agree, whichever relay sent it.
   */
  constructor(options: SenderOptions, log: RefusalLog | null = null, now: () => number = Date.now) {
    this.options = options;
    this.log = log;
    this.now = now;
    this.resolver = receiverResolver({ servers: options.dnsServers, timeoutMs: options.connectTimeoutMs });
    this.kept = keptOrigins(options.keptOriginsMax ?? KEPT_ORIGINS_MAX, options.keptConnectionsMax ?? KEPT_CONNECTIONS_MAX);
    this.agent = new Agent({
      // the relay caps requests itself (per webhook and in total)
      connections: null,
      pipelining: 1,
      keepAliveTimeout: options.keepAliveMs ?? KEEP_ALIVE_MS,
      keepAliveMaxTimeout: options.keepAliveMs ?? KEEP_ALIVE_MS,
      factory: this.kept.factory,
      maxHeaderSize: RESPONSE_MAX_HEADER_BYTES,
      // off: each request's Exchange bounds the whole request itself, from before the
      // connect to the body's end (requestTimeoutMs). undici's own two, of the same
      // length but started once the request is written, only fired on their coarse
      // clock (up to half a second early) and cost each request a timer of its own
      // (BENCHMARKS.md, "What the relay allocates per delivery")
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: boundedConnector(
        guardedConnector(options.allowNetworks, { timeout: options.connectTimeoutMs, resolver: this.resolver }),
        RESPONSE_MAX_BYTES,
      ),
    });
  }

  /**
   * One promise a send, the attempt reporting to it by a callback: an async send
   * awaiting an attempt's own promise made about 200 bytes of heap more a delivery
   * (BENCHMARKS.md, "What the relay allocates per delivery").
   */
  send(job: DeliveryJob): Promise<AttemptResult> {
    const attemptedAt = new Date(this.now());
    const started = performance.now();
    return new Promise<AttemptResult>((resolve) => {
      this.attempt(job, attemptedAt.getTime(), (outcome) => {
        resolve({ job, attemptedAt, durationMs: Math.round(performance.now() - started), outcome });
      });
    });
  }

  /** Calls `done` once with the attempt's outcome (at once when nothing is sent). */
  private attempt(job: DeliveryJob, attemptedAtMs: number, done: (outcome: HttpOutcome) => void): void {
    let target: Target;
    try {
      target = leastRecentlyUsed(this.targets, job.url, PARSED_URLS_MAX, parseTarget);
    } catch {
      // (a URL stored before a rule of sql/10_config.sql, or one it takes and the URL
      // standard does not: a name IDNA refuses. Not quoted: a URL's path and query
      // may carry the receiver's credentials, and the error is in the relay's log of
      // each attempt; the tenant has the URL on its webhook)
      done({ kind: 'error', error: 'invalid URL: the URL standard does not read it; the webhook\'s URL needs correcting' });
      return;
    }
    const url = target.url;
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      done({ kind: 'error', error: `unsupported URL scheme ${url.protocol}` });
      return;
    }
    const refused = refuseLiteralHost(url, this.options.allowNetworks);
    if (refused) {
      done(this.refused(job, refused));
      return;
    }
    if (!job.secret) {
      done({ kind: 'error', error: 'not sent: the webhook has no signing secret' });
      return;
    }
    const timestamp = signedTimestamp(attemptedAtMs);
    let signature: string;
    try {
      signature = signatures(job.messageId, job.body, job.secret, job.previousSecrets, timestamp);
    } catch (error) {
      // a secret written by hand before the tables checked its form (migration 0036,
      // NOT VALID: such a row stays until the secret is rotated), "whsec_" and nothing
      // after it: this attempt fails, not the relay (it used to throw here, and the
      // relay process died on it, claim after claim)
      done({ kind: 'error', error: `not sent: the webhook's signing secret cannot sign (${(error as Error).message})` });
      return;
    }
    const headers = deliveryHeaders(USER_AGENT, job.messageId, timestamp, signature);
    const exchange = new Exchange(this.options.responseExcerptBytes, this.options.requestTimeoutMs, this.now, (ended) => {
      if (ended.kind === 'response') {
        done(ended);
      } else {
        const refusedAtConnect = destinationRefused(ended.error);
        done(refusedAtConnect
          ? this.refused(job, refusedAtConnect)
          : { kind: 'error', error: describeFailure(ended.error, ended.timedOut, this.options, url) });
      }
    });
    try {
      this.agent.dispatch({
        origin: target.origin,
        path: target.path,
        method: 'POST',
        headers,
        body: job.body,
      }, exchange);
    } catch (error) {
      exchange.onResponseError(null, error as Error);
    }
  }

  private refused(job: DeliveryJob, refusal: DestinationRefused): HttpOutcome {
    this.log?.warn({ webhook: job.webhookId, delivery: job.deliveryId, attempt: job.attempt, why: refusal.detail }, refusal.detail);
    return { kind: 'error', error: refusal.message };
  }

  /** The origins undici holds a dispatcher for now, kept or with a request under way (a count of all of them: not for a hot path). */
  get origins(): number {
    return Object.keys(this.agent.stats).length;
  }

  /** The origins whose connections are kept alive now, and the connections open to receivers (a count of all of them: not for a hot path). */
  receivers(): { kept: number; connections: number } {
    let connections = 0;
    for (const stats of Object.values(this.agent.stats)) connections += Number(stats.connected);
    return { kept: this.kept.kept(), connections };
  }

  async close(): Promise<void> {
    await this.agent.close();
    this.resolver.close();
  }
}

/** The bytes that make a response body's excerpt: text columns hold neither NUL nor broken UTF-8. */
const excerptDecoder = new TextDecoder('utf-8', { fatal: false });

/** Thrown into a request whose response body runs past the excerpt: its connection is dropped. */
class LongBody extends Error {}

/**
 * Thrown into a request whose answer has a status no final response follows (101, or
 * below 100): undici would end it itself, with a parser assertion as the error.
 */
class NoFinalStatus extends Error {
  readonly code = 'ERR_NO_FINAL_STATUS';
  readonly status: number;
  constructor(status: number) {
    super(`status ${status}`);
    this.status = status;
  }
}

/**
 * A 204 or 304 that names a Content-Length: HTTP ends such an answer at its headers,
 * whatever length they name (RFC 9112, 6.3), and the answer is whole. undici counts
 * the body it never reads against the length, and ends the request with a mismatch
 * (undici 7.30 exempts a HEAD's answer alone): a receiver's 204 was recorded as a
 * failure, in undici's words, and sent again until its attempts ran out.
 */
function endsAtItsHeaders(status: number, error: Error): boolean {
  return (status === 204 || status === 304) && (error as { code?: string }).code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH';
}

export type Ended = (HttpOutcome & { kind: 'response' }) | { kind: 'failed'; error: unknown; timedOut: boolean };

/**
 * One request's exchange, as undici's dispatcher reports it (Dispatcher.dispatch): the
 * status, the headers and at most `limit` bytes of the body, or the error, ended once
 * by `done`. A long body is not worth the wait: past the limit the connection is
 * dropped rather than read on. The whole request, connecting, sending and answering,
 * gets `timeoutMs`, however long the connect timeout allows.
 *
 * Not undici's request(): it wraps every response in a stream, an async resource and
 * an abort-signal listener, a fifth or more of what a send costs the relay's CPU
 * (20,000 signed POSTs to a receiver on loopback, 32 in flight: about 50–80 µs of CPU
 * a send here against 70–100 through request(), in interleaved runs).
 */
export class Exchange implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private status = 0;
  private headers: Record<string, string | string[] | undefined> = {};
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private timedOut = false;
  private ended = false;
  private readonly timer: NodeJS.Timeout;
  private readonly limit: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly done: (ended: Ended) => void;

  /** `now`: the sender's clock (the database's as the relay reads it), which a Retry-After date is read against */
  constructor(limit: number, timeoutMs: number, now: () => number, done: (ended: Ended) => void) {
    this.limit = limit;
    this.timeoutMs = timeoutMs;
    this.now = now;
    this.done = done;
    // (its end deferred to the loop's check phase, after its poll: when the loop was
    // held up past the timeout, an answer that came meanwhile waits in the socket,
    // and timers run before sockets are read. Aborted at once, an answer that came in
    // time was a timeout, and the delivery went again: test/relay/sender.test.ts)
    this.timer = setTimeout(() => setImmediate(() => this.expire()), timeoutMs);
  }

  /** The request timeout, unless the exchange ended meanwhile. */
  private expire(): void {
    if (this.ended) return;
    this.timedOut = true;
    if (this.controller) {
      this.controller.abort(new Error('timeout'));
    } else {
      // still connecting (a TLS handshake may hang as long as the connect timeout
      // allows): the attempt ends now, and onRequestStart aborts the request before
      // anything is written, should its connection come up later
      this.end({ kind: 'failed', error: new Error('timeout'), timedOut: true });
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.timedOut) controller.abort(new Error('timeout'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // a switch of protocols, or no HTTP status at all: nothing final follows (interim
    // 102 and 103 come here too, before the final response, and are read past; a 100
    // never does: undici drops the connection at it, describeFailure)
    if (statusCode === 101 || statusCode < 100) {
      controller.abort(new NoFinalStatus(statusCode));
      return;
    }
    this.status = statusCode;
    this.headers = headers;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.size < this.limit) this.chunks.push(chunk.subarray(0, this.limit - this.size));
    this.size += chunk.length;
    if (this.size > this.limit) controller.abort(new LongBody());
  }

  onResponseEnd(): void {
    this.respond();
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, error: Error): void {
    if (this.timedOut) {
      // a final status that fails the delivery, its body not ended in time: the status
      // line is the receiver's answer (a 410 disables, a 429's Retry-After is read),
      // said to be cut short. One that acknowledges (a 2xx, 302, 303) does not until
      // its body ends: a timeout. (1xx are interim: a status below 200 is no answer yet)
      if (this.status >= 300 && !acknowledges(this.status)) this.respond(`the response's body did not end within ${this.timeoutMs} ms`);
      else this.end({ kind: 'failed', error, timedOut: true });
    } else if (error instanceof LongBody || endsAtItsHeaders(this.status, error)) {
      this.respond();
    } else {
      this.end({ kind: 'failed', error, timedOut: false });
    }
  }

  /** `cutShort`: why the body was not read to its end, if it was not (a timeout's words) */
  private respond(cutShort: string | null = null): void {
    const status = this.status;
    // (a 2xx, the usual answer, makes no note: its Location is not read)
    const redirect = status >= 300 && status < 400 ? this.redirectNote(status) : null;
    this.end({
      kind: 'response',
      status,
      bodyExcerpt: this.chunks.length === 0 ? '' : excerptDecoder.decode(Buffer.concat(this.chunks)).replaceAll('\u0000', '\uFFFD'),
      // the clock read only for a response that has the header
      retryAfterSeconds: this.headers['retry-after'] === undefined ? null : parseRetryAfter(this.headers['retry-after'], this.now()),
      note: redirect && cutShort ? `${redirect}; ${cutShort}` : redirect ?? cutShort,
    });
  }

  private redirectNote(status: number): string {
    // kept to the excerpt's length as a body is: a header may run to
    // RESPONSE_MAX_HEADER_BYTES, and the note is stored in the attempt, the queue row
    // and the delivery's result (undici reads header values as latin1, one character
    // a byte; asUrl makes one that is not visible ASCII three)
    const shown = clip(asUrl(this.headers.location === undefined ? '' : String(this.headers.location)), this.limit);
    return `redirect not followed: HTTP ${status}${shown ? ` to ${shown}` : ''}`;
  }

  private end(ended: Ended): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.done(ended);
  }
}

/**
 * Retry-After as seconds from `nowMs`: delta-seconds or an HTTP date; null if absent
 * or unreadable. SQL adds the wait to its own now(), so a date is read against the
 * database's clock as the relay reads it (the Sender's), not the relay host's: a host
 * three days behind made a date an hour ahead a wait of three days (cut to
 * webhooks.retry_after_max).
 */
export function parseRetryAfter(header: string | string[] | undefined, nowMs: number = Date.now()): number | null {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Math.min(Number(trimmed), 2_147_483_647);
  // an HTTP date names its day and month ("Wed, 21 Oct 2015 07:28:00 GMT"); this
  // keeps Date.parse from reading "-5" as the year 5 BC
  if (!/[a-z]{3}/i.test(trimmed)) return null;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.min(Math.max(0, Math.ceil((date - nowMs) / 1000)), 2_147_483_647);
}

/** The refusal behind an error from undici (it may wrap what the connector gave it). */
function destinationRefused(error: unknown): DestinationRefused | null {
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof DestinationRefused) return e;
  return null;
}

/** At most `limit` characters of a text a receiver chose, marked where it was cut. */
function clip(text: string, limit: number): string {
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

/**
 * Control characters, C0, DEL and C1: an error is shown on one line, in the page and
 * in a DBA's terminal (where an escape sequence would act), so none are kept.
 */
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]+/g;

/** A text stored as one line: each run of control characters one space. */
function oneLine(text: string): string {
  return text.replaceAll(CONTROL_CHARACTERS, ' ').trim();
}

/**
 * A Location as a URL: every character that is not visible ASCII (spaces, controls,
 * latin1, which is how undici reads a header's bytes) percent-encoded as its byte.
 * A legal URL reads as it came; a receiver's prose ("…; destination refused") or an
 * escape sequence cannot pass for the relay's own words in the note.
 */
function asUrl(text: string): string {
  return text.replace(/[^\u0021-\u007e]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 256 ? `%${code.toString(16).toUpperCase().padStart(2, '0')}` : encodeURIComponent(c);
  });
}

/**
 * The codes Node gives a certificate it does not trust (X509_V_ERR_* without the
 * prefix: self-signed, expired, not yet valid, an unknown issuer, …). Node's message
 * may add advice for whoever runs Node ("try running Node.js with --use-system-ca"),
 * which is not the tenant's to follow.
 */
const UNTRUSTED_CERTIFICATE = /^(?:UNABLE_TO_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH_EXCEEDED|HOSTNAME_MISMATCH)/;

/**
 * What an attempt that got no response records. Stored in the attempt, the queue row
 * and the result, so kept to RELAY_RESPONSE_EXCERPT_BYTES where the receiver writes
 * it: a TLS error names every name of the receiver's certificate, as many as it has.
 */
export function describeFailure(error: unknown, timedOut: boolean, options: Pick<SenderOptions, 'requestTimeoutMs' | 'connectTimeoutMs' | 'responseExcerptBytes'>, url: URL): string {
  type Cause = { code?: string; message?: string; syscall?: string };
  const e = error as Cause & { name?: string; cause?: Cause };
  if (timedOut) {
    return `timeout: no complete response from ${url.host} within ${options.requestTimeoutMs} ms`;
  }
  const code = e.code ?? e.cause?.code;
  // a DNS query's error (dns.ts: queryA, queryAaaa; getaddrinfo for the system's names)
  const syscall = e.syscall ?? e.cause?.syscall ?? '';
  if (syscall.startsWith('query') || syscall === 'getaddrinfo') {
    return code === 'ETIMEOUT'
      ? `DNS: no answer for ${url.hostname} within ${options.connectTimeoutMs} ms`
      : `DNS: cannot resolve ${url.hostname} (${code})`;
  }
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
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      // (a chunked body that names a Content-Length too, and other answers whose
      // framing disagrees with itself; a 204's or 304's is whole: endsAtItsHeaders)
      return `${url.host} answered a body whose length is not the Content-Length it named`;
    case 'UND_ERR_HEADERS_OVERFLOW':
      return `response headers from ${url.host} ran past ${RESPONSE_MAX_HEADER_BYTES} bytes`;
    case 'ERR_RESPONSE_TOO_LONG':
      return `response from ${url.host} ran past ${RESPONSE_MAX_BYTES} bytes without ending`;
    case 'ERR_NO_FINAL_STATUS': {
      const status = (error as NoFinalStatus).status;
      return status === 101
        ? `${url.host} answered 101 Switching Protocols to a webhook POST: no final status`
        : `${url.host} answered with status ${status}, which is not an HTTP status`;
    }
    case 'UND_ERR_SOCKET':
      // undici's words for an answer it ends itself: an upgrade it did not ask
      // for, and 100 Continue. Its HTTP/1.1 client drops the connection at any 100,
      // whatever follows: a final status after it too, legal as that is (RFC 9110,
      // 15.2), so such a receiver cannot be delivered to. Nothing asks it to read
      // on: it refuses an Expect header, and its expectContinue is HTTP/2's (undici
      // 7.30). The attempt fails with these words and is retried on the schedule;
      // the connection is gone and the slot free (test/relay/interim-responses.test.ts).
      // (Its other 'bad response', bytes while no request runs, ends no request.)
      if (e.message === 'bad response') {
        return `${url.host} answered 100 Continue, which the relay does not read past (it sends no Expect: 100-continue): no final status`;
      }
      if (e.message === 'bad upgrade') return `${url.host} answered 101 Switching Protocols to a webhook POST: no final status`;
      return `connection to ${url.host} closed before a complete response`;
    case 'ECONNRESET':
      return `connection to ${url.host} closed before a complete response`;
  }
  // a connection the network refused (ENETUNREACH, EHOSTUNREACH, a firewall's EPERM),
  // to one address or, each of a name's addresses tried, to all (an AggregateError,
  // its message empty): Node's words name the address the name resolved to and the
  // relay's own ("connect ENETUNREACH 224.0.0.1:81 - Local (0.0.0.0:0)"), which are
  // the operator's to see, not the tenant's (docs/security.md)
  const tried = (error as { errors?: unknown }).errors ?? (e.cause as { errors?: unknown } | undefined)?.errors;
  if (code && (syscall === 'connect' || (Array.isArray(tried) && tried.some((one) => (one as Cause | null)?.syscall === 'connect')))) {
    return `could not connect to ${url.host} (${code})`;
  }
  if (e.name === 'HTTPParserError') {
    // llhttp's reason, one of its fixed words (the receiver's bytes are not quoted):
    // a malformed status line, HTTP/0.9-style bytes, TLS on an http:// URL
    const reason = /\((.*)\)$/.exec(e.message ?? '')?.[1] ?? e.message ?? 'unreadable';
    return clip(`${url.host} answered with bytes that are not an HTTP/1.1 response (${oneLine(reason)})`, options.responseExcerptBytes);
  }
  if (code?.startsWith('ERR_SSL_')) {
    // OpenSSL's message runs over lines and names its source files; its reason is the point
    // (plain text on an https:// URL: "wrong version number")
    const reason = (e as { reason?: string }).reason;
    return clip(oneLine(`TLS handshake with ${url.host} failed: ${reason ?? e.message ?? ''} (${code})`), options.responseExcerptBytes);
  }
  if (code && UNTRUSTED_CERTIFICATE.test(code)) {
    const reason = (e.message ?? '').split(';')[0]!;
    return clip(oneLine(`TLS: the certificate of ${url.host} is not trusted: ${reason} (${code})`), options.responseExcerptBytes);
  }
  return clip(oneLine(`${code ? `${code}: ` : ''}${e.message ?? String(error)}`), options.responseExcerptBytes);
}
