// A real HTTP receiver on loopback for tests: answers each request as scripted,
// records what arrived, and checks Standard Webhooks signatures with the
// `standardwebhooks` package (not with the relay's own code).
//
//   const receiver = await startReceiver();
//   const url = receiver.route('/hook', { secret: webhook.secret, replies: [500, 200] });
//   ... point a webhook at url ...
//   const [first, second] = await receiver.waitFor(2, { path: '/hook' });
//   t.true(second.verified);
//
// Replies: a status code, { status, body, headers }, { ..., after: promise } (answers
// once the test resolves the promise), { ..., delayMs } (answers that long after the
// request arrived: a slow receiver), { ..., bodyStalls: true } (sends its status,
// headers and `body`, then never ends the body until the receiver closes), or 'hang'
// (never answers until the receiver closes; the sender's timeout must end it). Unscripted requests get the route's
// `otherwise` (default 200).
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Webhook } from 'standardwebhooks';

export type Reply =
  | number
  | 'hang'
  | { status: number; body?: string; headers?: Record<string, string>; after?: Promise<unknown>; delayMs?: number; bodyStalls?: true };

/** Replies that each wait for their own gate, opened one by one by the test (`opens[i]()`). */
export function gatedReplies(count: number): { replies: Reply[]; opens: Array<() => void> } {
  const opens: Array<() => void> = [];
  const replies = Array.from({ length: count }, () => ({
    status: 200,
    after: new Promise<void>((resolve) => opens.push(resolve)),
  }));
  return { replies, opens };
}

export interface RouteOptions {
  /** secret(s) the signature must match (any one of them); none: not checked */
  secret?: string | string[];
  /** answers for the next requests to this path, in order */
  replies?: Reply[];
  /** the answer once the scripted replies are used up (default 200) */
  otherwise?: Reply;
}

export interface ReceivedRequest {
  /** arrival order across the whole receiver, from 0 */
  index: number;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Date.now() with sub-millisecond precision when the body had fully arrived */
  receivedAt: number;
  /** requests to this path unanswered when this one arrived, itself included */
  concurrent: number;
  /** null: no secret known for this path */
  verified: boolean | null;
  verifyError: string | null;
  reply: Reply;
}

interface Route {
  secrets: string[];
  replies: Reply[];
  otherwise: Reply;
}

interface Waiter {
  count: number;
  path: string | undefined;
  resolve: (requests: ReceivedRequest[]) => void;
}

