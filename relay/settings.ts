// The relay's settings, read from the environment (or given by a caller such as
// `npm start` or a test). Bad values stop the relay at start with a message that
// names the variable; nothing is guessed.
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { parseNetworks, type NetworkList } from './destinations.ts';
import { BACKFILLER_INTERVAL_DEFAULT_MS } from './backfiller.ts';
import { databaseUrlRefusal } from './database.ts';
import { RESCUER_INTERVAL_DEFAULT_MS } from './rescuer.ts';

export interface RelaySettings {
  databaseUrl: string;
  /** names this relay in leases (locked_by) and in attempt history */
  relayId: string;
  /** the role the relay's queries run as (null: the connecting user itself) */
  databaseRole: string | null;
  /** a query of the relay's without an answer for this long is given up with its connection */
  databaseQueryTimeoutMs: number;
  /** each database connection is closed (once free) this long after it opened, and a new one opened when needed */
  databaseConnectionLifetimeMs: number;
  /** networks the relay may send to although they are loopback, private, … */
  allowNetworks: NetworkList;
  /** deliveries claimed per round trip */
  batchSize: number;
  /** HTTP requests in flight, all webhooks together */
  maxInFlight: number;
  /** HTTP requests in flight to one webhook */
  perWebhookInFlight: number;
  /** deliveries of one webhook claimed ahead of its free request slots, queued locally */
  prefetch: number;
  /** bytes of payloads held (in flight, queued, paced), all webhooks together; each company gets its share */
  maxHeldBytes: number;
  leaseMs: number;
  /** how often the relay looks for due work without being notified */
  pollIntervalMs: number;
  rescueIntervalMs: number;
  /** how often the relay steps running backfills (sql/35_backfill.sql) */
  backfillIntervalMs: number;
  /** the DNS servers receivers' names are asked of (address or address:port); null: the system's */
  dnsServers: string[] | null;
  connectTimeoutMs: number;
  /** the whole request: connect, send, response headers and the body excerpt */
  requestTimeoutMs: number;
  /** at most this much of a response body is read and kept in history */
  responseExcerptBytes: number;
  logLevel: string;
  /** where /metrics, /healthz and /readyz are served (ops/); null: nowhere */
  metricsPort: number | null;
  metricsHost: string;
}

