// The CRM's own application role writes contacts with grants on the crm tables only:
// its writes fire webhooks all the same, and it still cannot read or write the
// webhook tables itself.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { crmAppRole } from '../helpers/crm-role.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

test('a role with grants on crm alone fires webhooks, and cannot touch them', async (t) => {
  const role = await crmAppRole(db().pool);
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id);
  const status = await f.status(company.id, 'Thank You Note');
  const hook = await f.webhook({
    companyId: company.id, fields: ['first_name'],
    actions: ['contact.created', 'contact.updated', 'contact.status_added', 'contact.user_assigned', 'contact.deleted'],
  });
  const client = await db().pool.connect();
  try {
    await client.query(`set role ${role}`);
    // a search path of its own must not change what the triggers do
    await client.query('set search_path = crm, public');
    const { rows: [contact] } = await client.query(
      "insert into contacts (company_id, first_name) values ($1, 'Ada') returning id", [company.id]);
    await client.query("update contacts set first_name = 'Ada B.' where id = $1", [contact.id]);
    await client.query('insert into contact_statuses (contact_id, status_id) values ($1, $2)', [contact.id, status.id]);
    await client.query('insert into contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
    await client.query('delete from contacts where id = $1', [contact.id]);
    const denied = await t.throwsAsync(client.query('select count(*) from webhooks.deliveries'));
    t.regex(denied.message, /permission denied/);
  } finally {
    await client.query('reset role; reset search_path');
    client.release();
  }
  const rows = await deliveriesOf(db().pool, [hook.id]);
  t.deepEqual(rows.map((r) => r.action), [
    'contact.created', 'contact.updated', 'contact.status_added', 'contact.user_assigned', 'contact.deleted',
  ]);
});

test('the same role writing a contact too large to send: the write goes on, the delivery is failed with the reason', async (t) => {
  const role = await crmAppRole(db().pool);
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, fields: ['first_name', 'custom'], actions: ['contact.created'] });
  const client = await db().pool.connect();
  try {
    await client.query(`set role ${role}`);
    await client.query('set search_path = crm, public');
    await client.query("insert into contacts (company_id, first_name, custom) values ($1, 'Big', $2)",
      [company.id, JSON.stringify({ notes: 'n'.repeat(1_100_000) })]);
  } finally {
    await client.query('reset role; reset search_path');
    client.release();
  }
  const [delivery] = await deliveriesOf(db().pool, [hook.id]);
  t.is(delivery.state, 'failed');
  t.regex(delivery.last_error ?? '', /^not sent: its payload was \d+ bytes, over the limit of 1048576/);
});
