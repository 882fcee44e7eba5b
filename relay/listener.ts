// Listener: LISTEN on the engine's channel (CHANNEL) on a connection of its own (pg-listen reconnects it).
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
        // reconnect for ever, backing off to one try every 2 s
        retryLimit: Infinity,
        retryTimeout: 0,
        retryInterval: (n) => backoffMs(n, { capMs: RECONNECT_CAP_MS }),
        paranoidChecking: 10_000,
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
    current.events.on('reconnect', (n) => {
      if (n === 1) log.warn('notification connection lost; reconnecting');
    });
    current.events.on('error', (error) => log.error({ err: error }, 'notification connection failed'));
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
