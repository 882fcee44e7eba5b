// Listener: LISTEN on the engine's channel (CHANNEL) on a connection of its own,
// reconnected here for ever, with backoff, until closed. pg-listen is told never to
// retry by itself: its retry loop cannot be stopped once begun, so a relay stopped
// during an outage would keep trying (and its process would not exit).
// A notification is only a hint to look now; so is every (re)connection, because
// whatever was written while the connection was down sent its NOTIFY to nobody.
import pgListen, { type Subscriber } from 'pg-listen';
import type { Logger } from 'pino';
import { backoffMs } from './backoff.ts';
import { CHANNEL } from './engine-names.ts';

/** Reconnecting: at most this long between tries. */
const RECONNECT_CAP_MS = 2_000;

// pg-listen is CommonJS with its function on `exports.default`
const createPostgresSubscriber = pgListen.default;

export interface Listener {
  close(): Promise<void>;
}

export function startListener(options: { databaseUrl: string; log: Logger; onWake: () => void }): Listener {
  const { databaseUrl, log, onWake } = options;
  let closed = false;
  let subscriber: Subscriber | null = null;
  let retry: NodeJS.Timeout | undefined;

  const connect = async (attempt: number): Promise<void> => {
    const current = createPostgresSubscriber(
      { connectionString: databaseUrl },
      {
        // a lost connection is reported at once (as "error"); connect() below tries again
        retryLimit: 1,
        paranoidChecking: 10_000,
        // payloads are not read (a notification is a hint), so none can fail to parse:
        // every "error" means the connection is lost
        parse: (payload: string) => payload,
      },
    );
    subscriber = current;
    current.events.on('notification', () => onWake());
    current.events.on('connected', () => {
      // a reconnect that finished after close() brings a fresh connection: end it too
      if (closed) return void current.close().catch(() => {});
      log.debug('listening for notifications');
      onWake();
    });
    current.events.on('error', (error) => {
      if (closed || subscriber !== current) return;
      log.warn({ err: error }, 'notification connection lost; reconnecting');
      void current.close().catch(() => {});
      retry = setTimeout(() => void connect(attempt + 1), backoffMs(attempt, { capMs: RECONNECT_CAP_MS }));
    });
    try {
      await current.connect();
      await current.listenTo(CHANNEL);
      if (attempt > 0) log.info('notification connection established');
      onWake(); // anything written before LISTEN took effect
    } catch (error) {
      await current.close().catch(() => {});
      if (closed) return;
      if (attempt === 0) log.warn({ err: error }, 'cannot listen for notifications yet; polling meanwhile and retrying');
      retry = setTimeout(() => void connect(attempt + 1), backoffMs(attempt, { capMs: RECONNECT_CAP_MS }));
    }
  };
  void connect(0);

  return {
    async close() {
      closed = true;
      clearTimeout(retry);
      await subscriber?.close().catch(() => {});
    },
  };
}
