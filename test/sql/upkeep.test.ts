// How far the outbox's upkeep is behind (webhooks_ops.upkeep(), sql/58_operations.sql),
// which /metrics shows to operators: the days made ahead, the days kept past the
// retention, the deleted webhooks whose deliveries wait to be removed, and the days
// the report's roll-up has not reached. Each moves as maintenance falls behind and
// comes back when it runs (tools/maintain.ts).
import test from 'ava';
import pg from 'pg';
import { maintain } from '../../tools/maintain.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { tableReads } from '../helpers/plans.ts';

const db = useTestDatabase(test);

interface Upkeep { days_ahead: number; days_past_retention: number; webhooks_to_purge: number; report_days_behind: number }

/** Asked by a new session: one that sees the retention as the database now sets it. */
async function upkeep(): Promise<Upkeep> {
  const client = new pg.Client({ connectionString: db().url });
  await client.connect();
  try {
    const { rows: [row] } = await client.query(
      'select days_ahead, days_past_retention, webhooks_to_purge::int, report_days_behind from webhooks_ops.upkeep()');
    return row;
  } finally {
    await client.end();
  }
}

/** Finished (or pending) deliveries of the webhook created `daysAgo` days ago. */
async function pastDeliveries(webhook: { id: string; company_id: string }, count: number, daysAgo: number, state = 'failed') {
  const at = `now() - interval '${daysAgo} days'`;
  await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts,
                                      completed_at, created_at)
     select $1, $2, 'contact.created', i, '{}', $4::text, case when $4 = 'pending' then 0 else 1 end,
            case when $4 = 'pending' then null else now() end, ${at}
     from generate_series(1, $3) i`, [webhook.id, webhook.company_id, count, state]);
}

/** The last `days` days made ahead of every outbox table dropped, and the tail moved back after the rest. */
async function forgetDaysAhead(days: number): Promise<void> {
  const { rows: tables } = await db().pool.query('select table_name from webhooks_private.outbox_partitioned()');
  for (const { table_name: table } of tables) {
    const { rows: [tail] } = await db().pool.query('select tail_name from webhooks_private.outbox_tail($1)', [table]);
    await db().pool.query(`alter table webhooks.${table} detach partition webhooks_partitions.${tail.tail_name}`);
    await db().pool.query(`drop table webhooks_partitions.${tail.tail_name}`);
    const { rows: last } = await db().pool.query(
      `select partition_name from webhooks_private.outbox_partitions() where table_name = $1
       order by last_day desc limit $2`, [table, days]);
    for (const { partition_name: name } of last) await db().pool.query(`drop table webhooks_partitions.${name}`);
    await db().pool.query('select webhooks_private.attach_tail($1)', [table]);
  }
}

test.serial('after maintenance: two weeks made ahead, nothing past the retention, nothing to purge', async (t) => {
  await maintain(db().url);
  t.deepEqual(await upkeep(), { days_ahead: 14, days_past_retention: 0, webhooks_to_purge: 0, report_days_behind: 0 });
});

test.serial('days made ahead fall when maintenance does not run, and come back when it does', async (t) => {
  await maintain(db().url);
  await forgetDaysAhead(4);
  t.is((await upkeep()).days_ahead, 10);
  await maintain(db().url);
  t.is((await upkeep()).days_ahead, 14);
});

test.serial('days past the retention are counted until they are dropped; a day held by a delivery on its way stays counted', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  t.teardown(() => db().pool.query(`alter database ${db().name} reset webhooks.retention`));
  await pastDeliveries(webhook, 2, 10);
  await pastDeliveries(webhook, 1, 9);
  await pastDeliveries(webhook, 1, 8, 'pending');
  await pastDeliveries(webhook, 1, 2);
  t.is((await upkeep()).days_past_retention, 3);
  const result = await maintain(db().url);
  t.is(result.daysDropped.length, 2);
  t.is((await upkeep()).days_past_retention, 1, 'the day with a pending delivery is kept');
  await db().pool.query(`update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
                         where webhook_id = $1 and state = 'pending'`, [webhook.id]);
  await maintain(db().url);
  t.is((await upkeep()).days_past_retention, 0);
});

test.serial('a deleted webhook whose deliveries are too many for its delete waits to be purged until maintenance', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const small = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const big = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const { rows: [{ max }] } = await db().pool.query('select webhooks_private.inline_purge_max_rows() as max');
  await pastDeliveries(small, 3, 3);
  await pastDeliveries(big, max + 5, 3);
  await db().pool.query('delete from webhooks.webhooks where id = any ($1::bigint[])', [[small.id, big.id]]);
  t.is((await upkeep()).webhooks_to_purge, 1);
  t.is((await maintain(db().url)).deliveriesPurged, 5);
  t.is((await upkeep()).webhooks_to_purge, 0);
});

test.serial("the report's counts: days behind when no roll-up goes through every webhook, none once one does", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await maintain(db().url);
  t.is((await upkeep()).report_days_behind, 0);
  // as if the last roll-up through every webhook had been three days ago
  await db().pool.query('update webhooks_private.report_counts_rolled_up set counted_before = counted_before - 3');
  t.is((await upkeep()).report_days_behind, 3);
  // as if none ever had: the days since the first webhook was made, less the two
  // days not countable yet
  await db().pool.query('delete from webhooks_private.report_counts_rolled_up');
  await db().pool.query("update webhooks.webhooks set created_at = now() - interval '10 days' where id = (select min(id) from webhooks.webhooks)");
  const { rows: [{ expected }] } = await db().pool.query(
    `select webhooks_private.countable_before() - webhooks_private.utc_day(min(created_at)) as expected from webhooks.webhooks`);
  t.true(expected >= 7 && expected <= 8);
  t.is((await upkeep()).report_days_behind, expected);
  await maintain(db().url);
  t.is((await upkeep()).report_days_behind, 0);
});

// Every scrape of /metrics asks this (ops/operations.ts): before any roll-up through
// every webhook, the days since the first webhook was made were found by reading
// every webhook's creation time, a scan of the whole table on every scrape, as long
// as nothing rolls up (that is when the figure matters).
test.serial("the report's days behind, with no roll-up through every webhook yet, read the first webhook, not every webhook", async (t) => {
  const WEBHOOKS = 2_000;
  await db().pool.query(
    `insert into crm.companies (name) select 'Upkeep ' || n from generate_series(1, $1::int / 100) n`, [WEBHOOKS]);
  await db().pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select c.id, 'Hook ' || n, 'https://receiver.example.com/' || n, '{first_name}', '{contact.created}'
     from crm.companies c, generate_series(1, 100) n where c.name like 'Upkeep %'`);
  await db().pool.query('delete from webhooks_private.report_counts_rolled_up');
  await db().pool.query('analyze webhooks.webhooks');
  const client = new pg.Client({ connectionString: db().url });
  await client.connect();
  t.teardown(() => client.end());
  const read = () => tableReads(client, 'webhooks.webhooks');
  await client.query('begin');
  const before = await read();
  const { rows: [row] } = await client.query('select report_days_behind from webhooks_ops.upkeep()');
  const rows = (await read()) - before;
  await client.query('commit');
  const { rows: [{ expected }] } = await client.query(
    `select webhooks_private.countable_before() - webhooks_private.utc_day(min(created_at)) as expected from webhooks.webhooks`);
  t.is(row.report_days_behind, Math.max(expected, 0));
  t.true(rows < 10, `it read ${rows} rows of webhooks.webhooks (${WEBHOOKS}+ webhooks)`);
});
