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
