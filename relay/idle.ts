// The relay's idle connection (sql/20_wakeup.sql). Capturing transactions send a
// NOTIFY only while some relay holds "relay_idle"; this connection holds it for this
// relay while the relay waits for work, and gives it up as soon as the relay wakes.
//
// The lock lives and dies with this one connection, so it is a plain client, not a
// pool: if the connection breaks, the lock is gone, captures stop notifying, and the
// relay is woken at once to look for itself.
//
// relay_idle is a re-entrant lock: it is given back exactly as often as it was taken
// (`held`), so that no unlock is refused (each refusal is a WARNING in the server log).
import pg from 'pg';
import type { Logger } from 'pino';
import { awake, capturesDone, goingIdle } from './queries.ts';

export class IdleAnnouncer {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  /** how many times this connection holds relay_idle */
  private held = 0;
  private readonly options: { databaseUrl: string; role: string | null; log: Logger; onLost: () => void };

  constructor(options: { databaseUrl: string; role: string | null; log: Logger; onLost: () => void }) {
    this.options = options;
  }

  /**
   * Announces that the relay is going idle. True: no capturing transaction that
   * skipped its NOTIFY is still open, so if one more claim finds nothing the relay
   * may wait for a NOTIFY. False: look again later (capturesDone).
   */
  async goingIdle(): Promise<boolean> {
    const client = await this.connection();
    const safe = await goingIdle(client);
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
    const done = await capturesDone(client);
    return this.client === client ? done : null;
  }

  /** The relay is awake: captures need not notify it any more. */
  async awake(): Promise<void> {
    while (this.held > 0 && this.client) {
      await awake(this.client);
      this.held--;
    }
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.held = 0;
    await client?.end().catch(() => {});
  }

  private connection(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.connect().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async connect(): Promise<pg.Client> {
    const { databaseUrl, role, log, onLost } = this.options;
    const client = new pg.Client({
      connectionString: databaseUrl,
      options: role ? `-c role=${role}` : undefined,
      application_name: 'bpd-webhooks-relay-idle',
      keepAlive: true,
    });
    const lost = (error?: Error) => {
      if (this.client !== client) return;
      this.client = null;
      this.held = 0;
      if (error) log.warn({ err: error }, 'idle-announcement connection lost');
      onLost();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    // what the server says on this connection it also writes to its log: say it here too
    client.on('notice', (notice) => log.warn({ severity: notice.severity, notice: notice.message }, 'database notice on the idle connection'));
    await client.connect();
    this.client = client;
    return client;
  }
}
