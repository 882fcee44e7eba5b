// A database whose default collation is ICU: there a regular expression's \d matches
// every decimal digit of Unicode (Arabic-Indic, Devanagari...), which numeric does not
// read. A condition's test of "is this text a number" must not take such text for one:
// the cast after it would fail the contact write (sql/15_filters.sql).
import test from 'ava';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { databaseUrl } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { migrate } from '../../tools/migrate.ts';

const name = `bpd_test_icu_${randomBytes(5).toString('hex')}`;
let pool: pg.Pool;

async function onServer(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl('postgres') });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

test.before(async () => {
  await onServer(`create database ${name} template template0 encoding 'UTF8' locale 'C' locale_provider icu icu_locale 'und'`);
  await migrate(databaseUrl(name));
  pool = new pg.Pool({ connectionString: databaseUrl(name), max: 4 });
  // a client still closing may hear the drop below ("terminating connection"): expected
  // then (test/helpers/db.ts)
  pool.on('error', () => {});
});

test.after.always(async () => {
  await pool?.end();
  await onServer(`drop database if exists ${name} with (force)`);
});

test('text of other scripts\' digits is no number to a condition, and the contact write goes through', async (t) => {
  const f = factories(pool);
  const company = await f.company();
  const hook = await f.webhook({
    companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['custom'],
    conditions: { field: 'custom.score', op: 'gt', value: 1 },
  });
  // "٣" is three in Arabic-Indic digits; "12" in ASCII digits compares as a number
  const contact = await f.contact(company.id, { custom: { score: '٣' } });
  await t.notThrowsAsync(pool.query(`update crm.contacts set custom = '{"score": "12"}' where id = $1`, [contact.id]));

  const rows = await deliveriesOf(pool, [hook.id]);
  t.deepEqual(rows.map((r) => [r.action, r.payload.data.contact.custom]), [['contact.updated', { score: '12' }]]);
});
