// JSON logs (pino): one line per settled attempt at level info, problems at warn/error.
import pino, { type DestinationStream, type Logger } from 'pino';

export function relayLogger(relayId: string, level: string): Logger {
  return pino({ name: 'bpd-webhooks-relay', level, base: { relay: relayId } }, stdoutAsBytes());
}

/**
 * Standard output, each line handed over as bytes: written when the write before it
 * is done, as pino's own destination writes (and flushed at exit as it is). That one
 * takes text: it appends each line to the text waiting to be written and measures
 * that text's UTF-8 length at each line, so V8 copies all of it to a flat string
 * again, line after line. Under load, with a line per settled attempt, that was
 * about 5 KB of the relay's heap a delivery, a seventh of all it allocated; as bytes,
 * lines wait in a list and are joined once a write (BENCHMARKS.md, "What the relay
 * allocates per delivery").
 */
function stdoutAsBytes(): DestinationStream {
  const destination = pino.destination({ dest: process.stdout.fd, sync: false, contentMode: 'buffer' });
  return {
    write: (line: string) => destination.write(Buffer.from(line) as unknown as string),
  };
}
