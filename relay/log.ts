// JSON logs (pino): one line per settled attempt at level info, problems at warn/error.
import pino, { type Logger } from 'pino';

export function relayLogger(relayId: string, level: string): Logger {
  return pino({ name: 'bpd-webhooks-relay', level, base: { relay: relayId } });
}
