// The settler (relay/settle.ts) writes results in batches: one that is short of the
// batch size waits a while (SETTLE_GATHER_MS) for more, since every settle costs the
// database about as much whatever it carries; a whole batch goes at once, and drain()
// cuts the wait short. Against a real database: the deliveries are claimed by SQL,
// their results written by the settler as the relay writes them. The waits here are
// a minute long, so that only what these rules say can end them.
import test from 'ava';
import pino from 'pino';
import type pg from 'pg';
import type { AttemptResult } from '../../relay/deliver.ts';
import { Holdings } from '../../relay/holdings.ts';
import { claimDeliveries } from '../../relay/queries.ts';
import { Settler } from '../../relay/settle.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { waitForRows } from '../helpers/relay.ts';

const RELAY = 'relay-settle';
const A_MINUTE = 60_000;

/** A database with `count` deliveries leased to RELAY, their results as 204s, and a settler. */
async function setup(t: { teardown: (fn: () => Promise<void>) => void }, count: number, batchSize: number,
                     log: pino.Logger = pino({ level: 'silent' })) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  for (let i = 0; i < count; i++) await f.contact(company.id);
  const { jobs } = await claimDeliveries(database.pool, {
    relayId: RELAY, limit: count, leaseMs: A_MINUTE, perWebhookCap: count, capByWebhook: new Map(), heldByWebhook: new Map(),
    only: null, slots: 256, heldBytesByWebhook: new Map(), companyByWebhook: new Map(), byteBudget: null,
  });
  const results: AttemptResult[] = jobs.map((job) => ({
    job, attemptedAt: new Date(), durationMs: 3,
    outcome: { kind: 'response', status: 204, bodyExcerpt: '', retryAfterSeconds: null, note: null },
  }));
  const settler = new Settler({ db: database.pool, relayId: RELAY, log, batchSize, gatherMs: A_MINUTE });
  t.teardown(async () => settler.stop());
  const succeeded = async () => (await database.pool.query(
    `select count(*)::int as n from webhooks.deliveries where state = 'succeeded'`)).rows[0].n as number;
  return { database, results, settler, succeeded };
}

test('results that come apart wait for each other, and drain writes them at once, in one settle', async (t) => {
  const { results, settler, succeeded } = await setup(t, 5, 100);
  t.is(results.length, 5);
  for (const result of results) {
    settler.add(result);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  t.is(await succeeded(), 0, 'a short batch waits');
  t.true(await settler.drain(5_000), 'drain does not wait out the gathering');
  t.is(await succeeded(), 5);
  t.deepEqual(settler.stats.settles, 1);
  t.is(settler.waiting, 0);
});

test('a whole batch is written without waiting', async (t) => {
  const { database, results, settler } = await setup(t, 3, 3);
  for (const result of results) settler.add(result);
  await waitForRows(database.pool, `select count(*)::int as n from webhooks.deliveries where state = 'succeeded'`, [],
    (rows) => rows[0].n === 3);
  // the commit is seen before the settler has read its answer (CI met the count at 0):
  // drain waits for that one settle to end, and writes nothing more
  t.true(await settler.drain(5_000));
  t.is(settler.stats.settles, 1);
});

test('a result whose lease ran out is warned of when the log level is warn (settled attempts not logged)', async (t) => {
  const lines: Array<{ level: number; msg: string; delivery?: string }> = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const { database, results, settler, succeeded } = await setup(t, 2, 100, log);
  // the first delivery's lease runs out and another relay takes it
  await database.pool.query(
    `update webhooks.deliveries set locked_by = 'relay-other', locked_until = now() + interval '1 minute' where id = $1`,
    [results[0].job.deliveryId]);
  for (const result of results) settler.add(result);
  t.true(await settler.drain(5_000));
  t.is(await succeeded(), 1);
  t.deepEqual(lines.map((l) => [l.level, l.delivery, l.msg]), [
    [40, results[0].job.deliveryId, 'not settled: its lease had run out (another relay owns the delivery, and the attempt is recorded), or a transaction outside the engine holds it (its lease will run out)'],
  ]);
});

test('at level info each attempt settled is a line with its fields, and one whose lease ran out a warning with them', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info', base: null, timestamp: false }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const { database, results, settler } = await setup(t, 3, 100, log);
  await database.pool.query(
    `update webhooks.deliveries set locked_by = 'relay-other', locked_until = now() + interval '1 minute' where id = $1`,
    [results[0].job.deliveryId]);
  results[2]!.outcome = { kind: 'response', status: 503, bodyExcerpt: 'busy', retryAfterSeconds: null, note: null };
  for (const result of results) settler.add(result);
  t.true(await settler.drain(5_000));
  const fields = (i: number) => {
    const { job } = results[i]!;
    return { delivery: job.deliveryId, message: job.messageId, webhook: job.webhookId, attempt: 1, error: null, durationMs: 3 };
  };
  const retry = lines.find((line) => line.delivery === results[2]!.job.deliveryId)!;
  t.deepEqual(lines, [
    { level: 40, ...fields(0), status: 204, state: 'lease lost', msg: 'not settled: its lease had run out (another relay owns the delivery, and the attempt is recorded), or a transaction outside the engine holds it (its lease will run out)' },
    { level: 30, ...fields(1), status: 204, state: 'succeeded', msg: 'settled' },
    { level: 30, ...fields(2), status: 503, state: 'pending', nextAttemptAt: retry.nextAttemptAt, msg: 'settled' },
  ]);
  t.true(Date.parse(String(retry.nextAttemptAt)) > Date.now(), 'a retry says when');
});

// A success tells the settle the URL it went to only when its webhook changed while
// the relay held it (a request to the old URL counts towards nothing of the new one's
// breaker: test/fleet/breaker.test.ts); the successes of the others send no URLs.
test('a success carries its URL only if its webhook changed while it was held', async (t) => {
  const { database, results } = await setup(t, 3, 100);
  const urls: unknown[] = [];
  const db = {
    query: (config: pg.QueryConfig) => {
      urls.push(config.values?.[9]);
      return database.pool.query(config);
    },
  } as Pick<pg.Pool, 'query'>;
  const settler = new Settler({ db, relayId: RELAY, log: pino({ level: 'silent' }), batchSize: 100, gatherMs: A_MINUTE });
  t.teardown(async () => settler.stop());
  const holdings = new Holdings();
  holdings.claimed(results.map((result) => result.job));

  settler.add(results[0]!);
  t.true(await settler.drain(5_000));
  holdings.webhookChanged(results[1]!.job.webhookId);
  settler.add(results[1]!);
  settler.add(results[2]!);
  t.true(await settler.drain(5_000));

  const url = results[0]!.job.url;
  t.deepEqual(urls, [null, [url, url]]);
  const { rows } = await database.pool.query(`select state, count(*)::int as n from webhooks.deliveries group by state`);
  t.deepEqual(rows, [{ state: 'succeeded', n: 3 }]);
});
