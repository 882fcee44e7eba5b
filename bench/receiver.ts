// The receiver every contender posts to: node:http on loopback, answers 204 (at once,
// or after a set delay, as an endpoint that takes its time would), and records for
// each request its arrival time, its webhook-id and the sequence number that the
// benchmark wrote into the contact (so an arrival can be matched to the commit that
// caused it). It runs in a process of its own so that its work does not
// count against any contender, and talks to the benchmark over the IPC channel.
import { fork, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { now } from './clock.ts';

export interface Arrivals {
  /** per request: sequence number (-1 when the body carried none) */
  seqs: number[];
  /** per request: arrival time (ms, clock.ts) */
  times: number[];
  /** per request: the webhook-id header */
  ids: string[];
}

type Request =
  | { type: 'count'; ref: number }
  | { type: 'take'; ref: number }
  | { type: 'expect'; ref: number; distinct: number }
  | { type: 'answer-after'; ref: number; ms: number };

type Reply = { ref: number; count?: number; arrivals?: Arrivals; reached?: boolean };

// the body carries `"seq": 123` (Postgres jsonb text) or `"seq":123` (JSON.stringify)
const SEQ = /"seq":\s?(\d+)/;

function serve(): void {
  let arrivals: Arrivals = { seqs: [], times: [], ids: [] };
  let distinct = new Set<number>();
  let waiting: { ref: number; distinct: number } | undefined;
  /** how long each request waits for its answer (its arrival is recorded at once) */
  let answerAfterMs = 0;

  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const at = now();
      const match = SEQ.exec(Buffer.concat(chunks).toString('utf8'));
      const seq = match ? Number(match[1]) : -1;
      arrivals.seqs.push(seq);
      arrivals.times.push(at);
      arrivals.ids.push(String(request.headers['webhook-id'] ?? ''));
      distinct.add(seq);
      if (answerAfterMs > 0) setTimeout(() => response.writeHead(204).end(), answerAfterMs);
      else response.writeHead(204).end();
      if (waiting && distinct.size >= waiting.distinct) {
        process.send!({ ref: waiting.ref, reached: true } satisfies Reply);
        waiting = undefined;
      }
    });
  });
  // keep connections open across the pauses between phases
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 65_000;

  process.on('message', (message: Request) => {
    if (message.type === 'count') {
      process.send!({ ref: message.ref, count: distinct.size } satisfies Reply);
    } else if (message.type === 'take') {
      process.send!({ ref: message.ref, arrivals } satisfies Reply);
      arrivals = { seqs: [], times: [], ids: [] };
      distinct = new Set();
    } else if (message.type === 'answer-after') {
      answerAfterMs = message.ms;
      process.send!({ ref: message.ref } satisfies Reply);
    } else if (message.type === 'expect') {
      if (distinct.size >= message.distinct) {
        process.send!({ ref: message.ref, reached: true } satisfies Reply);
      } else {
        waiting = { ref: message.ref, distinct: message.distinct };
      }
    }
  });
  process.on('disconnect', () => process.exit(0));
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.send!({ ref: 0, count: typeof address === 'object' && address ? address.port : 0 } satisfies Reply);
  });
}

/** The benchmark's handle on the receiver process. */
export interface Receiver {
  url: string;
  origin: string;
  /** the receiver's process (its CPU time is read from /proc) */
  pid: number;
  /** distinct sequence numbers seen since the last take() */
  count(): Promise<number>;
  /** resolves true once `distinct` sequence numbers have arrived, false after timeoutMs */
  expect(distinct: number, timeoutMs: number): Promise<boolean>;
  /** answer each request `ms` after it arrived from now on (0: at once) */
  answerAfter(ms: number): Promise<void>;
  /** everything recorded since the last take(); starts afresh */
  take(): Promise<Arrivals>;
  stop(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map<number, (reply: Reply) => void>();
  let nextRef = 1;
  child.on('message', (reply: Reply) => {
    const resolve = pending.get(reply.ref);
    pending.delete(reply.ref);
    resolve?.(reply);
  });
  const ask = (message: Record<string, unknown>): Promise<Reply> =>
    new Promise((resolve) => {
      const ref = nextRef++;
      pending.set(ref, resolve);
      child.send({ ...message, ref });
    });
  const port = await new Promise<number>((resolve, reject) => {
    pending.set(0, (reply) => resolve(reply.count!));
    child.once('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
  });
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    url: `${origin}/hook`,
    pid: child.pid!,
    count: async () => (await ask({ type: 'count' })).count!,
    expect: async (distinct, timeoutMs) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      const reached = ask({ type: 'expect', distinct }).then(() => true);
      const result = await Promise.race([reached, timeout]);
      clearTimeout(timer);
      return result;
    },
    answerAfter: async (ms) => {
      await ask({ type: 'answer-after', ms });
    },
    take: async () => (await ask({ type: 'take' })).arrivals!,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.disconnect();
      await exited;
    },
  };
}

if (process.argv.includes('--serve') && process.send) serve();
