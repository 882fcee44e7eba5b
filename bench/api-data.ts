// The 1,000,000-delivery history both API benchmarks read: delivery i goes a quarter
// to company 1, the rest round-robin over companies 2..100; within a company
// round-robin over its webhooks; times spread over 90 days. 2 % are still on their
// way, and only in the last day, as with the retry schedule (a delivery's attempts
// end within about a day): before 2026-12-03 they were spread over all 90 days, so no
// day ever ended, the report's day counts could not be rolled up, and every report
// counted its whole range from the rows.
export function deliveriesFill(deliveries: number, webhooksPerCompany: number): string {
  const DELIVERIES = deliveries;
  const WEBHOOKS_PER_COMPANY = webhooksPerCompany;
  return `
    insert into webhooks.deliveries
      (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, last_status_code, created_at)
    select w.id, w.company_id, 'contact.created', i,
           jsonb_build_object('type', 'contact.created', 'data', jsonb_build_object('contact', jsonb_build_object('id', i))),
           s.state,
           case when s.state = 'pending' then 0 else 1 end,
           case when s.state = 'pending' then null else t.at + interval '1 second' end,
           case s.state when 'succeeded' then 200 when 'failed' then 500 end,
           t.at
    from generate_series(1, ${DELIVERIES}) i
    cross join lateral (select case when i % 4 = 0 then 1 else 2 + (i % 99) end as company_id) c
    cross join lateral (select now() - (i::float8 / ${DELIVERIES}) * interval '90 days' as at) t
    cross join lateral (select case when i % 100 < 90 then 'succeeded'
                                    when i % 100 < 98 or t.at < now() - interval '1 day' then 'failed'
                                    else 'pending' end as state) s
    join webhooks.webhooks w on w.company_id = c.company_id and w.name = 'Hook ' || (1 + (i / 7) % ${WEBHOOKS_PER_COMPANY});`;
}

// The rows as the relay leaves them: every finished delivery has an attempt, and only
// a failure a result row of its own (a success writes none, sql/22_outbox.sql).
// Deliveries written through webhooks.deliveries, as the fills above write them, get a
// result row for a success too: a history page would read ten times the result rows
// production has. Run once, after the fills and before any roll-up (the result rows'
// triggers are skipped: they would note every day to count again, for nothing).
export const AS_THE_RELAY_LEAVES_THEM = `
  insert into webhooks.delivery_attempts
    (delivery_id, delivery_created_at, webhook_id, company_id, attempt, attempted_at, duration_ms, status_code)
  select id, created_at, webhook_id, company_id, 1, completed_at - interval '1 second', 120, last_status_code
  from webhooks.deliveries where state <> 'pending';
  set session_replication_role = replica;
  delete from webhooks.delivery_results where state = 'succeeded';
  reset session_replication_role;`;
