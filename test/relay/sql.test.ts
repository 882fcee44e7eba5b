// The delivery state machine of sql/30_delivery.sql, driven directly in SQL (no
// HTTP): the claim's caps, the settle guard, the rescue, the retry schedule, the
// relay role's privileges. Each test has a database of its own: a claim takes any
// due row, so tests must not share an outbox.
import test from 'ava';
import pg from 'pg';
import { createTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';

async function setup(t: { teardown: (fn: () => Promise<void>) => void }, deliveries = 1, webhookOptions: { maxAttempts?: number } = {}) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const pool = database.pool;
  const f = factories(pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], ...webhookOptions });
  for (let i = 0; i < deliveries; i++) await f.contact(company.id);
  return { database, pool, f, company, webhook };
}

const claim = (
  pool: pg.Pool, relay: string, limit: number, perWebhook: number, busy: Record<string, number> = {}, only: string[] | null = null,
  options: { slots?: number; caps?: Record<string, number> } = {},
) =>
  pool
    .query(
      `select * from webhooks_relay.claim_deliveries($1, $2, interval '1 minute', $3, $4::bigint[], $5::integer[], $6::bigint[], $7, $8::integer[])`,
      [relay, limit, perWebhook, Object.keys(busy), Object.values(busy), only, options.slots ?? null,
       Object.keys(busy).map((id) => options.caps?.[id] ?? null)],
    )
    .then((r) => r.rows);

const settle = (pool: pg.Pool, relay: string,
  results: Array<{ id: string; attempt: number; status?: number | null; error?: string | null; retryAfter?: number | null; url?: string | null }>) =>
  pool
    .query(
      `select * from webhooks_relay.settle_deliveries($1, $2::bigint[], $3::integer[], $4::timestamptz[], $5::integer[],
                                                        $6::integer[], $7::text[], $8::text[], $9::integer[], $10::text[])`,
      [
        relay,
        results.map((r) => r.id),
        results.map((r) => r.attempt),
        results.map(() => new Date()),
        results.map(() => 5),
        results.map((r) => r.status ?? null),
        results.map((r) => r.error ?? null),
        results.map(() => null),
        results.map((r) => r.retryAfter ?? null),
        // (as the relay gives them: for failures, and for successes whose webhook changed)
        results.some((r) => r.url) ? results.map((r) => r.url ?? null) : null,
      ],
    )
    .then((r) => r.rows);

const delivery = (pool: pg.Pool, id: string) =>
  pool.query('select * from webhooks.deliveries where id = $1', [id]).then((r) => r.rows[0]);

test('the default retry schedule: 10 attempts over about 21 hours', async (t) => {
  const { pool } = await setup(t, 0);
  const { rows } = await pool.query(
    `select attempt, extract(epoch from wait_before)::int as wait_s, extract(epoch from since_first_attempt)::int as total_s
     from webhooks.retry_schedule()`,
  );
  t.deepEqual(rows.map((r) => r.wait_s), [0, 10, 30, 90, 270, 810, 2430, 7290, 21870, 43200]);
  t.is(rows.at(-1).total_s, 76_000);

  // a webhook's own max_attempts, and the database-wide setting
  t.is((await pool.query('select * from webhooks.retry_schedule(3)')).rowCount, 3);
  const client = await pool.connect();
  try {
    await client.query(`set webhooks.max_attempts = 8`);
    t.is((await client.query('select * from webhooks.retry_schedule()')).rowCount, 8);
  } finally {
    await client.query('reset webhooks.max_attempts');
    client.release();
  }
});

test('retry waits: ±25% jitter around the schedule; Retry-After honoured up to 6 hours', async (t) => {
  const { pool } = await setup(t, 0);
  const { rows } = await pool.query(
    `select n, extract(epoch from webhooks_private.nominal_retry_delay(n))::float8 as nominal,
            extract(epoch from webhooks_private.retry_wait(n, null))::float8 as wait
     from generate_series(1, 12) n, generate_series(1, 50)`,
  );
  t.true(rows.every((r) => r.wait >= r.nominal * 0.75 - 0.001 && r.wait <= r.nominal * 1.25 + 0.001));
  t.true(new Set(rows.filter((r) => r.n === 1).map((r) => r.wait)).size > 1, 'jittered');
  const { rows: [asked] } = await pool.query(
    `select extract(epoch from webhooks_private.retry_wait(1, 3600))::int as polite,
            extract(epoch from webhooks_private.retry_wait(1, 100000000))::int as greedy,
            extract(epoch from webhooks_private.retry_wait(9, 1))::int >= 32400 as never_shorter`,
  );
  t.deepEqual(asked, { polite: 3600, greedy: 6 * 3600, never_shorter: true });
});

