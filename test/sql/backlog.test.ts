// The backlog figure of /metrics (webhooks_ops.backlog, sql/58_operations.sql): the
// deliveries due now and how long the longest-waiting of them has been due. Rows in
// flight and retries waiting for a later attempt are not due.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

test('the backlog counts the due deliveries of every webhook, and the oldest of them', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  // the contact before the webhooks: its capture writes nothing
  const contact = await f.contact(company.id);
  const [a, b, quiet] = await Promise.all([1, 2, 3].map(() => f.webhook({ companyId: company.id, actions: ['contact.created'] })));

  const client = await db().pool.connect();
  t.teardown(() => client.release());
  await client.query('begin');
  try {
    t.deepEqual((await client.query('select due::int, oldest_due_seconds from webhooks_ops.backlog()')).rows[0],
      { due: 0, oldest_due_seconds: 0 });

    const delivery = (webhookId: string, state: string, nextAttempt: string) => client.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, next_attempt_at,
                                        locked_by, locked_until)
       values ($1, $2, 'contact.created', $3, '{}', $4, case when $4 = 'in_flight' then 1 else 0 end, now() + $5::interval,
               case when $4 = 'in_flight' then 'relay-1' end, case when $4 = 'in_flight' then now() + interval '1 minute' end)`,
      [webhookId, company.id, contact.id, state, nextAttempt]);
    await delivery(a.id, 'pending', '-10 seconds');
    await delivery(a.id, 'pending', '-2 seconds');
    await delivery(a.id, 'in_flight', '-90 seconds');
    await delivery(b.id, 'pending', '-30 seconds');
    await delivery(b.id, 'pending', '1 hour');
    await delivery(quiet.id, 'pending', '5 minutes');

    const { rows: [backlog] } = await client.query('select due::int, oldest_due_seconds from webhooks_ops.backlog()');
    t.deepEqual(backlog, { due: 3, oldest_due_seconds: 30 });
  } finally {
    await client.query('rollback');
  }
});
