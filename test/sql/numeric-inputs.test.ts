// Every numeric input a tenant or a DBA gives the engine's SQL is refused by name, with
// its bound in the message, and nothing is written; a setting set to nonsense leaves
// its default (or is held to its bound) with the reason in webhooks.settings, as every
// setting's reader does (02_settings.sql), never an error where it is read.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

/** The webhook's row and the company's audit rows: what a refused call must leave as they were. */
async function written(client: pg.PoolClient, companyId: string): Promise<unknown> {
  const { rows } = await client.query(
    `select (select json_agg(w order by w.id) from webhooks.webhooks w where w.company_id = $1) as webhooks,
            (select count(*) from webhooks.audit_log a where a.company_id = $1) as audit`, [companyId]);
  return rows[0];
}

/** Runs sql as the company's admin (as the API does), in a transaction rolled back; the error it raised, or nothing. */
async function refusal(companyId: string, sql: string, asOwner = false): Promise<Record<string, unknown> | undefined> {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    if (!asOwner) {
      await client.query(`select set_config('role', 'webhook_admin', true), set_config('jwt.claims.company_id', $1, true)`, [companyId]);
    }
    return await client.query(sql).then(() => undefined, (error) => error);
  } finally {
    await client.query('rollback');
    client.release();
  }
}

test('a limit, a version or a count out of its bounds is refused by name with its bound, and nothing is written', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const create = (args: string) =>
    `select webhooks.create_webhook('Hook', 'https://receiver.example.com/in', '{first_name}', '{contact.created}', ${args})`;
  const cases: Array<[string, string, Record<string, unknown>, RegExp, boolean?]> = [
    ...['-1', '0', '10001', '2147483647'].map((v): [string, string, Record<string, unknown>, RegExp] =>
      [`create rate_limit ${v}`, create(`rate_limit => ${v}`), { code: '23514', constraint: 'webhook_rate_limit_range', column: 'rate_limit' },
        new RegExp(`^rate_limit must be from 1 to 10000 requests per second \\(or null for none\\), got ${v}$`)]),
    ...['-1', '0', '1001', '2147483647'].map((v): [string, string, Record<string, unknown>, RegExp] =>
      [`update max_in_flight ${v}`, `select webhooks.update_webhook(${webhook.id}, max_in_flight => ${v})`,
        { code: '23514', constraint: 'webhook_max_in_flight_range', column: 'max_in_flight' },
        new RegExp(`^max_in_flight must be from 1 to 1000 requests at once \\(or null for the default\\), got ${v}$`)]),
    ['update rate_limit -1', `select webhooks.update_webhook(${webhook.id}, rate_limit => -1)`,
      { code: '23514', constraint: 'webhook_rate_limit_range', column: 'rate_limit' }, /from 1 to 10000/],
    ['update expected_version 2147483647', `select webhooks.update_webhook(${webhook.id}, name => 'x', expected_version => 2147483647)`,
      { code: '55000', constraint: 'webhook_changed_since', column: 'version' }, /was changed since it was read/],
    ['replay max_deliveries 0', `select webhooks.replay_failed(${webhook.id}, now() - interval '1 day', 0)`,
      { code: '22023', constraint: 'replay_max_deliveries_range', column: 'max_deliveries' }, /^replayFailed replays from 1 to \d+ deliveries/],
    ['replay max_deliveries 2147483647', `select webhooks.replay_failed(${webhook.id}, now() - interval '1 day', 2147483647)`,
      { code: '22023', constraint: 'replay_max_deliveries_range', column: 'max_deliveries' }, /^replayFailed replays from 1 to \d+ deliveries/],
    ['retry_schedule 101', 'select * from webhooks.retry_schedule(101)',
      { code: '22023', constraint: 'retry_max_attempts_range', column: 'p_max_attempts' }, /from 1 to 100/],
    ['coalesce_window -1 second', `select webhooks.set_webhook_delivery(${webhook.id}, interval '-1 second')`,
      { code: '23514', constraint: 'webhooks_coalesce_window_range', column: 'coalesce_window' }, /at most 1 hour/],
    // the DBA's (as the owner, as maintenance runs them)
    ['purge_deleted_webhooks 0', 'select webhooks.purge_deleted_webhooks(0)',
      { code: '22023', constraint: 'purge_max_rows_range', column: 'p_max_rows' },
      /^purge_deleted_webhooks: p_max_rows must be from 1 to 2147483647, got 0$/, true],
    ['forget_audit_log 100001', 'select webhooks.forget_audit_log(100001)',
      { code: '22023', constraint: 'forget_audit_log_max_rows_range', column: 'p_max_rows' },
      /^forget_audit_log: p_max_rows must be from 1 to 100000, got 100001$/, true],
    ['create_partitions -1', 'select webhooks.create_partitions(-1)',
      { code: '22023', constraint: 'create_partitions_days_ahead_range', column: 'p_days_ahead' },
      /^create_partitions: p_days_ahead must be from 0 to 366, got -1$/, true],
  ];
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const before = await written(client, company.id);
  for (const [name, sql, named, message, asOwner] of cases) {
    const error = await refusal(company.id, sql, asOwner);
    t.like(error, named, name);
    t.regex(String((error as { message?: string } | undefined)?.message), message, name);
  }
  t.deepEqual(await written(client, company.id), before, 'nothing was written');
});