test('claim: a batch, capped per webhook, minus what the relay already has in flight', async (t) => {
  const { pool, webhook } = await setup(t, 5);
  const first = await claim(pool, 'relay-a', 10, 2);
  t.is(first.length, 2);
  const { rows: [stored] } = await pool.query('select payload::text as body, message_id from webhooks.deliveries where id = $1', [first[0].delivery_id]);
  t.like(first[0], { webhook_id: webhook.id, attempt: 1, body: stored.body, message_id: stored.message_id, secret: webhook.secret, previous_secrets: [] });

  t.is((await claim(pool, 'relay-a', 10, 2, { [webhook.id]: 2 })).length, 0, 'the webhook is at its cap for this relay');
  t.is((await claim(pool, 'relay-a', 10, 2, { [webhook.id]: 1 })).length, 1);
  t.is((await claim(pool, 'relay-b', 1, 2)).length, 1, 'the batch size holds too');

  const { rows } = await pool.query(
    `select state, locked_by, attempts, locked_until > now() as leased from webhooks.deliveries where webhook_id = $1 order by id`,
    [webhook.id],
  );
  t.deepEqual(rows.map((r) => r.locked_by), ['relay-a', 'relay-a', 'relay-a', 'relay-b', null]);
  t.true(rows.slice(0, 4).every((r) => r.state === 'in_flight' && r.attempts === 1 && r.leased));
  t.like(rows[4], { state: 'pending', attempts: 0 });
});

test('claim: a discovery cut off at the limit says more may be due; a refill reads only the webhooks named', async (t) => {
  const { pool, f, company, webhook: first } = await setup(t, 0);
  const second = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  for (let i = 0; i < 4; i++) await f.contact(company.id); // 4 deliveries to each webhook

  const discovered = await claim(pool, 'relay-a', 3, 10);
  t.is(discovered.length, 3);
  t.true(discovered.every((r) => r.more_due));
  const rest = await claim(pool, 'relay-a', 10, 10);
  t.is(rest.length, 5);
  t.true(rest.every((r) => !r.more_due));

  await pool.query(`update webhooks.deliveries set state = 'pending', locked_by = null, locked_until = null`);
  const refill = await claim(pool, 'relay-b', 10, 3, { [first.id]: 1 }, [first.id]);
  t.deepEqual(refill.map((r) => r.webhook_id), [first.id, first.id], "only the named webhook, up to its free slots");
  t.true(refill.every((r) => !r.more_due));
  t.is((await claim(pool, 'relay-b', 10, 3, { [first.id]: 3 }, [first.id])).length, 0);
  t.is((await claim(pool, 'relay-b', 10, 3, {}, [second.id])).length, 3);
});

test('claim: each delivery says whether its webhook took all the claim allowed it, whatever set that', async (t) => {
  const { pool, f, company, webhook: first } = await setup(t, 0);
  const second = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  for (let i = 0; i < 6; i++) await f.contact(company.id); // 6 deliveries to each webhook
  const filled = (rows: Array<{ webhook_id: string; webhook_filled: boolean }>) =>
    Object.fromEntries([...new Set(rows.map((r) => r.webhook_id))].map((id) => [id, rows.filter((r) => r.webhook_id === id).map((r) => r.webhook_filled)]));
  const release = () => pool.query(`update webhooks.deliveries set state = 'pending', locked_by = null, locked_until = null`);

  t.deepEqual(filled(await claim(pool, 'relay-a', 100, 4)), { [first.id]: [true, true, true, true], [second.id]: [true, true, true, true] }, 'its cap');
  await release();
  t.deepEqual(filled(await claim(pool, 'relay-a', 100, 10)), { [first.id]: Array(6).fill(false), [second.id]: Array(6).fill(false) }, 'all it had due');
  await release();
  t.deepEqual(filled(await claim(pool, 'relay-a', 4, 10)), { [first.id]: [true, true], [second.id]: [true, true] }, 'the batch');
  await release();
  // 16 slots: the company may hold 14 (an eighth kept free), 11 held already (the
  // second webhook, past its cap): 3 more
  t.deepEqual(filled(await claim(pool, 'relay-a', 100, 10, { [first.id]: 0, [second.id]: 11 }, null, { slots: 16 })), { [first.id]: [true, true, true] },
    'its company share');
});

test('claim: a webhook the relay holds may come with a cap of its own in place of the per-webhook cap', async (t) => {
  const { pool, webhook } = await setup(t, 12);
  const got = await claim(pool, 'relay-a', 100, 2, { [webhook.id]: 3 }, [webhook.id], { caps: { [webhook.id]: 10 } });
  t.is(got.length, 7, 'its own cap of 10, less the 3 it holds');
  t.true(got.every((r) => r.webhook_filled));
  t.is((await claim(pool, 'relay-a', 100, 2, { [webhook.id]: 1 })).length, 1, 'without: the per-webhook cap of 2');
});

test('claim: a discovery looks past a queue head that belongs to webhooks at their cap', async (t) => {
  const { pool, f, company, webhook: busy } = await setup(t, 10); // 10 older rows for one webhook
  const other = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  for (let i = 0; i < 2; i++) await f.contact(company.id); // then 2 rows each

  // limit 2: the head read is 8 rows, all of the first webhook, which is at its cap
  const found = await claim(pool, 'relay-a', 2, 3, { [busy.id]: 3 });
  t.deepEqual(found.map((r) => r.webhook_id), [other.id, other.id]);
  // with free slots, the oldest rows come first, no more than the free slots
  const oldest = await claim(pool, 'relay-a', 10, 3, { [busy.id]: 2 });
  t.deepEqual(oldest.map((r) => r.webhook_id), [busy.id]);
  const { rows } = await pool.query(`select count(*)::int as n from webhooks.deliveries where state = 'in_flight'`);
  t.is(rows[0].n, 3);
});

