// Migrating is safe to repeat and to run twice at once.
import test from 'ava';
import pg from 'pg';
import { migrate } from '../../tools/migrate.ts';
import { databaseUrl } from '../helpers/db.ts';

async function withEmptyDatabase(work: (url: string) => Promise<void>) {
  const name = `bpd_test_empty_${process.pid}`;
  const server = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await server.connect();
  await server.query(`drop database if exists ${name} with (force)`);
  await server.query(`create database ${name}`);
  try {
    await work(databaseUrl(name));
  } finally {
    await server.query(`drop database if exists ${name} with (force)`);
    await server.end();
  }
}

async function shape(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(`
      select (select count(*) from migrations)::int as migrations,
             (select count(*) from pg_trigger t join pg_class c on c.oid = t.tgrelid
               join pg_namespace n on n.oid = c.relnamespace
               where not t.tgisinternal and n.nspname in ('crm', 'webhooks'))::int as triggers,
             (select count(*) from pg_proc where pronamespace = 'webhooks_private'::regnamespace)::int as functions`);
    return rows[0];
  } finally {
    await client.end();
  }
}

test('two migrates at once, then a third: same schema, nothing duplicated, capture works', async (t) => {
  await withEmptyDatabase(async (url) => {
    await Promise.all([migrate(url), migrate(url)]);
    const first = await shape(url);
    await migrate(url);
    t.deepEqual(await shape(url), first);
    t.true(first.migrations >= 2);
    t.true(first.triggers >= 9);

    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows: [company] } = await client.query("insert into crm.companies (name) values ('M') returning id");
      await client.query(`insert into webhooks.webhooks (company_id, name, url, fields, actions)
                          values ($1, 'h', 'https://example.com/h', '{email}', '{contact.created}')`, [company.id]);
      await client.query('insert into crm.contacts (company_id, email) values ($1, $2)', [company.id, 'm@example.com']);
      const { rows } = await client.query('select count(*)::int as n from webhooks.deliveries');
      t.is(rows[0].n, 1);
    } finally {
      await client.end();
    }
  });
});
