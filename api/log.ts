// JSON logs (pino), as the relay writes them: problems at warn/error, one line each,
// with the error's stack under `err`. The API logs what no request can be told:
// lost idle connections, failed roll-ups, errors behind an HTTP 500, and errors of a
// GraphQL request that no rule names, bounded (api/errors.ts, UnnamedErrors).
import pino, { type Logger } from 'pino';

export function apiLogger(level = 'info'): Logger {
  return pino({ name: 'bpd-webhooks-api', level });
}