test('a value past its argument\'s or column\'s integer type is refused by Postgres before the engine\'s rules see it, and nothing is written', async (t) => {
  // The arguments and columns are integers, as GraphQL's Int is (the API names such a
  // value first: int_range, api/input-refusals.ts). Postgres reads a value into its
  // type before any function body or trigger runs, so no rule of the engine can name
  // one past 2^31 - 1 there: docs/sql.md says what a DBA meets instead.
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  const before = await written(client, company.id);
  for (const [sql, code] of [
    [`select webhooks.update_webhook(${webhook.id}, rate_limit => 3000000000)`, '42883'],
    [`select webhooks.update_webhook(${webhook.id}, rate_limit => '3000000000')`, '22003'],
    [`update webhooks.webhooks set rate_limit = 3000000000 where id = ${webhook.id}`, '22003'],
    [`update webhooks.webhooks set max_in_flight = 1e20 where id = ${webhook.id}`, '22003'],
  ] as const) {
    t.like(await refusal(company.id, sql, sql.startsWith('update')), { code }, sql);
  }
  t.deepEqual(await written(client, company.id), before, 'nothing was written');
});

test('a setting set to nonsense leaves its default, or is held to its bound, with the reason, and is read without an error', async (t) => {
  const readers: Record<string, string> = {
    'webhooks.max_in_flight': 'integer_setting', 'webhooks.max_attempts': 'integer_setting', 'webhooks.backfill_batch': 'integer_setting',
    'webhooks.retry_factor': 'number_setting',
    'webhooks.backfill_batch_time': 'interval_setting', 'webhooks.auto_disable_after': 'interval_setting',
    'webhooks.audit_retention': 'interval_setting',
  };
  const client = await db().pool.connect();
  t.teardown(() => client.release());
  for (const [name, reader] of Object.entries(readers)) {
    const { rows: [rule] } = await client.query(
      'select kind, default_value, least_value, most_value from webhooks_private.setting_rules() where name = $1', [name]);
    for (const value of ['3000000000', '-1', '1e20', 'abc', '', '1e20 seconds', '3000000000 days', '9'.repeat(40)]) {
      await client.query('begin');
      try {
        await client.query('select set_config($1, $2, true)', [name, value]);
        const { rows: [s] } = await client.query(`select value, refusal, webhooks_private.${reader}($1)::text as read from webhooks.settings where name = $1`, [name]);
        const shown = await client.query(`select webhooks_private.${reader}($2)::text = $1 as same`, [s.value, name]);
        t.true(shown.rows[0].same, `${name} = ${JSON.stringify(value)}: read ${s.read}, shown ${s.value}`);
        if (value === '') t.is(s.refusal, null, `${name} empty: not set`);
        else if (s.refusal === null) {
          // within its bounds, as its kind reads it (3000000000 seconds is 95 years of audit trail)
          const { rows: [as] } = await client.query(`select case when $1::text = 'interval' then $2::text::interval::text else $2::text end as text`, [rule.kind, value]);
          t.is(s.value, as.text, `${name} = ${JSON.stringify(value)}`);
        } else t.regex(s.refusal ?? '', /^(not (a whole number|a number|an interval): the default holds|(less|more) than .*, the (least|most) allowed: .* holds)$/,
          `${name} = ${JSON.stringify(value)}`);
        t.truthy(rule, name);
      } finally {
        await client.query('rollback');
      }
    }
  }
});
