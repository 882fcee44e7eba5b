// Listener: LISTEN on the engine's channel (CHANNEL) on a connection of its own,
// reconnected here for ever, with backoff, until closed.
// A notification is only a hint to look now; so is every (re)connection, because
// whatever was written while the connection was down sent its NOTIFY to nobody. One
// that names a changed webhook (WEBHOOK_CHANGED_NOTICE) goes to onWebhookChanged; as
// those sent while the connection was down are lost, each connection that LISTENs
// calls onListening first, for the relay to treat every webhook it holds as changed.
//
// Written on pg's Client rather than a listener library: the one we used (pg-listen)
// kept a reconnect loop running after close(), so a relay stopped during a database
// outage never let its process exit. Here every connection and every timer belongs to
// this function, and close() ends them all.
import pg from 'pg';
import type { Logger } from 'pino';
import { backoffMs } from './backoff.ts';
import { dbConnectTimeoutMs, EngineClient, KEEPALIVE_AFTER_MS, ENGINE_SESSION_TIMEOUTS } from './database.ts';
import { CHANNEL, WEBHOOK_CHANGED_NOTICE } from './engine-names.ts';

/** Reconnecting: at most this long between tries. */
const RECONNECT_CAP_MS = 2_000;
/** How often an idle connection is asked whether it still lives (a connection can die
 * without a word, e.g. when a network path drops it), and how long its answer may
 * take: a question that is never answered is what such a death looks like (TCP
 * keepalive would notice only after hours). */
const CHECK_EVERY_MS = 10_000;

export interface Listener {
  /** the first connection's try is over: LISTENing, or failed (then polling meanwhile), or closed */
  ready: Promise<void>;
  close(): Promise<void>;
}

export function startListener(options: {
  databaseUrl: string;
  log: Logger;
  onWake: () => void;
  /** a webhook changed (sql/20_wakeup.sql): its id */
  onWebhookChanged?: (webhookId: string) => void;
  /** a connection LISTENs, the first or a new one: a webhook_changed notice may have been missed */
  onListening?: () => void;
  checkEveryMs?: number;
}): Listener {
  const { databaseUrl, log, onWake } = options;
  const onNotification = (payload: string | undefined) => {
    if (payload?.startsWith(WEBHOOK_CHANGED_NOTICE)) options.onWebhookChanged?.(payload.slice(WEBHOOK_CHANGED_NOTICE.length));
    else onWake();
  };
  const checkEveryMs = options.checkEveryMs ?? CHECK_EVERY_MS;
  let closed = false;
  let client: pg.Client | null = null;
  let retry: NodeJS.Timeout | undefined;
  let check: NodeJS.Timeout | undefined;
  // failed tries since the last connection that worked
  let failures = 0;
  let tried!: () => void;
  const ready = new Promise<void>((resolve) => (tried = resolve));

  const connect = async (): Promise<void> => {
    // (query_timeout: the check's answer, and LISTEN's, must come within a check period)
    const current = new EngineClient({
      connectionString: databaseUrl,
      application_name: 'bpd-webhooks-relay-listener',
      options: ENGINE_SESSION_TIMEOUTS.join(' '),
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_AFTER_MS,
      connectionTimeoutMillis: dbConnectTimeoutMs(checkEveryMs),
      query_timeout: checkEveryMs,
    });
    client = current;
    let lost = false;
    let listening = false;
    const onLost = (error?: Error) => {
      if (lost || closed) return;
      lost = true;
      clearInterval(check);
      current.removeAllListeners('notification');
      void current.end().catch(() => {});
      if (listening) log.warn({ err: error }, 'notification connection lost; reconnecting');
      else if (failures === 0) log.warn({ err: error }, 'cannot listen for notifications yet; polling meanwhile and retrying');
      failures += 1;
      tried();
      retry = setTimeout(() => void connect(), backoffMs(failures - 1, { capMs: RECONNECT_CAP_MS }));
    };
    current.on('notification', (message) => onNotification(message.payload));
    current.on('error', onLost);
    current.on('end', () => onLost());
    try {
      await current.connect();
      await current.query(`LISTEN ${pg.escapeIdentifier(CHANNEL)}`);
    } catch (error) {
      onLost(error as Error);
      return;
    }
    if (closed || lost) return void current.end().catch(() => {});
    listening = true;
    options.onListening?.();
    if (failures > 0) log.info('notification connection established');
    else log.debug('listening for notifications');
    failures = 0;
    check = setInterval(() => {
      current.query('select 1').catch((error: Error) => onLost(error));
    }, checkEveryMs);
    check.unref();
    onWake(); // anything written before LISTEN took effect
    tried();
  };
  void connect();

  return {
    ready,
    async close() {
      closed = true;
      tried();
      clearTimeout(retry);
      clearInterval(check);
      await client?.end().catch(() => {});
    },
  };
}
