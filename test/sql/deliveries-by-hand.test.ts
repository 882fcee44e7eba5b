// A delivery written through webhooks.deliveries by hand (a DBA's repair, a message
// sent again by hand) names its webhook and its company. History has no foreign key
// to the webhooks (a webhook's delete purges its deliveries in batches after it,
// 22_outbox.sql), so the view's write trigger is where the pair is checked: a
// delivery of a webhook that is not there would wait in the queue for ever (no lane
// claims it) and hold its day from the retention, and one whose company is not its
// webhook's would be sent by one company's webhook, counted in another's totals and
// shown to that company's readers. And its state is one of the four, refused by that
// name when it is not, rather than as the completed_at the other states imply.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

type Refusal = { code?: string; constraint?: string; column?: string };

test('a delivery written by hand for a webhook that is not there, or with a company not its webhook\'s, is refused by name; nothing is written', async (t) => {
  const f = factories(db().pool);
  const [a, b] = [await f.company(), await f.company()];
  const wa = await f.webhook({ companyId: a.id, actions: ['contact.created'] });
  const wb = await f.webhook({ companyId: b.id, actions: ['contact.created'] });
  const insert = (webhookId: string, companyId: string) => db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload)
     values ($1, $2, 'contact.created', 1, '{}') returning id`, [webhookId, companyId]);
  const unknown = String(Number(wb.id) + 1000);
  // (what this test's companies and webhooks have: the file's other tests write beside it)
  const written = async () => (await db().pool.query(
    `select (select count(*)::int from webhooks.delivery_history
             where webhook_id = any ($1::bigint[]) or company_id = any ($2::bigint[])) as history,
            (select count(*)::int from webhooks.delivery_queue
             where webhook_id = any ($1::bigint[]) or company_id = any ($2::bigint[])) as queue`,
    [[wa.id, wb.id, unknown], [a.id, b.id]])).rows[0];
  t.deepEqual(await written(), { history: 0, queue: 0 });

  for (const [webhookId, companyId] of [[unknown, a.id], [wa.id, b.id]] as const) {
    const refused = await t.throwsAsync(insert(webhookId, companyId)) as unknown as Refusal;
    t.is(refused.code, '23503', `webhook ${webhookId}, company ${companyId}`);
    t.is(refused.constraint, 'delivery_webhook_of_company');
    t.is(refused.column, 'webhook_id');
  }
  t.deepEqual(await written(), { history: 0, queue: 0 });

  // the pair as it is: written
  await insert(wa.id, a.id);
  t.deepEqual(await written(), { history: 1, queue: 1 });
});

test('an UPDATE of deliveries (many rows at once) that moves them to another company\'s webhook, or to another company, is refused whole; one that moves them to another webhook of their company is done', async (t) => {
  const f = factories(db().pool);
  const [a, b] = [await f.company(), await f.company()];
  const wa = await f.webhook({ companyId: a.id, actions: ['contact.created'] });
  const wa2 = await f.webhook({ companyId: a.id, actions: ['contact.deleted'] });
  const wb = await f.webhook({ companyId: b.id, actions: ['contact.created'] });
  await db().pool.query(`insert into crm.contacts (company_id, first_name) select $1, 'C' || n from generate_series(1, 3) n`, [a.id]);
  const of = async () => (await db().pool.query(
    `select webhook_id, company_id, count(*)::int as n from webhooks.deliveries where webhook_id = any ($1::bigint[])
     group by 1, 2 order by 1, 2`, [[wa.id, wa2.id, wb.id]])).rows;
  const queued = async () => (await db().pool.query(
    `select webhook_id, company_id, count(*)::int as n from webhooks.delivery_queue where webhook_id = any ($1::bigint[])
     group by 1, 2 order by 1, 2`, [[wa.id, wa2.id, wb.id]])).rows;
  const start = [{ webhook_id: wa.id, company_id: a.id, n: 3 }];
  t.deepEqual(await of(), start);

  for (const set of [`webhook_id = ${wb.id}`, `company_id = ${b.id}`, `webhook_id = ${Number(wb.id) + 1000}`]) {
    const refused = await t.throwsAsync(db().pool.query(
      `update webhooks.deliveries set ${set} where webhook_id = $1`, [wa.id])) as unknown as Refusal;
    t.is(refused.code, '23503', set);
    t.is(refused.constraint, 'delivery_webhook_of_company', set);
  }
  t.deepEqual(await of(), start);
  t.deepEqual(await queued(), start);

  // another webhook of the same company: moved, queue rows with them
  const moved = await db().pool.query('update webhooks.deliveries set webhook_id = $2 where webhook_id = $1', [wa.id, wa2.id]);
  t.is(moved.rowCount, 3);
  t.deepEqual(await of(), [{ webhook_id: wa2.id, company_id: a.id, n: 3 }]);
  t.deepEqual(await queued(), [{ webhook_id: wa2.id, company_id: a.id, n: 3 }]);
});

test('a delivery written by hand in a state that is none of the four is refused as such (deliveries_state_unknown), with or without completed_at', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`insert into crm.contacts (company_id, first_name) values ($1, 'C')`, [company.id]);
  const { rows: [pending] } = await db().pool.query('select id from webhooks.deliveries where webhook_id = $1', [webhook.id]);
  const writes: Array<[string, () => Promise<unknown>]> = [
    ["an insert as 'Failed'", () => db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at)
       values ($1, $2, 'contact.created', 1, '{}', 'Failed', 1, now())`, [webhook.id, company.id])],
    ["an insert as 'done' without completed_at", () => db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts)
       values ($1, $2, 'contact.created', 1, '{}', 'done', 1)`, [webhook.id, company.id])],
    ["an update to 'cancelled'", () => db().pool.query(
      `update webhooks.deliveries set state = 'cancelled', completed_at = now() where id = $1`, [pending.id])],
  ];
  for (const [what, write] of writes) {
    const refused = await t.throwsAsync(write()) as unknown as Refusal & { message: string };
    t.like(refused, { code: '23514', constraint: 'deliveries_state_unknown', column: 'state' }, what);
    t.regex(refused.message, /pending, in_flight, succeeded, failed/, what);
  }
  t.deepEqual((await db().pool.query('select state from webhooks.deliveries where webhook_id = $1', [webhook.id])).rows,
    [{ state: 'pending' }]);
});

test('a delivery written by hand at no time (created_at infinity or -infinity) is refused by name (delivery_created_at_infinite)', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`insert into crm.contacts (company_id, first_name) values ($1, 'C')`, [company.id]);
  const { rows: [pending] } = await db().pool.query('select id, created_at from webhooks.deliveries where webhook_id = $1', [webhook.id]);
  const writes: Array<[string, () => Promise<unknown>]> = [
    ['an insert at -infinity', () => db().pool.query(
      `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, created_at)
       values ($1, $2, 'contact.created', 1, '{}', '-infinity')`, [webhook.id, company.id])],
    ['a move to infinity', () => db().pool.query(
      `update webhooks.deliveries set created_at = 'infinity' where id = $1`, [pending.id])],
  ];
  for (const [what, write] of writes) {
    const refused = await t.throwsAsync(write()) as unknown as Refusal;
    t.like(refused, { code: '22008', constraint: 'delivery_created_at_infinite', column: 'created_at' }, what);
  }
  t.deepEqual((await db().pool.query('select id, created_at from webhooks.deliveries where webhook_id = $1', [webhook.id])).rows,
    [pending]);
});
