// crm.contacts partitioned by company_id (hash, two partitions), the engine applied
// again: a contact moved to a company of another partition is one contact.updated to
// both companies, as on a table not partitioned (docs/capture.md, "What is announced
// at the edges"), not a contact.deleted to the one it left and a contact.created to
// the other.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { migrate } from '../../tools/migrate.ts';

const db = useTestDatabase(test);
const make = () => factories(db().pool);

test('a contact moved to a company of another partition: one contact.updated to each company', async (t) => {
  await db().pool.query(`
    begin;
    create table crm.contacts_partitioned (like crm.contacts including defaults including identity) partition by hash (company_id);
    alter table crm.contacts_partitioned add primary key (id, company_id);
    create table crm.contacts_0 partition of crm.contacts_partitioned for values with (modulus 2, remainder 0);
    create table crm.contacts_1 partition of crm.contacts_partitioned for values with (modulus 2, remainder 1);
    alter table crm.contacts rename to contacts_unpartitioned;
    alter table crm.contacts_partitioned rename to contacts;
    drop table crm.contacts_unpartitioned cascade;
    commit;`);
  await migrate(db().url);
  const f = make();
  const companies = [];
  // two companies of different partitions
  while (companies.length < 2) {
    const company = await f.company();
    const { rows: [{ part }] } = await db().pool.query(
      `select satisfies_hash_partition('crm.contacts'::regclass, 2, 0, $1::bigint) as part`, [company.id]);
    if (companies.length === 0 || part !== companies[0].part) companies.push({ ...company, part });
  }
  const [left, joined] = companies;
  const hooks = [];
  for (const company of companies) {
    hooks.push(await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated', 'contact.deleted'], fields: ['first_name'] }));
  }
  const contact = await f.contact(left.id, { first_name: 'Ada' });
  const { rows: [{ part }] } = await db().pool.query(
    `update crm.contacts set company_id = $2 where id = $1 returning tableoid::regclass::text as part`, [contact.id, joined.id]);
  t.is(part, joined.part ? 'crm.contacts_0' : 'crm.contacts_1');
  const { rows } = await db().pool.query(
    `select webhook_id::text, action, payload -> 'data' -> 'changed_fields' as changed from webhooks.deliveries order by id`);
  t.deepEqual(rows, [
    { webhook_id: hooks[0].id, action: 'contact.created', changed: null },
    { webhook_id: hooks[0].id, action: 'contact.updated', changed: ['company_id'] },
    { webhook_id: hooks[1].id, action: 'contact.updated', changed: ['company_id'] },
  ]);
});