test('claim: not before next_attempt_at', async (t) => {
  const { pool, webhook } = await setup(t, 1);
  await pool.query(`update webhooks.deliveries set next_attempt_at = now() + interval '1 minute' where webhook_id = $1`, [webhook.id]);
  t.is((await claim(pool, 'relay-a', 10, 10)).length, 0);
  await pool.query(`update webhooks.deliveries set next_attempt_at = now() where webhook_id = $1`, [webhook.id]);
  t.is((await claim(pool, 'relay-a', 10, 10)).length, 1);
});

test('settle: 2xx succeeds, a failure is rescheduled, the last failure fails', async (t) => {
  const { pool } = await setup(t, 3, { maxAttempts: 2 });
  const [a, b, c] = await claim(pool, 'relay-a', 10, 10);
  const settled = await settle(pool, 'relay-a', [
    { id: a.delivery_id, attempt: 1, status: 204 },
    { id: b.delivery_id, attempt: 1, status: 503 },
    { id: c.delivery_id, attempt: 1, error: 'timeout: no complete response' },
  ]);
  t.deepEqual(settled.map((s) => s.state).sort(), ['pending', 'pending', 'succeeded']);
  t.like(await delivery(pool, a.delivery_id), { state: 'succeeded', last_status_code: 204, locked_by: null });
  const retried = await delivery(pool, b.delivery_id);
  t.like(retried, { state: 'pending', last_status_code: 503, last_error: 'HTTP 503', locked_by: null, completed_at: null });
  t.true(retried.next_attempt_at > retried.last_attempt_at);
  t.like(await delivery(pool, c.delivery_id), { state: 'pending', last_status_code: null, last_error: 'timeout: no complete response' });

  await pool.query(`update webhooks.deliveries set next_attempt_at = now() where id = any ($1::bigint[])`, [[b.delivery_id, c.delivery_id]]);
  const again = await claim(pool, 'relay-a', 10, 10);
  t.deepEqual(again.map((r) => r.attempt), [2, 2]);
  await settle(pool, 'relay-a', again.map((r) => ({ id: r.delivery_id, attempt: 2, status: 500 })));
  t.like(await delivery(pool, b.delivery_id), { state: 'failed', attempts: 2, last_error: 'HTTP 500' });
  const { rows } = await pool.query(`select count(*)::int as n from webhooks.delivery_attempts where delivery_id = any ($1::bigint[])`, [[a.delivery_id, b.delivery_id, c.delivery_id]]);
  t.is(rows[0].n, 5);
});

test('settle: a success writes its attempt and no result row; the view, the counts and a roll-up tell it from that attempt', async (t) => {
  const { pool, company, webhook } = await setup(t, 2);
  const [a, b] = await claim(pool, 'relay-a', 10, 10);
  await settle(pool, 'relay-a', [{ id: a.delivery_id, attempt: 1, status: 204 }, { id: b.delivery_id, attempt: 1, status: 410 }]);
  const { rows: results } = await pool.query(
    'select delivery_id::text as id, state from webhooks.delivery_results order by delivery_id');
  t.deepEqual(results, [{ id: b.delivery_id, state: 'failed' }]);
  const { rows: [attempt] } = await pool.query('select * from webhooks.delivery_attempts where delivery_id = $1', [a.delivery_id]);
  const succeeded = await delivery(pool, a.delivery_id);
  t.like(succeeded, { state: 'succeeded', attempts: 1, last_status_code: 204, last_error: null, locked_by: null });
  t.deepEqual(succeeded.last_attempt_at, attempt.attempted_at);
  t.deepEqual(succeeded.completed_at, new Date(attempt.attempted_at.getTime() + attempt.duration_ms));

  const counted = async () => (await pool.query(
    `select c.fired::int, c.succeeded::int, c.failed::int, d.pending::int
     from webhooks_private.count_deliveries($1, $2, null, null) c, webhooks.daily_counts d where d.webhook_id = $1`,
    [webhook.id, company.id])).rows[0];
  t.deepEqual(await counted(), { fired: 2, succeeded: 1, failed: 1, pending: 0 });

  // moved three days back: through the view only once the day has partitions; here in
  // the tables themselves, so that the success keeps no result row. The day is rolled
  // up with the success counted, and replaying it makes it pending again
  const moved = `update webhooks.deliveries set created_at = created_at - interval '3 days' where id = $1`;
  const refused = await t.throwsAsync(pool.query(moved, [a.delivery_id]));
  t.like(refused as object, { code: '55006', hint: `make the day first: select webhooks_private.ensure_day('${
    new Date(Date.now() - 3 * 86400_000).toISOString().slice(0, 10)}')` });
  await pool.query(`select webhooks_private.ensure_day(webhooks_private.utc_day(now() - interval '3 days'))`);
  await pool.query(`update webhooks.delivery_attempts set delivery_created_at = delivery_created_at - interval '3 days'`);
  await pool.query(`update webhooks.delivery_results set created_at = created_at - interval '3 days'`);
  await pool.query(`update webhooks.delivery_history set created_at = created_at - interval '3 days'`);
  await pool.query('call webhooks.roll_up_report_counts()');
  const { rows: days } = await pool.query('select fired::int, succeeded::int, failed::int from webhooks.delivery_day_counts where webhook_id = $1', [webhook.id]);
  t.deepEqual(days, [{ fired: 2, succeeded: 1, failed: 1 }]);
  t.like(await delivery(pool, a.delivery_id), { state: 'succeeded', last_status_code: 204 });
  await pool.query(`update webhooks.deliveries set state = 'pending', completed_at = null, next_attempt_at = now() where id = $1`, [a.delivery_id]);
  t.deepEqual(await counted(), { fired: 2, succeeded: 0, failed: 1, pending: 1 });
});

