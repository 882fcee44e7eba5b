// The outbox's upkeep (docs/outbox.md): the partitions of the days ahead, the report's
// day counts rolled up, and the days past the retention dropped whole. `npm run
// maintain` runs it once; `npm start` every hour. It needs the tables' owner (migrate's
// DATABASE_URL): detaching a partition is the owner's right.
//
// Dropping never makes claims or settles wait: DETACH PARTITION … CONCURRENTLY takes
// no lock that they take, and cannot run inside a transaction, which is why this is a
// client and not a function. Each statement waits at most LOCK_TIMEOUT for a lock and
// is tried again later; a detach interrupted half way is finished (FINALIZE) by the
// next run.
import pg from 'pg';

const LOCK_TIMEOUT = '1s';
const TRIES = 5;

export interface MaintainResult {
  partitionsMade: number;
  daysRolledUp: number;
  daysDropped: string[];
}

export async function maintain(databaseUrl: string, log: (line: string) => void = () => {}): Promise<MaintainResult> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`set lock_timeout = '${LOCK_TIMEOUT}'`);
    const { rows: [made] } = await client.query('select webhooks.create_partitions() as n');
    const { rows: [counted] } = await client.query('select webhooks.roll_up_report_counts() as n');
    const { rows: days } = await client.query<{ day: string; parents: string[]; partitions: string[] }>(
      `select to_char(day, 'YYYY-MM-DD') as day, parents, partitions from webhooks.expired_days()`,
    );
    const dropped: string[] = [];
    for (const { day, parents, partitions } of days) {
      for (const [i, partition] of partitions.entries()) {
        await dropPartition(client, parents[i], partition);
      }
      await client.query('select webhooks.forget_day($1::date)', [day]);
      log(`dropped the history of ${day}`);
      dropped.push(day);
    }
    return { partitionsMade: made.n, daysRolledUp: counted.n, daysDropped: dropped };
  } finally {
    await client.end();
  }
}

async function dropPartition(client: pg.Client, parent: string, partition: string): Promise<void> {
  // names come from the catalog (webhooks.expired_days), quoted all the same
  const parentName = `webhooks.${pg.escapeIdentifier(parent)}`;
  const partitionName = `webhooks_partitions.${pg.escapeIdentifier(partition)}`;
  for (let attempt = 1; ; attempt++) {
    try {
      const { rows: [state] } = await client.query(
        `select i.inhdetachpending as pending
         from pg_inherits i
         where i.inhrelid = to_regclass($1) and i.inhparent = to_regclass($2)`,
        [partitionName, parentName],
      );
      if (state?.pending) {
        await client.query(`alter table ${parentName} detach partition ${partitionName} finalize`);
      } else if (state) {
        await client.query(`alter table ${parentName} detach partition ${partitionName} concurrently`);
      }
      await client.query(`drop table if exists ${partitionName}`);
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== '55P03' || attempt >= TRIES) throw error; // lock_not_available
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}

// `npm run maintain`
if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('DATABASE_URL is not set: point it at the database as its owner (as for npm run migrate)');
    process.exit(2);
  }
  const result = await maintain(url, (line) => console.log(line));
  console.log(
    `partitions made: ${result.partitionsMade}; day counts rolled up: ${result.daysRolledUp}; ` +
      `days dropped: ${result.daysDropped.length ? result.daysDropped.join(', ') : 'none'}`,
  );
}