export class Receiver {
  readonly requests: ReceivedRequest[] = [];
  private readonly server: Server;
  private readonly routes = new Map<string, Route>();
  private readonly waiters = new Set<Waiter>();
  private readonly sockets = new Set<Socket>();
  private readonly hung = new Set<ServerResponse>();
  /** requests arrived and not yet answered, per path */
  private readonly open = new Map<string, number>();
  private port = 0;
  private host = '127.0.0.1';

  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => this.answer(req.method ?? '', req.url ?? '/', req.headers, Buffer.concat(chunks).toString('utf8'), res));
    });
    this.server.keepAliveTimeout = 30_000;
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  /** host: a loopback address (127.0.0.0/8); never any other */
  async listen(host = '127.0.0.1'): Promise<this> {
    if (!host.startsWith('127.')) throw new Error(`a test receiver listens on loopback only, not ${host}`);
    this.host = host;
    await new Promise<void>((resolve) => this.server.listen(0, host, resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** http://127.0.0.1:<port> (or the loopback address it listens on) */
  get origin(): string {
    return `http://${this.host}:${this.port}`;
  }

  url(path = '/'): string {
    return `${this.origin}${path}`;
  }

  /** Scripts a path and returns its full URL. Calling it again adds replies. */
  route(path: string, options: RouteOptions = {}): string {
    const route = this.routeFor(path);
    if (options.secret !== undefined) route.secrets = Array.isArray(options.secret) ? options.secret : [options.secret];
    if (options.replies) route.replies.push(...options.replies);
    if (options.otherwise !== undefined) route.otherwise = options.otherwise;
    return this.url(path);
  }

  /** Requests that arrived at a path (all paths when none is given), in order. */
  received(path?: string): ReceivedRequest[] {
    return path === undefined ? [...this.requests] : this.requests.filter((r) => r.path === path);
  }

  /** Requests to a path that have arrived and are neither answered nor dropped yet. */
  unanswered(path: string): number {
    return this.open.get(path) ?? 0;
  }

  /** The most requests to a path that were ever unanswered at once. */
  maxConcurrent(path: string): number {
    return Math.max(0, ...this.received(path).map((r) => r.concurrent));
  }

  /**
   * Resolves with the first `count` requests (to `path`, if given) once they have
   * arrived; rejects after `timeoutMs`, saying what did arrive.
   */
  waitFor(count: number, options: { path?: string; timeoutMs?: number } = {}): Promise<ReceivedRequest[]> {
    const { path, timeoutMs = 30_000 } = options;
    const ready = this.received(path);
    if (ready.length >= count) return Promise.resolve(ready.slice(0, count));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        const got = this.received(path);
        reject(new Error(
          `receiver: expected ${count} request(s)${path ? ` to ${path}` : ''} within ${timeoutMs} ms, got ${got.length}: ` +
            JSON.stringify(got.map((r) => ({ path: r.path, id: r.headers['webhook-id'], reply: r.reply }))),
        ));
      }, timeoutMs);
      const waiter: Waiter = {
        count,
        path,
        resolve: (requests) => {
          clearTimeout(timer);
          resolve(requests);
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** Stops listening and drops every connection, hung requests included. */
  async close(): Promise<void> {
    for (const res of this.hung) res.destroy();
    this.hung.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private routeFor(path: string): Route {
    let route = this.routes.get(path);
    if (!route) {
      route = { secrets: [], replies: [], otherwise: 200 };
      this.routes.set(path, route);
    }
    return route;
  }

  private answer(method: string, rawUrl: string, headers: IncomingHttpHeaders, body: string, res: ServerResponse): void {
    const path = rawUrl.split('?')[0]!;
    const route = this.routeFor(path);
    const reply = route.replies.length > 0 ? route.replies.shift()! : route.otherwise;
    let verified: boolean | null = null;
    let verifyError: string | null = null;
    if (route.secrets.length > 0) {
      const errors: string[] = [];
      verified = route.secrets.some((secret) => {
        try {
          new Webhook(secret).verify(body, headers as Record<string, string>);
          return true;
        } catch (error) {
          errors.push((error as Error).message);
          return false;
        }
      });
      if (!verified) verifyError = errors.join('; ');
    }
    const concurrent = (this.open.get(path) ?? 0) + 1;
    this.open.set(path, concurrent);
    res.on('close', () => this.open.set(path, this.open.get(path)! - 1));
    const request: ReceivedRequest = {
      index: this.requests.length,
      method,
      path,
      headers,
      body,
      receivedAt: performance.timeOrigin + performance.now(),
      concurrent,
      verified,
      verifyError,
      reply,
    };
    this.requests.push(request);

    if (reply === 'hang') {
      this.hung.add(res);
      res.on('close', () => this.hung.delete(res));
    } else {
      const { status, body: replyBody = '', headers: replyHeaders = {}, after, delayMs, bodyStalls } =
        typeof reply === 'number' ? { status: reply, after: undefined, delayMs: undefined, bodyStalls: undefined } : reply;
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(status, replyHeaders);
        if (!bodyStalls) return void res.end(replyBody);
        // the head goes now, the body's end never: chunked, or short of a Content-Length
        res.flushHeaders();
        if (replyBody) res.write(replyBody);
        this.hung.add(res);
        res.on('close', () => this.hung.delete(res));
      };
      if (after) void after.then(send, send);
      else if (delayMs) setTimeout(send, delayMs);
      else send();
    }

    for (const waiter of this.waiters) {
      const matching = this.received(waiter.path);
      if (matching.length >= waiter.count) {
        this.waiters.delete(waiter);
        waiter.resolve(matching.slice(0, waiter.count));
      }
    }
  }
}

export async function startReceiver(options: { host?: string } = {}): Promise<Receiver> {
  return await new Receiver().listen(options.host);
}
