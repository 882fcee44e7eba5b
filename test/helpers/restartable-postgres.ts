// A Postgres server of a test's own, which the test may stop and start again (a
// restart, an outage): the run's shared server is for every test file at once and is
// never stopped. Same data folder and port after a start, so the same URL reaches it;
// stopped and its folder removed at the test's end.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import pg from 'pg';
import { freePort, startEmbeddedPostgres, type RunningPostgres } from '../../tools/embedded-postgres.ts';
import { migrate } from '../../tools/migrate.ts';

export interface RestartablePostgres {
  /** the superuser's connection string to its database (the same after a restart) */
  url: string;
  /** the server stopped: its connections end, new ones are refused (nothing if stopped) */
  stop(): Promise<void>;
  /** the server started again on its data and port (nothing if running) */
  start(): Promise<void>;
  /**
   * the server crashed (an immediate shutdown: SIGQUIT to the postmaster, no checkpoint,
   * its connections cut) and started again on the same data, which Postgres recovers
   * from its WAL as after any crash. Only with `crashSafe`: at the fast settings alone
   * a commit the WAL writer had not yet written would be lost with the server.
   */
  crash(): Promise<void>;
  /** a pool to it that outlives a restart: idle connections lost with the server are replaced on next use */
  pool(max?: number): pg.Pool;
}

export async function restartablePostgres(
  t: ExecutionContext,
  options: { migrated?: boolean; preparedTransactions?: number; crashSafe?: boolean } = {},
): Promise<RestartablePostgres> {
  const dataDir = await mkdtemp(join(tmpdir(), 'bpd-restartable-'));
  const port = await freePort();
  const run = () => startEmbeddedPostgres({
    dataDir, port, persistent: true, fast: true, crashSafe: options.crashSafe, preparedTransactions: options.preparedTransactions,
  });
  let running: RunningPostgres | undefined = await run().catch(async (error: unknown) => {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  });
  const url = running.url();
  const stop = async () => {
    const server = running;
    running = undefined;
    await server?.stop();
  };
  t.teardown(async () => {
    await stop();
    await rm(dataDir, { recursive: true, force: true });
  });
  if (options.migrated) await migrate(url);
  return {
    url,
    stop,
    async start() {
      running ??= await run();
    },
    async crash() {
      if (!options.crashSafe) throw new Error('crash(): ask for restartablePostgres(t, { crashSafe: true })');
      if (!running) throw new Error('crash(): the server is not running');
      // the postmaster's pid from its own lock file, not the process started for it (as
      // root that may be a process that runs it as the user "postgres")
      const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
      process.kill(pid, 'SIGQUIT');
      for (const deadline = Date.now() + 30_000; alive(pid);) {
        if (Date.now() > deadline) throw new Error(`crash(): the postmaster ${pid} still runs 30 s after SIGQUIT`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      running = undefined;
      running = await run();
    },
    pool(max = 2) {
      const pool = new pg.Pool({ connectionString: url, max });
      pool.on('error', () => {}); // idle connections die with the server; the pool replaces them
      t.teardown(() => pool.end());
      return pool;
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
