// An install of the one-table outbox (the migrations before 0016_outbox) migrates to the queue,
// history, results and attempts of 0006 with every delivery and attempt intact: ids,
// message ids, states, counts, leases; new ids go on after the old ones.
import { readdir } from 'node:fs/promises';
import test from 'ava';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import { migrate, migrationsDir, MIGRATIONS_SCHEMA, MIGRATIONS_TABLE } from '../../tools/migrate.ts';
import { databaseUrl } from '../helpers/db.ts';

test('deliveries and attempts of the previous schema move into the new tables unchanged, saying how many as they go', async (t) => {
  const name = `bpd_test_outbox_${process.pid}`;
  const server = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await server.connect();
  await server.query(`drop database if exists ${name} with (force)`);
  await server.query(`create database ${name}`);
  t.teardown(async () => {
    await server.query(`drop database if exists ${name} with (force)`);
    await server.end();
  });
  const client = new pg.Client({ connectionString: databaseUrl(name) });
  await client.connect();
  t.teardown(() => client.end());

  // the tables as they were before 0016 (no engine functions: rows are written by hand)
  const before = (await readdir(migrationsDir)).filter((file) => file.endsWith('.sql') && file < '0016_outbox.sql');
  await runner({
    dbClient: client, dir: migrationsDir, direction: 'up', count: before.length,
    migrationsTable: MIGRATIONS_TABLE, migrationsSchema: MIGRATIONS_SCHEMA, createMigrationsSchema: true, checkOrder: true, log: () => {},
  });
  await client.query(`insert into crm.companies (id, name) overriding system value values (1, 'One')`);
  await client.query(`insert into webhooks.webhooks (id, company_id, name, url, fields, actions)
                      overriding system value
                      values (7, 1, 'h', 'https://example.com/h', '{email}', '{contact.created}')`);
  const old = [
    // id, state, attempts, lease, completed, created days ago, last status
    [101, 'succeeded', 1, null, true, 3, 204],
    [102, 'failed', 10, null, true, 2, 500],
    [103, 'pending', 2, null, false, 1, 503],
    [104, 'in_flight', 1, 'relay-a', false, 0, null],
    [105, 'failed', 0, null, true, 0, null],
  ] as const;
  for (const [id, state, attempts, lease, completed, daysAgo, status] of old) {
    await client.query(
      `insert into webhooks.deliveries
         (id, message_id, webhook_id, company_id, action, contact_id, payload, state, attempts, next_attempt_at,
          locked_by, locked_until, last_attempt_at, last_status_code, last_error, completed_at, created_at)
       overriding system value
       values ($1::bigint, 'msg_' || $1::text, 7, 1, 'contact.created', $1::bigint + 1000, jsonb_build_object('n', $1::bigint), $2::text, $3::int,
               now() + interval '1 minute', $4::text, case when $4::text is not null then now() + interval '5 minutes' end,
               case when $3::int > 0 then now() - make_interval(days => $6::int) end, $7::int,
               case when $2::text = 'failed' then 'HTTP ' || coalesce($7::text, '?') end,
               case when $5::boolean then now() end, now() - make_interval(days => $6::int))`,
      [id, state, attempts, lease, completed, daysAgo, status],
    );
  }
  await client.query(`insert into webhooks.delivery_attempts
                        (id, delivery_id, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code, relay_id)
                      overriding system value
                      values (501, 101, 7, 1, 1, now(), 12, 204, 'relay-a'), (502, 103, 7, 1, 1, now(), 30, 503, 'relay-a'),
                             (503, 103, 7, 1, 2, now(), 31, 503, 'relay-b')`);
  const columns = `id, message_id, webhook_id, company_id, action, contact_id, payload, state, attempts,
                   locked_by, last_attempt_at, last_status_code, last_error, completed_at, created_at`;
  const { rows: deliveriesBefore } = await client.query(`select ${columns} from webhooks.deliveries order by id`);
  const { rows: attemptsBefore } = await client.query(
    `select id, delivery_id, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code, relay_id
     from webhooks.delivery_attempts order by id`);

  const said: string[] = [];
  await migrate(databaseUrl(name), (line) => said.push(line));
  // the terminal hears which migration runs and how much it moves, before it is done
  const outbox = said.indexOf('migrating 0016_outbox…');
  t.true(outbox >= 0, said.join('\n'));
  t.deepEqual(said.slice(outbox, outbox + 6), [
    'migrating 0016_outbox…',
    '  0016_outbox: moving 5 deliveries and 3 attempts into the partitioned outbox',
    '  0016_outbox: 1 of 4: history copied',
    '  0016_outbox: 2 of 4: results copied',
    '  0016_outbox: 3 of 4: queue copied',
    '  0016_outbox: 4 of 4: attempts copied',
  ]);
  t.true(said.includes('migrated 0016_outbox'));

  const { rows: after } = await client.query(`select ${columns} from webhooks.deliveries order by id`);
  t.deepEqual(after, deliveriesBefore);
  const { rows: attemptsAfter } = await client.query(
    `select id, delivery_id, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code, relay_id
     from webhooks.delivery_attempts order by id`);
  t.deepEqual(attemptsAfter, attemptsBefore);
  // pending and in flight are queued (the lease kept), finished ones have a result
  const { rows: queued } = await client.query(
    'select delivery_id, locked_by, action, contact_id from webhooks.delivery_queue order by 1');
  t.deepEqual(queued, [
    { delivery_id: '103', locked_by: null, action: 'contact.created', contact_id: '1103' },
    { delivery_id: '104', locked_by: 'relay-a', action: 'contact.created', contact_id: '1104' },
  ]);
  const { rows: [{ n: results }] } = await client.query('select count(*)::int as n from webhooks.delivery_results');
  t.is(results, 3);
  // every row sits in its day's partition
  const { rows: misplaced } = await client.query(
    `select h.id from webhooks.delivery_history h
     where h.tableoid::regclass::text <> 'webhooks_partitions.delivery_history_p' || to_char(h.created_at at time zone 'utc', 'YYYYMMDD')
     union all
     select a.id from webhooks.delivery_attempts a
     where a.tableoid::regclass::text <> 'webhooks_partitions.delivery_attempts_p' || to_char(a.delivery_created_at at time zone 'utc', 'YYYYMMDD')`);
  t.deepEqual(misplaced, []);

  // new deliveries and attempts get ids after the old ones (the webhook written before
  // the engine existed gets its subscription, secret and lane now)
  await client.query(`insert into webhooks_private.subscriptions (action, company_id, webhook_id, payload_keys)
                      values ('contact.created', 1, 7, '{id,email}') on conflict do nothing`);
  await client.query(`insert into webhooks_private.webhook_secrets (webhook_id, secret) values (7, 'whsec_' || repeat('A', 42) || 'E=') on conflict do nothing`);
  await client.query(`insert into webhooks_private.lanes (webhook_id, company_id) values (7, 1) on conflict do nothing`);
  await client.query(`insert into crm.contacts (company_id, email) values (1, 'new@example.com')`);
  const { rows: [fresh] } = await client.query(`select max(id)::int as id from webhooks.deliveries`);
  t.true(fresh.id > 105);
  const { rows: [claimed] } = await client.query(
    `select * from webhooks_relay.claim_deliveries('relay-c', 10, interval '1 minute', 10, '{}', '{}', array[7::bigint])`);
  t.truthy(claimed);
  await client.query(
    `select * from webhooks_relay.settle_deliveries('relay-c', array[$1::bigint], array[$2::int], array[now()],
       array[5], array[204], array[null::text], array[null::text], array[null::int])`,
    [claimed.delivery_id, claimed.attempt]);
  const { rows: [attempt] } = await client.query(`select max(id)::int as id from webhooks.delivery_attempts`);
  t.true(attempt.id > 503);
});
