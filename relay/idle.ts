// The relay's idle connection (sql/20_wakeup.sql). Capturing transactions send a
// NOTIFY only while some relay holds "relay_idle"; this connection holds it for this
// relay while the relay waits for work, and gives it up as soon as the relay wakes.
//
// The lock lives and dies with this one connection, so it is a plain client, not a
// pool: if the connection breaks, the lock is gone, captures stop notifying, and the
// relay is woken at once to look for itself.
//
// A question on it that gets no answer within queryTimeoutMs (RELAY_DB_QUERY_TIMEOUT_MS)
// means its network path went silent: the connection is given up like a broken one.
//
// relay_idle is a re-entrant lock: it is given back exactly as often as it was taken
// (`held`), so that no unlock is refused (each refusal is a WARNING in the server log).
import pg from 'pg';
import type { Logger } from 'pino';
import { dbConnectTimeoutMs, EngineClient, isConnectionError, KEEPALIVE_AFTER_MS, ENGINE_SESSION_TIMEOUTS, sessionOptions } from './database.ts';
import { awake, capturesDone, goingIdle } from './queries.ts';

type Options = { databaseUrl: string; role: string | null; log: Logger; queryTimeoutMs: number; onLost: () => void };

export class IdleAnnouncer {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  /** how many times this connection holds relay_idle */
  private held = 0;
  private readonly options: Options;

  constructor(options: Options) {
    this.options = options;
  }

  /**
   * Announces that the relay is going idle. True: no capturing transaction that
   * skipped its NOTIFY is still open, so if one more claim finds nothing the relay
   * may wait for a NOTIFY. False: look again later (capturesDone).
   */
  async goingIdle(): Promise<boolean> {
    const client = await this.connection();
    const safe = await this.ask(client, goingIdle);
    if (this.client === client) this.held++;
    return safe;
  }

  /**
   * While announced idle: true once every capture that skipped its NOTIFY has ended.
   * Null when this connection does not hold relay_idle (it was lost meanwhile): then
   * the answer would prove nothing.
   */
  async capturesDone(): Promise<boolean | null> {
    const client = this.client;
    if (!client || this.held === 0) return null;
    const done = await this.ask(client, capturesDone);
    return this.client === client ? done : null;
  }

  /**
   * The relay is awake: captures need not notify it any more. Gives back the holds
   * taken so far, each counted off before its question is sent: a call meanwhile does
   * not give the same hold back twice, and a going_idle() answered meanwhile is not
   * given back by this call (it may be the relay's next announcement).
   */
  async awake(): Promise<void> {
    for (let holds = this.held; holds > 0; holds--) {
      const client = this.client;
      if (!client) return;
      this.held--;
      try {
        await this.ask(client, awake);
      } catch (error) {
        // not given back (a lost connection took the lock and the count with it)
        if (this.client === client) this.held++;
        throw error;
      }
    }
  }

  /** This connection holds relay_idle (taken, not given back, not lost since). */
  get holding(): boolean {
    return this.client !== null && this.held > 0;
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.held = 0;
    await client?.end().catch(() => {});
  }

  /** One question on the connection; one that breaks it, or gets no answer, gives it up. */
  private async ask<T>(client: pg.Client, question: (client: pg.Client) => Promise<T>): Promise<T> {
    try {
      return await question(client);
    } catch (error) {
      if (isConnectionError(error)) this.lose(client, error as Error);
      throw error;
    }
  }

  /** The connection is gone, and the lock with it: captures stop notifying, so look now. */
  private lose(client: pg.Client, error?: Error): void {
    if (this.client !== client) return;
    this.client = null;
    this.held = 0;
    if (error) this.options.log.warn({ err: error }, 'idle-announcement connection lost');
    void client.end().catch(() => {});
    this.options.onLost();
  }

  private connection(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.connect().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async connect(): Promise<pg.Client> {
    const { databaseUrl, role, log, queryTimeoutMs } = this.options;
    const client = new EngineClient({
      connectionString: databaseUrl,
      options: sessionOptions(role, ENGINE_SESSION_TIMEOUTS),
      application_name: 'bpd-webhooks-relay-idle',
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_AFTER_MS,
      connectionTimeoutMillis: dbConnectTimeoutMs(queryTimeoutMs),
      query_timeout: queryTimeoutMs,
    });
    client.on('error', (error) => this.lose(client, error));
    client.on('end', () => this.lose(client));
    // what the server says on this connection it also writes to its log: say it here too
    client.on('notice', (notice) => log.warn({ severity: notice.severity, notice: notice.message }, 'database notice on the idle connection'));
    await client.connect();
    this.client = client;
    return client;
  }
}