test('each attempt names the URL it was sent to: a URL changed between two attempts of one delivery, a success sent to the old one, a rescue', async (t) => {
  const { pool, webhook } = await setup(t, 2);
  const first = 'https://old.example.com/hook';
  const second = 'https://new.example.com/hook?key=1';
  await pool.query('update webhooks.webhooks set url = $2 where id = $1', [webhook.id, first]);
  const [a, b] = await claim(pool, 'relay-a', 10, 10);
  t.is(a.url, first);
  // a's first attempt fails at the old URL (the relay gives a failure's URL); b is sent
  // there too, and the URL changes before b's success is settled (the relay gives it)
  await settle(pool, 'relay-a', [{ id: a.delivery_id, attempt: 1, status: 503, url: first }]);
  await pool.query('update webhooks.webhooks set url = $2 where id = $1', [webhook.id, second]);
  await settle(pool, 'relay-a', [{ id: b.delivery_id, attempt: 1, status: 204, url: first }]);
  // a's second attempt goes to the new URL and succeeds (no URL given: its webhook did
  // not change while the relay held it)
  await pool.query('update webhooks.deliveries set next_attempt_at = now() where id = $1', [a.delivery_id]);
  const [again] = await claim(pool, 'relay-a', 10, 10);
  t.like(again, { delivery_id: a.delivery_id, attempt: 2, url: second });
  t.like((await settle(pool, 'relay-a', [{ id: a.delivery_id, attempt: 2, status: 200 }]))[0], { state: 'succeeded' });
  // a third attempt, by a replay, whose lease runs out: the rescue names the URL the webhook has
  await pool.query('select webhooks.replay_delivery($1)', [a.delivery_id]);
  await claim(pool, 'relay-gone', 10, 10);
  await pool.query(`update webhooks.deliveries set locked_until = now() - interval '1 second' where id = $1`, [a.delivery_id]);
  await pool.query('select webhooks_relay.rescue_expired_leases()');

  const { rows } = await pool.query(
    `select delivery_id::text, attempt, status_code, webhooks.delivery_attempts_url(a) as url
     from webhooks.delivery_attempts a where webhook_id = $1 order by delivery_id, attempt`,
    [webhook.id]);
  t.deepEqual(rows, [
    { delivery_id: a.delivery_id, attempt: 1, status_code: 503, url: first },
    { delivery_id: a.delivery_id, attempt: 2, status_code: 200, url: second },
    { delivery_id: a.delivery_id, attempt: 3, status_code: null, url: second },
    { delivery_id: b.delivery_id, attempt: 1, status_code: 204, url: first },
  ]);
  // the DBA's question of a delivery's attempts (docs/sql.md) names each one's URL
  const { rows: asked } = await pool.query(
    `select attempt, webhooks.delivery_attempts_url(a) as url from webhooks.delivery_attempts a
     where delivery_id = $1 and delivery_created_at = $2 order by attempt`,
    [a.delivery_id, (await pool.query('select created_at::text from webhooks.deliveries where id = $1', [a.delivery_id])).rows[0].created_at]);
  t.deepEqual(asked.map((r) => r.url), [first, second, second]);
});

test('settle is idempotent: repeating one (its answer lost on the way back) changes and records nothing more', async (t) => {
  const { pool } = await setup(t, 1);
  const [claimed] = await claim(pool, 'relay-a', 10, 10);
  const attemptedAt = new Date();
  const settleOnce = () =>
    pool.query(
      `select * from webhooks_relay.settle_deliveries('relay-a', $1::bigint[], '{1}', $2::timestamptz[], '{5}', '{200}', '{null}', '{ok}', '{null}')`,
      [[claimed.delivery_id], [attemptedAt]],
    );
  t.is((await settleOnce()).rowCount, 1);
  t.is((await settleOnce()).rowCount, 0);
  const { rows } = await pool.query('select count(*)::int as n from webhooks.delivery_attempts where delivery_id = $1', [claimed.delivery_id]);
  t.is(rows[0].n, 1);
  t.like(await delivery(pool, claimed.delivery_id), { state: 'succeeded', attempts: 1 });
});

