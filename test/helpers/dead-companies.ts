// Companies whose endpoints are dead (the breaker not yet open): a webhook each, and a
// delivery waiting for its retry an hour away. Beside them a relay's discoveries walk
// lanes that may not send (test/fleet/retrying-companies.test.ts,
// test/relay/quiet-polls.test.ts).
import type pg from 'pg';

/** `count` companies named 'Dead n', a webhook each named 'Dead', and a delivery retrying in an hour. */
export async function deadCompanies(pool: pg.Pool, count: number): Promise<void> {
  await pool.query(`insert into crm.companies (name) select 'Dead ' || n from generate_series(1, $1::int) n`, [count]);
  await pool.query(
    `insert into webhooks.webhooks (company_id, name, url, fields, actions)
     select c.id, 'Dead', 'https://receiver.example.com/dead/' || c.id, '{first_name}', '{contact.deleted}'
     from crm.companies c where c.name like 'Dead %'`);
  await pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, attempts, next_attempt_at)
     select w.id, w.company_id, 'contact.deleted', 1, '{}', 1, now() + interval '1 hour'
     from webhooks.webhooks w where w.name = 'Dead'`);
}
