// JSON logs (pino) for the tools, as the relay and the API write them. What a tool
// prints for a person (URLs, usage, migration steps) stays plain text on stdout.
import pino, { type Logger } from 'pino';

export function toolsLogger(name: string): Logger {
  return pino({ name: `bpd-webhooks-${name}` });
}
