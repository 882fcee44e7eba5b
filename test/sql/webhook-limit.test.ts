// A company may have at most webhooks.max_webhooks_per_company webhooks (10_config.sql):
// a named refusal past it, counted exactly however many create at once.
import test from 'ava';
import type pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

const INSERT = `insert into webhooks.webhooks (company_id, name, url, fields, actions)
                values ($1, $2, 'https://receiver.example.com/in', '{first_name}', '{contact.created}') returning id`;

/** A connection of its own with the limit set to `limit` for its session. */
async function withLimit(limit: string): Promise<pg.PoolClient> {
  const client = await db().pool.connect();
  await client.query(`set webhooks.max_webhooks_per_company = '${limit}'`);
  return client;
}

test('past the limit a webhook is refused by name; another company is not concerned; a delete makes room', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const other = await f.company();
  const client = await withLimit('3');
  t.teardown(() => client.release(true));
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await client.query(INSERT, [company.id, `hook ${i}`])).rows[0].id);
  // disabled ones count: they are rows the company keeps
  await client.query('update webhooks.webhooks set enabled = false where id = $1', [ids[0]]);

  const refused = await client.query(INSERT, [company.id, 'one too many']).catch((error) => error);
  t.like(refused, { code: '23514', constraint: 'webhook_limit_reached', column: 'company_id' });
  t.is(refused.message,
    `a company may have at most 3 webhooks (webhooks.max_webhooks_per_company), and company ${company.id} has 3: delete one first`);

  await t.notThrowsAsync(client.query(INSERT, [other.id, 'another company']));
  await client.query('delete from webhooks.webhooks where id = $1', [ids[1]]);
  await t.notThrowsAsync(client.query(INSERT, [company.id, 'in the room made']));
});

test('two creations at once for the last place: one is made, the other refused', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const first = await withLimit('1');
  const second = await withLimit('1');
  t.teardown(() => { first.release(); second.release(); });

  const secondPid = (await second.query('select pg_backend_pid() as pid')).rows[0].pid;
  await first.query('begin');
  await first.query(INSERT, [company.id, 'first']);
  // the second waits for the first's lock, not for a count that cannot see it yet
  let settled = false;
  const racing = second.query(INSERT, [company.id, 'second']).catch((error) => error).finally(() => { settled = true; });
  while (!settled) {
    const { rows } = await db().pool.query(`select 1 from pg_locks where locktype = 'advisory' and not granted and pid = $1`, [secondPid]);
    if (rows.length > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await first.query('commit');
  t.like(await racing, { constraint: 'webhook_limit_reached' });
  const { rows } = await db().pool.query('select name from webhooks.webhooks where company_id = $1', [company.id]);
  t.deepEqual(rows.map((r) => r.name), ['first']);
});

test('the default is 100; a value that is no number leaves it, one out of range is held to 1 to 100,000', async (t) => {
  const client = await db().pool.connect();
  t.teardown(() => client.release(true));
  const limit = async (value: string | null) => {
    await client.query(value === null ? 'reset webhooks.max_webhooks_per_company' : `set webhooks.max_webhooks_per_company = '${value}'`);
    return (await client.query('select webhooks_private.max_webhooks_per_company() as n')).rows[0].n;
  };
  t.is(await limit(null), 100);
  t.is(await limit('many'), 100);
  t.is(await limit('-5'), 1);
  t.is(await limit(' 250 '), 250);
  t.is(await limit('0'), 1);
  t.is(await limit('99999999999'), 100000);
  t.is(await limit('9999999999'), 100000);
});
