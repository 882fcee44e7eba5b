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
