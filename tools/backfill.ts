// `npm run backfill -- --webhook <id>`: sends every contact of the webhook's company
// to it (sql/35_backfill.sql, docs/backfill.md) and shows the progress until every
// snapshot is sent (a relay must be running: `npm start` or `npm run relay`).
// It drives the backfill's steps itself, beside the relays' backfillers (a step of one
// backfill never overlaps another: each batch is written once); the relay sends.
// Ctrl-C leaves the backfill running (the relays carry on); --cancel <backfill id>
// stops one. Against DATABASE_URL, else the database `npm start` runs.
import { parseArgs } from 'node:util';
import pg from 'pg';
import { ENGINE_SESSION_TIMEOUTS, EngineClient, isConnectionError } from '../relay/database.ts';
import { backfillStep } from '../relay/queries.ts';
import { startDatabaseUrl } from './database-url.ts';

const usage = 'usage: npm run backfill -- --webhook <webhook id>   |   npm run backfill -- --cancel <backfill id>';
const STEP_EVERY_MS = 250;

const { values } = parseArgs({
  options: {
    webhook: { type: 'string' },
    cancel: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help || (!values.webhook === !values.cancel)) {
  console.error(usage);
  process.exit(values.help ? 0 : 2);
}
const id = (values.webhook ?? values.cancel)!;
if (!/^[1-9][0-9]{0,18}$/.test(id)) {
  console.error(`${values.webhook ? '--webhook' : '--cancel'} must be an id (a positive integer), got ${JSON.stringify(id)}`);
  process.exit(2);
}

// One connection at a time, made again when lost (a restart, a DBA's
// pg_terminate_backend): a lone client whose connection ended while the command
// waited between steps raised an error nobody listened to, and the command died with
// a stack trace (test/tools/backfill.test.ts). Without a DBA's timeouts, as the
// relay's and maintenance's sessions (relay/database.ts).
const client = new pg.Pool({
  Client: EngineClient,
  connectionString: startDatabaseUrl(),
  application_name: 'bpd-webhooks backfill',
  options: ENGINE_SESSION_TIMEOUTS.join(' '),
  max: 1,
});
// (an idle connection lost: the next query makes another)
client.on('error', () => {});
await client.query('select 1').catch((error: Error) => {
  console.error(`cannot reach the database (${error.message}): is "npm start" running, or DATABASE_URL set?`);
  process.exit(1);
});

/** A read of the progress, tried again while the database cannot be reached (a restart, a lost connection). */
async function whileUnreachable<T>(read: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await read();
    } catch (error) {
      if (!isConnectionError(error)) throw error;
      console.error(`database not reachable (${(error as Error).message}), trying again`);
      await new Promise((resolve) => setTimeout(resolve, STEP_EVERY_MS));
    }
  }
}

interface Progress {
  id: string;
  state: 'running' | 'done' | 'cancelled' | 'failed';
  /** why it failed (a failed one only) */
  error: string | null;
  total: string | null;
  queued: string;
  /** snapshots queued and not finished yet */
  unfinished: string;
}

/** The backfill's progress, read again while the database cannot be reached (whileUnreachable). */
async function progressOf(backfillId: string): Promise<Progress> {
  const { rows } = await whileUnreachable(() => client.query(
    'select b.id, b.state, b.total, b.queued, b.error, webhooks.backfills_unfinished(b) as unfinished from webhooks.backfills b where b.id = $1',
    [backfillId]));
  return rows[0];
}

/** The engine's named refusals, said as they are. */
function explain(error: unknown): never {
  const e = error as { message?: string; constraint?: string };
  console.error(e.constraint ? `${e.message} (${e.constraint})` : String(e.message ?? error));
  process.exit(1);
}

if (values.cancel) {
  const { rows } = await client.query('select * from webhooks.cancel_backfill($1)', [id]).catch(explain);
  console.log(`backfill ${id} cancelled after ${rows[0].queued} snapshots`);
  await client.end();
  process.exit(0);
}

// Ctrl-C stops following, from before the start is said: a Ctrl-C between the two
// (before a handler, the signal's default) killed the process
let interrupted = false;
process.on('SIGINT', () => {
  interrupted = true;
});

// start one, or follow the one already running for this webhook
let backfillId: string;
try {
  backfillId = (await client.query('select webhooks.backfill($1) as id', [id])).rows[0].id;
  console.log(`backfill ${backfillId} of webhook ${id} started`);
} catch (error) {
  if ((error as { constraint?: string }).constraint !== 'backfill_running') explain(error);
  const { rows } = await client.query(`select id from webhooks.backfills where webhook_id = $1 and state = 'running'`, [id]);
  if (!rows[0]) explain(error); // it ended meanwhile
  backfillId = rows[0].id;
  console.log(`backfill ${backfillId} of webhook ${id} is already running: following it`);
}

const tty = process.stdout.isTTY === true;
let lastPrinted = -1;

/** Sent of total (sent: queued and finished, succeeded or failed), and how many are queued. */
function show(p: Progress): void {
  const total = p.total === null ? null : Number(p.total);
  const queued = Number(p.queued);
  const sent = queued - Number(p.unfinished);
  const finished = p.state !== 'running' && sent === queued;
  const fraction = finished ? 1 : total ? Math.min(sent / total, 1) : 0;
  const percent = Math.floor(fraction * 100);
  const number = (n: number) => n.toLocaleString('en-US');
  const counts = total === null
    ? `${number(sent)} sent (counting contacts…)`
    : `${number(sent)} / ${number(p.state === 'running' ? total : queued)} sent, ${number(queued)} queued`;
  if (tty) {
    const width = Math.max(10, Math.min(40, (process.stdout.columns ?? 80) - 50));
    const filled = Math.round(fraction * width);
    process.stdout.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(percent).padStart(3)}% ${counts}\x1b[K`);
  } else if (percent >= lastPrinted + 10 || (finished && percent !== lastPrinted)) {
    // not a terminal (a log, a pipe): a line every tenth
    console.log(`${percent}% ${counts}`);
    lastPrinted = percent;
  }
}

// until every snapshot is queued (stepping it) and then sent (the relay's work)
let progress = await progressOf(backfillId);
while (!interrupted && (progress.state === 'running' || Number(progress.unfinished) > 0)) {
  if (progress.state === 'running') {
    await backfillStep(client, backfillId).catch((error: Error) => {
      // a step that fails (a lock timeout, a restart) is tried again; its batch was not written
      if (tty) process.stdout.write('\n');
      console.error(`step failed, trying again: ${error.message}`);
    });
  }
  progress = await progressOf(backfillId);
  show(progress);
  if (progress.state === 'running' || Number(progress.unfinished) > 0) await new Promise((resolve) => setTimeout(resolve, STEP_EVERY_MS));
}
show(progress);
if (tty) process.stdout.write('\n');

if (interrupted) {
  console.log(`stopped following: backfill ${backfillId} goes on in the relay (npm run backfill -- --cancel ${backfillId} stops it)`);
} else if (progress.state === 'done') {
  console.log(`backfill ${backfillId} done: ${progress.queued} snapshots sent (webhooks.fire_history shows each, failed ones too)`);
} else if (progress.state === 'failed') {
  console.error(`backfill ${backfillId} failed after ${progress.queued} snapshots: ${progress.error}`);
  process.exitCode = 1;
} else {
  console.log(`backfill ${backfillId} was ${progress.state} after ${progress.queued} snapshots`);
}
await client.end();
