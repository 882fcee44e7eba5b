// The peer: graphile-worker doing the same job as the relay. A trigger on the same
// crm.contacts table enqueues one job per change with graphile_worker.add_job (the job
// carries the same payload the relay's outbox row carries), and the task POSTs that
// body, signed the same way, to the same receiver with the same undici Pool.
//
// Configured as graphile-worker's performance guide recommends for throughput
// (https://worker.graphile.org/docs/performance): a local queue that fetches jobs in
// batches (localQueue.size 500), batched completion (completeJobBatchDelay 0) and
// failure (failJobBatchDelay 0), concurrentJobs equal to the relay's concurrency and
// maxPoolSize at the larger of 10 and concurrency + 2.
import { Logger, run, runMigrations, type Runner, type Task } from 'graphile-worker';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { serveChild } from '../child.ts';
import type { Contender } from '../modes.ts';
import { BENCH_SECRET, post, senderPool, webhookHeaders } from '../http.ts';

// Installed on the contender's own database before the benchmark starts (not timed).
// The payload is built exactly like the relay's capture trigger builds it.
const TRIGGER_SQL = `
create schema if not exists bench;

create or replace function bench.tg_contacts__enqueue_job()
returns trigger
language plpgsql
as $$
declare
  v_new constant jsonb := to_jsonb(new);
  v_old constant jsonb := to_jsonb(old);
begin
  perform graphile_worker.add_job('deliver', json_build_object(
    'url', $1,
    'body', jsonb_build_object(
      'type', 'contact.updated',
      'timestamp', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
      'data', jsonb_build_object(
        'contact', jsonb_build_object(
          'id', new.id, 'first_name', new.first_name, 'last_name', new.last_name,
          'email', new.email, 'phone', new.phone, 'street', new.street, 'city', new.city,
          'state', new.state, 'postal_code', new.postal_code, 'birthday', new.birthday,
          'custom', new.custom),
        'source', coalesce(nullif(current_setting('webhooks.source', true), ''), 'unknown'),
        'changed_fields', (select coalesce(jsonb_agg(n.key order by n.key), '[]')
                           from jsonb_each(v_new) n
                           where n.value is distinct from v_old -> n.key)))));
  return null;
end;
$$;

drop trigger if exists _500_bench_enqueue_job on crm.contacts;
create trigger _500_bench_enqueue_job
  after update on crm.contacts
  for each row execute function bench.tg_contacts__enqueue_job();
`;

/** Installs graphile-worker's schema and the enqueueing trigger in a database. */
export async function installGraphileWorker(databaseUrl: string, receiverUrl: string): Promise<void> {
  await runMigrations({ connectionString: databaseUrl, logger: quietLogger });
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    // the URL is a constant of the trigger: the function body is text, so inline it
    await client.query(TRIGGER_SQL.replace('$1', pg.escapeLiteral(receiverUrl)));
  } finally {
    await client.end();
  }
}

const quietLogger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning') console.error(`graphile-worker ${level}: ${message}`);
});

async function child(): Promise<void> {
  // NO_LOG_SUCCESS (set by the parent) spares the per-job "Completed task" line
  const databaseUrl = process.env.DATABASE_URL!;
  const concurrency = Number(process.env.CONCURRENCY);
  const origin = process.env.RECEIVER_ORIGIN!;
  const pool = senderPool(origin, concurrency);
  let delivered = 0;
  let failed = 0;

  const deliver: Task = async (payload, helpers) => {
    const { url, body } = payload as { url: string; body: unknown };
    const text = JSON.stringify(body);
    const id = `msg_gw_${helpers.job.id}`;
    const status = await post(pool, new URL(url).pathname, webhookHeaders(BENCH_SECRET, id, text), text);
    if (status < 200 || status >= 300) {
      failed++;
      throw new Error(`receiver answered ${status}`);
    }
    delivered++;
  };

  let runner: Runner | undefined;
  await serveChild(async () => ({
    async start() {
      runner = await run({
        noHandleSignals: true,
        logger: quietLogger,
        taskList: { deliver },
        preset: {
          worker: {
            connectionString: databaseUrl,
            concurrentJobs: concurrency,
            maxPoolSize: Math.max(10, concurrency + 2),
            localQueue: { size: 500 },
            completeJobBatchDelay: 0,
            failJobBatchDelay: 0,
          },
        },
      });
    },
    async stop() {
      await runner?.stop();
      await pool.close();
      return { delivered, failed };
    },
  }));
}

export const graphileWorkerContender: Contender = {
  name: 'graphile-worker',
  file: fileURLToPath(import.meta.url),
  env: { NO_LOG_SUCCESS: '1' },
  prepare: installGraphileWorker,
  // a job is deleted once its completion is written
  unfinishedSql: 'select count(*) from graphile_worker._private_jobs',
};

if (process.env.BENCH_CHILD === fileURLToPath(import.meta.url)) await child();
