// How history compresses a large payload (sql/22_outbox.sql, payload_compression): lz4
// where the server was built with it, else the server's default (pglz), on
// delivery_history and every partition of it, made before sql/ was applied or after.
// The embedded server has no lz4; run with DATABASE_URL at a packaged server to see the
// lz4 side (Debian's PostgreSQL 15 has it).
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

/** attcompression of delivery_history's payload and of each of its partitions' ('' is the server's default) */
async function compressions(): Promise<Map<string, string>> {
  const { rows } = await db().pool.query(
    `select c.relname, a.attcompression::text as method
     from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attname = 'payload'
     where c.oid = 'webhooks.delivery_history'::regclass
        or c.oid in (select inhrelid from pg_inherits where inhparent = 'webhooks.delivery_history'::regclass)`);
  return new Map(rows.map((r) => [r.relname as string, r.method as string]));
}

async function serverHasLz4(): Promise<boolean> {
  const { rows: [row] } = await db().pool.query(
    `select 'lz4' = any (enumvals) as lz4 from pg_settings where name = 'default_toast_compression'`);
  return row.lz4;
}

test.serial('payloads are kept with lz4 where the server has it, else with its default; a large one is stored so', async (t) => {
  const lz4 = await serverHasLz4();
  const { rows: [{ method }] } = await db().pool.query('select webhooks_private.payload_compression() as method');
  t.is(method, lz4 ? 'lz4' : null);
  const methods = await compressions();
  t.true(methods.size > 14, `the parent and its partitions: ${[...methods.keys()].join(', ')}`);
  t.deepEqual(new Set(methods.values()), new Set([lz4 ? 'l' : '']), JSON.stringify(Object.fromEntries(methods)));

  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'], fields: ['first_name', 'custom'] });
  // text that compresses (repeated words), large enough to be compressed, under 1 MiB
  await f.contact(company.id, { first_name: 'Large', custom: JSON.stringify({ notes: 'the quick brown fox '.repeat(5_000) }) });
  const { rows } = await db().pool.query(
    `select pg_column_compression(payload) as method, pg_column_size(payload) as stored, octet_length(payload::text) as bytes
     from webhooks.delivery_history where webhook_id = $1`, [hook.id]);
  t.is(rows.length, 1);
  t.is(rows[0].method, lz4 ? 'lz4' : 'pglz');
  t.true(rows[0].stored < rows[0].bytes / 10, `stored in ${rows[0].stored} bytes of ${rows[0].bytes}`);
});

test.serial('a partition made later takes delivery_history\'s compression', async (t) => {
  // pglz named on the parent (any server has it), so that a partition that did not
  // take it would show the default ('') instead
  await db().pool.query('alter table webhooks.delivery_history alter column payload set compression pglz');
  const before = new Set((await compressions()).keys());
  // the tail dropped, as if maintenance had not run: the next run makes the next day
  // and a new tail
  const { rows: [tail] } = await db().pool.query(`select tail_name from webhooks_private.outbox_tail('delivery_history')`);
  await db().pool.query(`alter table webhooks.delivery_history detach partition webhooks_partitions.${tail.tail_name}`);
  await db().pool.query(`drop table webhooks_partitions.${tail.tail_name}`);
  await db().pool.query('select webhooks.create_partitions(webhooks_private.days_ahead() + 1)');

  const made = [...(await compressions())].filter(([name]) => !before.has(name));
  t.is(made.length, 2, `a day and a tail: ${JSON.stringify(made)}`);
  t.deepEqual(made.map(([, method]) => method), ['p', 'p']);
});
