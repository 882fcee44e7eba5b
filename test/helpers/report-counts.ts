// The report's totals two ways, for the tests of its counts: counting the deliveries,
// and asking the report (webhookReport over GraphQL) as the company's viewer.
import type pg from 'pg';

export interface Totals {
  fired: string;
  succeeded: string;
  failed: string;
}

/** A webhook's deliveries created in [since, until), counted row by row (test sends left out, as the report leaves them). */
export async function rawCounts(pool: Pick<pg.Pool, 'query'>, webhookId: string, since: string | null, until: string | null): Promise<Totals> {
  const { rows: [row] } = await pool.query(
    `select count(*)::text as fired, count(*) filter (where state = 'succeeded')::text as succeeded,
            count(*) filter (where state = 'failed')::text as failed
     from webhooks.deliveries
     where webhook_id = $1 and action <> 'webhook.test'
       and created_at >= coalesce($2::timestamptz, '-infinity') and created_at < coalesce($3::timestamptz, 'infinity')`,
    [webhookId, since, until]);
  return row as Totals;
}

/** The same, as the report says it. */
export async function reported(
  api: { gql(token: string, query: string, variables?: Record<string, unknown>): Promise<any> },
  token: string, webhookId: string, since: string | null, until: string | null,
): Promise<Totals> {
  const response = await api.gql(token, `query($since: Datetime, $until: Datetime) {
      webhookReport(since: $since, until: $until) { nodes { webhookId timesFired timesSucceeded timesFailed } } }`,
    { since, until });
  if (response.errors) throw new Error(JSON.stringify(response.errors));
  const row = response.data.webhookReport.nodes.find((node: any) => node.webhookId === webhookId);
  return { fired: row.timesFired, succeeded: row.timesSucceeded, failed: row.timesFailed };
}

/** Finished deliveries of a webhook, one per time, each with its state (succeeded or failed). */
export async function insertFinished(
  pool: Pick<pg.Pool, 'query'>, webhookId: string, companyId: string, times: string[], states: string[],
): Promise<Array<{ id: string; created_at: Date }>> {
  const { rows } = await pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     select $1, $2, 'contact.created', 1, '{}', s, 1, t, t
     from unnest($3::timestamptz[], $4::text[]) as r(t, s)
     returning id, created_at`,
    [webhookId, companyId, times, states]);
  return rows;
}

/** Every delivery of the webhook on its way marked succeeded (as the relay settles them). */
export async function settlePending(pool: Pick<pg.Pool, 'query'>, webhookId: string): Promise<void> {
  await pool.query(
    `update webhooks.deliveries set state = 'succeeded', attempts = 1, completed_at = now()
     where webhook_id = $1 and state = 'pending'`, [webhookId]);
}

/** A roll-up whose clock is `later` (an interval) after `started`. */
export async function rollUpAfter(pool: Pick<pg.Pool, 'query'>, started: Date, later: string): Promise<void> {
  await pool.query('call webhooks.roll_up_report_counts(p_now => $1::timestamptz + $2::interval)', [started, later]);
}

/** The webhook's true hour row of the hour `at` falls in (its fired), and the report's count of that hour. */
export async function hourCounts(pool: Pick<pg.Pool, 'query'>, webhook: { id: string; company_id: string }, at: Date) {
  const { rows: [row] } = await pool.query(
    `select (select coalesce(array_agg(c.fired::int), '{}') from webhooks.delivery_hour_counts c
             where c.webhook_id = $1 and c.hour = webhooks_private.utc_hour($3) and not c.stale) as "hourRow",
            (select r.fired::int from webhooks_private.count_deliveries($1, $2, webhooks_private.utc_hour($3),
                                                                          webhooks_private.utc_hour($3) + interval '1 hour') r) as report`,
    [webhook.id, webhook.company_id, at]);
  return row as { hourRow: number[]; report: number };
}