test('settle repeated after the delivery was claimed again by the same relay: the old attempt\'s result leaves the new lease alone', async (t) => {
  const { pool } = await setup(t, 1);
  const [first] = await claim(pool, 'relay-a', 10, 10);
  const attemptedAt = new Date();
  // attempt 1 answered 500; its settle commits but the answer is lost on the way back
  const settleFirst = () =>
    pool.query(
      `select * from webhooks_relay.settle_deliveries('relay-a', $1::bigint[], '{1}', $2::timestamptz[], '{5}', '{500}', '{null}', '{oops}', '{null}')`,
      [[first.delivery_id], [attemptedAt]],
    );
  t.is((await settleFirst()).rowCount, 1);
  // the database stays away longer than the retry wait: the same relay claims the
  // delivery again (attempt 2) before its repeated settle of attempt 1 gets through
  await pool.query('update webhooks.deliveries set next_attempt_at = now() where id = $1', [first.delivery_id]);
  const [second] = await claim(pool, 'relay-a', 10, 10);
  t.is(second.attempt, 2);
  t.is((await settleFirst()).rowCount, 0, 'attempt 1 settles nothing more');
  t.like(await delivery(pool, first.delivery_id), { state: 'in_flight', locked_by: 'relay-a', attempts: 2 });

  await settle(pool, 'relay-a', [{ id: second.delivery_id, attempt: 2, status: 200 }]);
  t.like(await delivery(pool, first.delivery_id), { state: 'succeeded', attempts: 2, last_status_code: 200 });
  const { rows } = await pool.query(
    'select attempt, status_code from webhooks.delivery_attempts where delivery_id = $1 order by attempt', [first.delivery_id]);
  t.deepEqual(rows, [{ attempt: 1, status_code: 500 }, { attempt: 2, status_code: 200 }]);
});

test('settle is guarded: a relay whose lease was rescued cannot overwrite the new holder', async (t) => {
  const { pool } = await setup(t, 1);
  const [claimed] = await claim(pool, 'relay-late', 10, 10);
  await pool.query(`update webhooks.deliveries set locked_until = now() - interval '1 second' where id = $1`, [claimed.delivery_id]);
  const { rows: [rescue] } = await pool.query('select webhooks_relay.rescue_expired_leases() as n');
  t.is(rescue.n, 1);
  t.like(await delivery(pool, claimed.delivery_id), { state: 'pending', locked_by: null, attempts: 1 });

  const [reclaimed] = await claim(pool, 'relay-new', 10, 10);
  t.is(reclaimed.delivery_id, claimed.delivery_id);
  t.is(reclaimed.attempt, 2);

  t.deepEqual(await settle(pool, 'relay-late', [{ id: claimed.delivery_id, attempt: 1, status: 500 }]), []);
  t.like(await delivery(pool, claimed.delivery_id), { state: 'in_flight', locked_by: 'relay-new' });

  const [done] = await settle(pool, 'relay-new', [{ id: claimed.delivery_id, attempt: 2, status: 200 }]);
  t.is(done.state, 'succeeded');
  const { rows: attempts } = await pool.query(
    'select attempt, status_code, error, relay_id from webhooks.delivery_attempts where delivery_id = $1 order by id',
    [claimed.delivery_id],
  );
  t.is(attempts.length, 3, 'every attempt is history, the late one included');
  t.like(attempts[0], { attempt: 1, status_code: null, relay_id: 'relay-late' });
  t.regex(attempts[0].error, /^lease expired: the relay did not settle this attempt/);
  t.notRegex(attempts[0].error, /relay-late/);
  // two attempts 1 (the rescue's and the late result): the late one says so, for a DBA
  // or an admin reading the history (until 2026-12-07 it read as an ordinary attempt)
  t.like(attempts[1], { attempt: 1, status_code: 500, relay_id: 'relay-late',
                        error: 'late (its lease had run out; the delivery is unchanged)' });
  t.like(attempts[2], { attempt: 2, status_code: 200, relay_id: 'relay-new', error: null });
});

// (a success is deleted as the settle finds it by its key, with the guard: sql/30_delivery.sql)
test('settle is guarded for a success too: a late 2xx from a relay whose lease was rescued and leased again ends nothing', async (t) => {
  const { pool } = await setup(t, 1);
  const [claimed] = await claim(pool, 'relay-late', 10, 10);
  await pool.query(`update webhooks.deliveries set locked_until = now() - interval '1 second' where id = $1`, [claimed.delivery_id]);
  t.is((await pool.query('select webhooks_relay.rescue_expired_leases() as n')).rows[0].n, 1);
  const [reclaimed] = await claim(pool, 'relay-new', 10, 10);
  t.is(reclaimed.attempt, 2);

  t.deepEqual(await settle(pool, 'relay-late', [{ id: claimed.delivery_id, attempt: 1, status: 204 }]), []);
  t.like(await delivery(pool, claimed.delivery_id), { state: 'in_flight', locked_by: 'relay-new', attempts: 2 });
  // nor does the new holder's 2xx of the wrong attempt
  t.deepEqual(await settle(pool, 'relay-new', [{ id: claimed.delivery_id, attempt: 1, status: 204 }]), []);
  t.like(await delivery(pool, claimed.delivery_id), { state: 'in_flight', locked_by: 'relay-new', attempts: 2 });

  const [done] = await settle(pool, 'relay-new', [{ id: claimed.delivery_id, attempt: 2, status: 204 }]);
  t.is(done.state, 'succeeded');
  const { rows: attempts } = await pool.query(
    'select attempt, status_code, error, relay_id from webhooks.delivery_attempts where delivery_id = $1 order by id', [claimed.delivery_id]);
  t.deepEqual(attempts.map((a) => [a.attempt, a.status_code, a.relay_id]),
    [[1, null, 'relay-late'], [1, 204, 'relay-late'], [1, 204, 'relay-new'], [2, 204, 'relay-new']]);
  const late = 'late (its lease had run out; the delivery is unchanged)';
  t.deepEqual(attempts.slice(1).map((a) => a.error), [late, late, null]);
});

