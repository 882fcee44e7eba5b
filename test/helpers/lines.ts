// The lines a child process writes (tools started as processes by the tests), and
// those a logger of the process itself writes.
import { Writable } from 'node:stream';
import pino from 'pino';

/** Lines a process writes, and a way to wait for one that matches. */
export function lines(stream: NodeJS.ReadableStream) {
  const seen: string[] = [];
  const waiters: Array<{ pattern: RegExp; from: number; resolve: (match: RegExpMatchArray) => void }> = [];
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    rest += chunk;
    const parts = rest.split('\n');
    rest = parts.pop()!;
    for (const line of parts) {
      seen.push(line);
      for (const waiter of [...waiters]) {
        const match = line.match(waiter.pattern);
        if (match && seen.length > waiter.from) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(match);
        }
      }
    }
  });
  return {
    seen,
    /** the next line matching pattern from now on (or already seen, with from: 0) */
    next(pattern: RegExp, timeoutMs = 60_000, from = seen.length): Promise<RegExpMatchArray> {
      const earlier = seen.slice(from).map((line) => line.match(pattern)).find(Boolean);
      if (earlier) return Promise.resolve(earlier);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms:\n${seen.join('\n')}`)), timeoutMs);
        waiters.push({ pattern, from, resolve: (match) => (clearTimeout(timer), resolve(match)) });
      });
    },
  };
}

/** A logger (pino, named as the API's) and the JSON lines it writes. */
export function logLines(): { lines: string[]; log: pino.Logger } {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk, _encoding, done) { lines.push(...String(chunk).split('\n').filter(Boolean)); done(); } });
  return { lines, log: pino({ name: 'bpd-webhooks-api' }, sink) };
}
