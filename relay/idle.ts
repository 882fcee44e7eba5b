// The relay's side of sql/20_wakeup.sql. Capturing transactions send a NOTIFY only
// while some relay holds "relay_idle"; this connection holds it for this relay while
// the relay waits for work, and gives it up as soon as the relay wakes.
//
// The lock lives and dies with this one connection, so it is a plain client, not a
// pool: if the connection breaks, the lock is gone, captures stop notifying, and the
// relay is woken at once to look for itself.
import pg from 'pg';
import type { Logger } from 'pino';
import { awake, goingIdle } from './queries.ts';

export class IdleAnnouncer {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  private announced = false;
  private readonly options: { databaseUrl: string; role: string | null; log: Logger; onLost: () => void };

  constructor(options: { databaseUrl: string; role: string | null; log: Logger; onLost: () => void }) {
    this.options = options;
  }

  /**
   * Announces that the relay is going idle. True: no capturing transaction that
   * skipped its NOTIFY is still open, so if one more claim finds nothing the relay
   * may wait for a NOTIFY. False: look again in a moment.
   */
  async goingIdle(): Promise<boolean> {
    const client = await this.connection();
    this.announced = true;
    return goingIdle(client);
  }

  /** The relay is awake: captures need not notify it any more. */
  async awake(): Promise<void> {
    if (!this.announced || !this.client) return;
    this.announced = false;
    await awake(this.client);
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.announced = false;
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
      this.announced = false;
      if (error) log.warn({ err: error }, 'idle-announcement connection lost');
      onLost();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    await client.connect();
    this.client = client;
    return client;
  }
}
