// contact.first_company_user_assigned when two transactions assign users of one
// company to one contact at once: one "first", whichever commits first; none lost
// when that one rolls back. (Its own file: each test holds transactions open on
// connections of its own.)
import test from 'ava';
import pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';

const db = useTestDatabase(test);

async function connected(t: { teardown: (fn: () => Promise<void>) => void }): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db().url });
  await client.connect();
  t.teardown(() => client.end());
  return client;
}

async function twoAssigning(t: Parameters<typeof connected>[0], firstEnds: 'commit' | 'rollback') {
  const f = factories(db().pool);
  const company = await f.company();
  const [first, second] = [await f.user(company.id), await f.user(company.id)];
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
  const contact = await f.contact(company.id);
  const a = await connected(t);
  const b = await connected(t);
  const watcher = await connected(t);
  const assign = (client: pg.Client, userId: string) =>
    client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, userId]);

  const bPid = (await b.query('select pg_backend_pid() as pid')).rows[0].pid;
  await a.query('begin');
  await assign(a, first.id);
  await b.query('begin');
  let bDone = false;
  const bAssigning = assign(b, second.id).then(() => { bDone = true; });
  // b's assignment is done, or it waits for a
  await until('the second assignment is done or waits for the first', async () => bDone || (await watcher.query(
    'select 1 from pg_stat_activity where pid = $1 and cardinality(pg_blocking_pids(pid)) > 0', [bPid])).rowCount! > 0);
  await a.query(firstEnds);
  await bAssigning;
  await b.query('commit');
  return { rows: await deliveriesOf(db().pool, [hook.id]), first, second };
}

test.serial('two users of one company assigned at once: one first, the one that committed first', async (t) => {
  const { rows, first } = await twoAssigning(t, 'commit');
  t.deepEqual(rows.map((r) => r.payload.data.user.id), [Number(first.id)]);
});

test.serial('the first assignment rolled back: the other is the first', async (t) => {
  const { rows, second } = await twoAssigning(t, 'rollback');
  t.deepEqual(rows.map((r) => r.payload.data.user.id), [Number(second.id)]);
});