test('settle is guarded at the row itself: a rescue that commits while the settle waits for the row wins', async (t) => {
  const { pool } = await setup(t, 1);
  const [claimed] = await claim(pool, 'relay-late', 10, 10);
  await pool.query(`update webhooks.deliveries set locked_until = now() - interval '1 second' where id = $1`, [claimed.delivery_id]);
  // the rescue holds the row, uncommitted; the settle starts from a snapshot in which
  // the row is still relay-late's, and reaches the row only once the rescue is done
  const rescuer = await pool.connect();
  const settler = await pool.connect();
  t.teardown(() => { rescuer.release(); settler.release(); });
  await rescuer.query('begin');
  t.is((await rescuer.query('select webhooks_relay.rescue_expired_leases() as n')).rows[0].n, 1);
  const { rows: [{ pid }] } = await settler.query('select pg_backend_pid() as pid');
  const settling = settle(settler as unknown as pg.Pool, 'relay-late', [{ id: claimed.delivery_id, attempt: 1, status: 200 }]);
  for (;;) {
    const { rows } = await pool.query(`select wait_event_type from pg_stat_activity where pid = $1`, [pid]);
    if (rows[0]?.wait_event_type === 'Lock') break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await rescuer.query('commit');

  t.deepEqual(await settling, [], 'the lease was lost: nothing settled');
  t.like(await delivery(pool, claimed.delivery_id), { state: 'pending', locked_by: null, attempts: 1 });
  const { rows: results } = await pool.query('select * from webhooks.delivery_results where delivery_id = $1', [claimed.delivery_id]);
  t.deepEqual(results, []);
  const { rows: attempts } = await pool.query(
    'select attempt, status_code, relay_id from webhooks.delivery_attempts where delivery_id = $1 order by id',
    [claimed.delivery_id],
  );
  t.deepEqual(attempts.map((a) => a.status_code), [null, 200], 'the rescue\'s note, then the late result, recorded once');
});

test('release: claimed but unsent rows go back to pending, uncounted; other relays\' rows and settled rows are untouched', async (t) => {
  const { pool } = await setup(t, 5, { maxAttempts: 3 });
  const mine = await claim(pool, 'relay-stopping', 3, 10);
  const theirs = await claim(pool, 'relay-other', 2, 10);
  t.is(mine.length, 3);
  t.is(theirs.length, 2);
  // one of mine was sent and settled, one failed once before (attempt 2 now)
  const [settled, retried, queued] = mine;
  await settle(pool, 'relay-stopping', [{ id: settled.delivery_id, attempt: 1, status: 200 }]);
  await settle(pool, 'relay-stopping', [{ id: retried.delivery_id, attempt: 1, status: 500 }]);
  await pool.query(`update webhooks.deliveries set next_attempt_at = now() where id = $1`, [retried.delivery_id]);
  const [again] = await claim(pool, 'relay-stopping', 1, 10, {}, null);
  t.is(again.delivery_id, retried.delivery_id);
  t.is(again.attempt, 2);
  const firstTriedAt = (await pool.query(
    'select attempted_at from webhooks.delivery_attempts where delivery_id = $1', [retried.delivery_id])).rows[0].attempted_at;

  const ids = [...mine, ...theirs].map((r) => r.delivery_id);
  const { rows: [released] } = await pool.query('select webhooks_relay.release_deliveries($1, $2::bigint[]) as n', ['relay-stopping', ids]);
  t.is(released.n, 2, 'only the rows this relay still holds in flight');
  t.like(await delivery(pool, queued.delivery_id), { state: 'pending', attempts: 0, locked_by: null, locked_until: null, last_attempt_at: null });
  const retriedRow = await delivery(pool, retried.delivery_id);
  t.like(retriedRow, { state: 'pending', attempts: 1, locked_by: null, locked_until: null, completed_at: null });
  t.deepEqual(retriedRow.last_attempt_at, firstTriedAt, 'last_attempt_at as the history says');
  t.like(await delivery(pool, settled.delivery_id), { state: 'succeeded', attempts: 1 });
  for (const row of theirs) t.like(await delivery(pool, row.delivery_id), { state: 'in_flight', attempts: 1, locked_by: 'relay-other' });
  const { rows: [none] } = await pool.query('select webhooks_relay.release_deliveries($1, $2::bigint[]) as n', ['relay-stopping', ids]);
  t.is(none.n, 0, 'releasing twice changes nothing');

  // released rows are due as before: the next claim takes them, as attempt 1 and 2 again
  const next = await claim(pool, 'relay-next', 10, 10);
  t.deepEqual(next.map((r) => [r.delivery_id, r.attempt]).sort(), [[queued.delivery_id, 1], [retried.delivery_id, 2]].sort());
});

test('a replay of a pending delivery beside a claim leasing it: the lease stands, and the replay is refused as in flight', async (t) => {
  const { pool } = await setup(t, 1);
  const { rows: [{ id }] } = await pool.query('select id from webhooks.deliveries');
  const relay = await pool.connect();
  t.teardown(async () => relay.release());
  await relay.query('begin');
  const { rows: claimed } = await relay.query(
    `select delivery_id from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10)`);
  t.is(claimed.length, 1);
  let replayed = false;
  const replay = pool.query('select webhooks.replay_delivery($1)', [id]).then(
    (result) => { replayed = true; return result; },
    (error) => { replayed = true; return error; });
  // the replay is done, or it has read the delivery as pending and waits for the claim
  const { rows: [{ pid }] } = await relay.query('select pg_backend_pid() as pid');
  await until('the replay is done or waits for the claim', async () => replayed || (await pool.query(
    `select 1 from pg_stat_activity where query like '%replay_delivery%' and $1 = any (pg_blocking_pids(pid))`,
    [pid])).rowCount! > 0);
  await relay.query('commit');
  t.like(await replay, { code: '55000', constraint: 'delivery_in_flight' });
  t.like(await delivery(pool, id), { state: 'in_flight', attempts: 1, locked_by: 'relay-a' });
});

test('release of a probe: the breaker is as it was before the probe was claimed, and the next claim takes a probe at once', async (t) => {
  const { pool, webhook } = await setup(t, 3);
  // open, its wait over, one probe gone before (the next wait would be twice the first)
  await pool.query(`update webhooks_private.lanes set failures = 5, failing_since = now() - interval '1 hour',
                      open_until = now() - interval '1 second', probes = 1 where webhook_id = $1`, [webhook.id]);
  const lane = async () => (await pool.query(
    'select probes, open_until <= now() as probe_due from webhooks_private.lanes where webhook_id = $1', [webhook.id])).rows[0];

  const probe = await claim(pool, 'relay-a', 10, 10);
  t.is(probe.length, 1, 'one probe');
  t.deepEqual(await lane(), { probes: 2, probe_due: false });
  // handed back unsent (the relay stopping): no answer, so no longer wait
  await pool.query('select webhooks_relay.release_deliveries($1, $2::bigint[])', ['relay-a', [probe[0].delivery_id]]);
  t.deepEqual(await lane(), { probes: 1, probe_due: true });
  t.is((await claim(pool, 'relay-b', 10, 10)).length, 1, 'a probe goes again at once');
});

test('an open breaker never waits past the time the webhook is to be disabled: its probe goes then, and its failure disables it on time', async (t) => {
  const { database, pool, webhook } = await setup(t, 3);
  await pool.query(`alter database ${database.name} set webhooks.auto_disable_after = '1 hour'`);
  // failing for 59 minutes, its breaker's next wait the longest (an hour)
  await pool.query(`update webhooks_private.lanes set failures = 40, failing_since = now() - interval '59 minutes',
                      open_until = now() - interval '1 second', probes = 12 where webhook_id = $1`, [webhook.id]);
  // (a connection opened after the setting, which is read as a session starts)
  const fresh = new pg.Client({ connectionString: database.url });
  await fresh.connect();
  t.teardown(() => fresh.end());
  const [probe] = (await fresh.query(
    `select * from webhooks_relay.claim_deliveries('relay-a', 10, interval '1 minute', 10)`)).rows;
  t.truthy(probe, 'the probe');
  const { rows: [lane] } = await fresh.query(
    `select extract(epoch from open_until - (failing_since + interval '1 hour')) as past_disable,
            extract(epoch from open_until - now()) as wait_s
     from webhooks_private.lanes where webhook_id = $1`, [webhook.id]);
  t.true(lane.past_disable <= 0, `the next probe ${lane.past_disable} s after the webhook is to be disabled`);
  t.true(lane.wait_s >= 29, `but no sooner than the first wait (30 s): ${lane.wait_s} s`);
});

test('rescue: a lease that runs out on the last attempt fails the delivery', async (t) => {
  const { pool } = await setup(t, 1, { maxAttempts: 1 });
  const [claimed] = await claim(pool, 'relay-gone', 10, 10);
  await pool.query(`update webhooks.deliveries set locked_until = now() - interval '1 second' where id = $1`, [claimed.delivery_id]);
  await pool.query('select webhooks_relay.rescue_expired_leases()');
  const row = await delivery(pool, claimed.delivery_id);
  t.like(row, { state: 'failed', attempts: 1, locked_by: null });
  t.regex(row.last_error, /^lease expired/);
  t.notRegex(row.last_error, /relay-gone/, 'relay ids name hosts: not for the tenant');
});

test('a disabled webhook: its due deliveries are not sent but fail with a reason', async (t) => {
  const { pool, webhook } = await setup(t, 2);
  await pool.query(`update webhooks.webhooks set enabled = false, disabled_at = now(), disabled_reason = 'paused' where id = $1`, [webhook.id]);
  t.deepEqual(await claim(pool, 'relay-a', 10, 10), []);
  const { rows } = await pool.query(`select state, attempts, last_error from webhooks.deliveries where webhook_id = $1`, [webhook.id]);
  t.deepEqual(rows, [
    { state: 'failed', attempts: 0, last_error: 'not sent: the webhook is disabled' },
    { state: 'failed', attempts: 0, last_error: 'not sent: the webhook is disabled' },
  ]);
});

test('a disabled webhook\'s backlog does not take the batch from another company: the disabled ones fail in a batch of their own beside it', async (t) => {
  const { pool, f, webhook: disabled } = await setup(t, 12);
  await pool.query(`update webhooks.webhooks set enabled = false, disabled_at = now(), disabled_reason = 'paused' where id = $1`, [disabled.id]);
  const other = await f.company();
  const healthy = await f.webhook({ companyId: other.id, actions: ['contact.created'] });
  for (let i = 0; i < 3; i++) await f.contact(other.id);
  const failedCount = async () => (await pool.query(
    `select count(*)::int as n from webhooks.deliveries where webhook_id = $1 and state = 'failed'`, [disabled.id])).rows[0].n;

  const first = await claim(pool, 'relay-a', 10, 10, {}, null, { slots: 256 });
  t.deepEqual(first.map((r) => r.webhook_id), [healthy.id, healthy.id, healthy.id]);
  t.is(await failedCount(), 10, 'a batch of them');
  t.deepEqual(await claim(pool, 'relay-a', 10, 10, {}, null, { slots: 256 }), []);
  t.is(await failedCount(), 12);
});

test('release of the unheld: what a lost claim leased goes back to pending, uncounted; what the relay holds and other relays\' rows are untouched', async (t) => {
  const { pool } = await setup(t, 5);
  const [held, lost1, lost2] = await claim(pool, 'relay-a', 3, 10);
  const theirs = await claim(pool, 'relay-b', 2, 10);
  t.is(theirs.length, 2);

  // relay-a heard of `held` only: the claim that leased the other two lost its answer
  const { rows: [released] } = await pool.query(
    'select webhooks_relay.release_unheld_leases($1, $2::bigint[]) as n', ['relay-a', [held.delivery_id]]);
  t.is(released.n, 2);
  for (const row of [lost1, lost2]) {
    t.like(await delivery(pool, row.delivery_id), { state: 'pending', attempts: 0, locked_by: null, last_attempt_at: null });
  }
  t.like(await delivery(pool, held.delivery_id), { state: 'in_flight', attempts: 1, locked_by: 'relay-a' });
  for (const row of theirs) t.like(await delivery(pool, row.delivery_id), { state: 'in_flight', locked_by: 'relay-b' });
  const { rows: [none] } = await pool.query(
    'select webhooks_relay.release_unheld_leases($1, $2::bigint[]) as n', ['relay-a', [held.delivery_id]]);
  t.is(none.n, 0, 'nothing more to release');
});

test('illegal states cannot be stored', async (t) => {
  const { pool, webhook } = await setup(t, 1);
  const error = await t.throwsAsync(
    pool.query(`update webhooks.deliveries set state = 'in_flight' where webhook_id = $1`, [webhook.id]),
  );
  t.is((error as { code?: string }).code, '23514');
  t.is((error as { constraint?: string }).constraint, 'deliveries_lease_iff_in_flight');
});

test('the relay role may claim, settle, release and rescue, and read or write nothing else', async (t) => {
  const { database, webhook } = await setup(t, 1);
  const client = new pg.Client({ connectionString: database.url, options: '-c role=bpd_webhooks_relay' });
  await client.connect();
  t.teardown(() => client.end());
  for (const sql of [
    'select * from webhooks.deliveries',
    'select * from webhooks.delivery_queue',
    'select * from webhooks.delivery_history',
    'select * from webhooks_private.webhook_secrets',
    'select * from crm.contacts',
    `update webhooks.webhooks set enabled = true`,
    'insert into webhooks.delivery_attempts (delivery_id, webhook_id, company_id, attempt, attempted_at, duration_ms, error) values (1, 1, 1, 1, now(), 0, $$x$$)',
  ]) {
    const error = await t.throwsAsync(client.query(sql), undefined, sql);
    t.is((error as { code?: string }).code, '42501', sql);
  }
  const { rows } = await client.query(`select * from webhooks_relay.claim_deliveries('relay-role', 10, interval '1 minute', 10)`);
  t.is(rows.length, 1);
  t.is(rows[0].webhook_id, webhook.id);
  const { rows: [released] } = await client.query(`select webhooks_relay.release_deliveries('relay-role', $1::bigint[]) as n`, [[rows[0].delivery_id]]);
  t.is(released.n, 1);
  await client.query('select webhooks_relay.rescue_expired_leases()');
  const error = await t.throwsAsync(client.query('select webhooks_private.new_secret()'));
  t.is((error as { code?: string }).code, '42501');
});