/** Environment variables, their defaults and what they mean (docs/relay.md lists them). */
export const ENVIRONMENT = {
  DATABASE_URL: { default: '', help: 'the database whose outbox the relay drains (required)' },
  RELAY_ID: { default: '<host>:<pid>:<random>', help: 'names this relay in leases and attempt history; unique to one running relay, new at each start' },
  RELAY_DB_ROLE: { default: 'bpd_webhooks_relay', help: "role the relay's queries run as; empty: the connecting user" },
  RELAY_DB_QUERY_TIMEOUT_MS: {
    default: '30000',
    help: 'a database query without an answer for this long is given up with its connection (a network path that went silent)',
  },
  RELAY_DB_CONNECTION_LIFETIME_MS: {
    // a DBA's alter database/role … set reaches a session only when it connects; a new
    // connection's first claim plans the relay's statements (about 20 ms of Postgres time)
    default: '300000',
    help: "each database connection is closed (once free) this long after it opened: a DBA's change of an engine setting (alter database … set) is in force within it",
  },
  RELAY_ALLOW_NETWORKS: { default: '', help: 'comma-separated CIDRs the relay may send to although loopback, private, link-local, …' },
  RELAY_BATCH_SIZE: { default: '200', help: 'deliveries claimed per round trip (a settle writes up to twice as many results)' },
  RELAY_MAX_IN_FLIGHT: { default: '512', help: 'HTTP requests in flight, all webhooks together' },
  RELAY_PER_WEBHOOK_IN_FLIGHT: { default: '32', help: 'HTTP requests in flight to one webhook' },
  RELAY_PREFETCH: {
    default: '',
    help: 'deliveries of one webhook claimed ahead of its free request slots, 0 to RELAY_PER_WEBHOOK_IN_FLIGHT; empty: RELAY_PER_WEBHOOK_IN_FLIGHT',
  },
  RELAY_MAX_HELD_BYTES: {
    // 48 MiB: the relay's heap is 128 (node-flags.ts), and a claim's bodies arrive
    // while the held ones are still there
    default: '50331648',
    help: 'bytes of payloads held (in flight, queued, paced), all webhooks together; each company with work gets its share',
  },
  RELAY_LEASE_MS: { default: '60000', help: 'how long a claimed delivery is reserved for this relay' },
  RELAY_POLL_INTERVAL_MS: { default: '1000', help: 'how often to look for due work without a notification' },
  RELAY_RESCUE_INTERVAL_MS: { default: String(RESCUER_INTERVAL_DEFAULT_MS), help: 'how often to return expired leases to pending' },
  RELAY_BACKFILL_INTERVAL_MS: { default: String(BACKFILLER_INTERVAL_DEFAULT_MS), help: 'how often to write the next batch of running backfills (when they have room), besides at once after a settle of a webhook whose backfill waits for room' },
  RELAY_DNS_SERVERS: {
    default: '',
    help: "comma-separated DNS servers (address or address:port) asked for receivers' addresses; empty: the system's (resolv.conf)",
  },
  RELAY_CONNECT_TIMEOUT_MS: { default: '5000', help: 'TCP/TLS connect timeout (and the DNS query timeout)' },
  RELAY_REQUEST_TIMEOUT_MS: { default: '15000', help: 'whole-request timeout (must be shorter than the lease)' },
  RELAY_RESPONSE_EXCERPT_BYTES: { default: '1024', help: 'response body bytes read and kept in history (and characters of a redirect\'s Location or of an error the receiver words)' },
  RELAY_LOG_LEVEL: { default: 'info', help: 'pino level: info logs every settled attempt' },
  RELAY_METRICS_PORT: { default: '', help: 'port of /metrics, /healthz and /readyz (docs/operations.md); empty: none' },
  RELAY_METRICS_HOST: { default: '127.0.0.1', help: 'address the metrics port listens on' },
} as const;

type Environment = Record<string, string | undefined>;

export class SettingsError extends Error {
  override name = 'SettingsError';
}

function integer(env: Environment, name: keyof typeof ENVIRONMENT, min: number, max: number): number {
  // (empty: unset, as an empty RELAY_PREFETCH or RELAY_ID is)
  const raw = env[name] || ENVIRONMENT[name].default;
  const value = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new SettingsError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

const ROLE_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

/** RELAY_DNS_SERVERS: "10.0.0.2, 127.0.0.1:5353, ::1, [::1]:53" (empty: null, the system's). */
function dnsServers(text: string): string[] | null {
  const servers = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const server of servers) {
    // an address alone, an IPv6 address with a port in brackets, or an IPv4 one with a port
    const [, address = server, port = '53'] = /^\[(.+)\]:(\d{1,5})$/.exec(server) ?? /^([^:]+):(\d{1,5})$/.exec(server) ?? [];
    if (!isIP(address) || Number(port) < 1 || Number(port) > 65_535) {
      throw new SettingsError(`RELAY_DNS_SERVERS: ${JSON.stringify(server)} is not a DNS server such as 10.0.0.2, 127.0.0.1:5353 or [::1]:53`);
    }
  }
  return servers.length > 0 ? servers : null;
}

/** Reads the settings; `defaults` stand in for variables the environment leaves unset. */
export function relaySettings(env: Environment = process.env, defaults: Environment = {}): RelaySettings {
  const merged: Environment = { ...defaults };
  for (const [key, value] of Object.entries(env)) if (value !== undefined) merged[key] = value;

  const databaseUrl = merged.DATABASE_URL ?? '';
  if (!databaseUrl) throw new SettingsError('DATABASE_URL is not set: the relay needs the database to drain');
  const urlRefusal = databaseUrlRefusal(databaseUrl);
  if (urlRefusal) throw new SettingsError(urlRefusal);

  const role = merged.RELAY_DB_ROLE ?? ENVIRONMENT.RELAY_DB_ROLE.default;
  if (role !== '' && !ROLE_NAME.test(role)) {
    throw new SettingsError(`RELAY_DB_ROLE must be a plain role name (letters, digits, _), got ${JSON.stringify(role)}`);
  }

  let allowNetworks: NetworkList;
  try {
    allowNetworks = parseNetworks(merged.RELAY_ALLOW_NETWORKS ?? '');
  } catch (error) {
    throw new SettingsError(`RELAY_ALLOW_NETWORKS: ${(error as Error).message}`);
  }

  const settings: RelaySettings = {
    databaseUrl,
    relayId: merged.RELAY_ID || `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`,
    databaseRole: role === '' ? null : role,
    databaseQueryTimeoutMs: integer(merged, 'RELAY_DB_QUERY_TIMEOUT_MS', 100, 3_600_000),
    databaseConnectionLifetimeMs: integer(merged, 'RELAY_DB_CONNECTION_LIFETIME_MS', 100, 86_400_000),
    allowNetworks,
    batchSize: integer(merged, 'RELAY_BATCH_SIZE', 1, 10_000),
    maxInFlight: integer(merged, 'RELAY_MAX_IN_FLIGHT', 1, 100_000),
    perWebhookInFlight: integer(merged, 'RELAY_PER_WEBHOOK_IN_FLIGHT', 1, 10_000),
    prefetch: 0, // below: its default follows perWebhookInFlight
    maxHeldBytes: integer(merged, 'RELAY_MAX_HELD_BYTES', 65_536, 1_073_741_824),
    leaseMs: integer(merged, 'RELAY_LEASE_MS', 100, 86_400_000),
    pollIntervalMs: integer(merged, 'RELAY_POLL_INTERVAL_MS', 10, 3_600_000),
    rescueIntervalMs: integer(merged, 'RELAY_RESCUE_INTERVAL_MS', 10, 3_600_000),
    backfillIntervalMs: integer(merged, 'RELAY_BACKFILL_INTERVAL_MS', 10, 3_600_000),
    dnsServers: dnsServers(merged.RELAY_DNS_SERVERS ?? ''),
    connectTimeoutMs: integer(merged, 'RELAY_CONNECT_TIMEOUT_MS', 1, 600_000),
    requestTimeoutMs: integer(merged, 'RELAY_REQUEST_TIMEOUT_MS', 1, 3_600_000),
    responseExcerptBytes: integer(merged, 'RELAY_RESPONSE_EXCERPT_BYTES', 0, 65_536),
    logLevel: merged.RELAY_LOG_LEVEL || ENVIRONMENT.RELAY_LOG_LEVEL.default,
    metricsPort: merged.RELAY_METRICS_PORT ? integer(merged, 'RELAY_METRICS_PORT', 0, 65_535) : null,
    metricsHost: merged.RELAY_METRICS_HOST || ENVIRONMENT.RELAY_METRICS_HOST.default,
  };
  if (settings.leaseMs <= settings.requestTimeoutMs) {
    throw new SettingsError(
      `RELAY_LEASE_MS (${settings.leaseMs}) must be longer than RELAY_REQUEST_TIMEOUT_MS (${settings.requestTimeoutMs}): ` +
        'a lease has to outlast the request it covers, or another relay would send the same delivery meanwhile',
    );
  }
  settings.prefetch = merged.RELAY_PREFETCH
    ? integer(merged, 'RELAY_PREFETCH', 0, 10_000)
    : settings.perWebhookInFlight;
  if (settings.prefetch > settings.perWebhookInFlight) {
    // a queued delivery then waits at most about one request for a slot, well within its lease
    throw new SettingsError(
      `RELAY_PREFETCH (${settings.prefetch}) must not exceed RELAY_PER_WEBHOOK_IN_FLIGHT (${settings.perWebhookInFlight}): ` +
        'deliveries queued ahead of the free slots hold their lease while they wait',
    );
  }
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  if (!levels.includes(settings.logLevel)) {
    throw new SettingsError(`RELAY_LOG_LEVEL must be one of ${levels.join(', ')}, got ${JSON.stringify(settings.logLevel)}`);
  }
  return settings;
}
