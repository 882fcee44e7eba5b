// contact.first_company_user_assigned when two transactions assign users of one
// company to one contact at once: one "first", whichever commits first; none lost
// when that one rolls back. (Its own file: each test holds transactions open on
// connections of its own.)
import test from 'ava';
import pg from 'pg';
import { ownConnection, useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';
import { until } from '../helpers/until.ts';
import type { PlanNode } from '../helpers/plans.ts';

const db = useTestDatabase(test);

const connected = (t: { teardown: (fn: () => Promise<void>) => void }) => ownConnection(db().url, t);

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

// At REPEATABLE READ and SERIALIZABLE the question is asked in the transaction's
// snapshot, taken before the lock was granted: it missed the colleague whose
// transaction committed meanwhile, and both sent a "first". Such a writer gets one
// first in all, or a serialization failure (40001), which it must retry anyway: its
// retry sees the colleague and sends none.
type Isolation = 'repeatable read' | 'serializable';

/** ends the open transaction of client with its last statement's outcome: committed,
 * or rolled back on a serialization failure and done again in a transaction of its own */
async function finishRetrying(t: { is: (a: unknown, b: unknown) => void }, client: pg.Client, isolation: Isolation,
  last: Promise<unknown>, again: () => Promise<unknown>): Promise<'committed' | 'retried'> {
  const failed = await last.then(() => client.query('commit')).then(() => null, (error) => error);
  if (!failed) return 'committed';
  t.is(failed.code, '40001');
  await client.query('rollback');
  await client.query(`begin isolation level ${isolation}`);
  await again();
  await client.query('commit');
  return 'retried';
}

for (const isolation of ['repeatable read', 'serializable'] as const) {
  test.serial(`${isolation}: two users of one company assigned at once, the second waiting for the first: one first in all`, async (t) => {
    const f = factories(db().pool);
    const company = await f.company();
    const [first, second] = [await f.user(company.id), await f.user(company.id)];
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
    const contact = await f.contact(company.id);
    const [a, b, watcher] = [await connected(t), await connected(t), await connected(t)];
    const assign = (client: pg.Client, userId: string) =>
      client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, userId]);

    const bPid = (await b.query('select pg_backend_pid() as pid')).rows[0].pid;
    await a.query(`begin isolation level ${isolation}`);
    await assign(a, first.id);
    await b.query(`begin isolation level ${isolation}`);
    const bAssigning = assign(b, second.id);
    bAssigning.catch(() => {});
    await until('the second assignment waits for the first', async () => (await watcher.query(
      'select 1 from pg_stat_activity where pid = $1 and cardinality(pg_blocking_pids(pid)) > 0', [bPid])).rowCount! > 0);
    await a.query('commit');
    t.log(await finishRetrying(t, b, isolation, bAssigning, () => assign(b, second.id)));

    const rows = await deliveriesOf(db().pool, [hook.id]);
    t.deepEqual(rows.map((r) => r.payload.data.user.id), [Number(first.id)]);
    const { rows: assigned } = await db().pool.query(
      'select user_id from crm.contact_assignments where contact_id = $1 order by user_id', [contact.id]);
    t.deepEqual(assigned.map((r) => r.user_id), [first.id, second.id]);
  });

  test.serial(`${isolation}: a colleague assigned and committed after the snapshot was taken: no second first`, async (t) => {
    const f = factories(db().pool);
    const company = await f.company();
    const [first, second] = [await f.user(company.id), await f.user(company.id)];
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
    const contact = await f.contact(company.id);
    const b = await connected(t);
    const assign = (client: pg.Client | pg.Pool, userId: string) =>
      client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, userId]);

    await b.query(`begin isolation level ${isolation}`);
    // (the snapshot: no assignment yet)
    t.deepEqual((await b.query('select user_id from crm.contact_assignments where contact_id = $1', [contact.id])).rows, []);
    await assign(db().pool, first.id);   // another writer, READ COMMITTED, committed
    t.log(await finishRetrying(t, b, isolation, assign(b, second.id), () => assign(b, second.id)));

    const rows = await deliveriesOf(db().pool, [hook.id]);
    t.deepEqual(rows.map((r) => r.payload.data.user.id), [Number(first.id)]);
  });

  test.serial(`${isolation}: the same after the company had a first once and lost it: no second first`, async (t) => {
    const f = factories(db().pool);
    const company = await f.company();
    const [earlier, first, second] = [await f.user(company.id), await f.user(company.id), await f.user(company.id)];
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
    const contact = await f.contact(company.id);
    const b = await connected(t);
    const assign = (client: pg.Client | pg.Pool, userId: string) =>
      client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, userId]);
    await assign(db().pool, earlier.id);
    await db().pool.query('delete from crm.contact_assignments where contact_id = $1', [contact.id]);

    await b.query(`begin isolation level ${isolation}`);
    t.deepEqual((await b.query('select user_id from crm.contact_assignments where contact_id = $1', [contact.id])).rows, []);
    await assign(db().pool, first.id);   // the company's first again, committed
    t.log(await finishRetrying(t, b, isolation, assign(b, second.id), () => assign(b, second.id)));

    const rows = await deliveriesOf(db().pool, [hook.id]);
    t.deepEqual(rows.map((r) => r.payload.data.user.id), [Number(earlier.id), Number(first.id)]);
  });
}

// A company's webhook for firsts created while another company's first on the same
// contact holds a writer up. The writer, at READ COMMITTED, wrote the rows of firsts
// for the companies it saw listening when its statement began (not this one), waited
// there for a colleague, and asked "first?" after the wait: the new webhook listening
// by then, it sent the company's first without its row, so without waiting for a
// writer of that company's first that had seen the webhook and wrote the row. Each
// took its own user as the first, and the company was sent two. Now the companies
// that get firsts are those seen listening when the rows were written.
for (const isolation of ['read committed', 'repeatable read', 'serializable'] as const) {
  test.serial(`a webhook for firsts created while an assignment waits for another company's first, and a colleague at ${isolation} assigns: one first`, async (t) => {
    const f = factories(db().pool);
    const [owner, other] = [await f.company(), await f.company()];
    const [x1, x2] = [await f.user(owner.id), await f.user(owner.id)];
    const [y1, y2] = [await f.user(other.id), await f.user(other.id)];
    const ownerHook = await f.webhook({ companyId: owner.id, actions: ['contact.first_company_user_assigned'] });
    const contact = await f.contact(owner.id);
    const [holder, a, b, watcher] = [await connected(t), await connected(t), await connected(t), await connected(t)];
    const assign = (client: pg.Client, userIds: string[]) =>
      client.query('insert into crm.contact_assignments (contact_id, user_id) select $1, unnest($2::bigint[])',
        [contact.id, userIds]);

    // the owner's first, held open
    await holder.query('begin');
    await assign(holder, [x1.id]);
    // a user of each company in one statement: it waits for the owner's first
    const aPid = (await a.query('select pg_backend_pid() as pid')).rows[0].pid;
    await a.query('begin');
    const aAssigning = assign(a, [x2.id, y1.id]);
    await until('the assignment waits for the owner\'s first', async () => (await watcher.query(
      'select 1 from pg_stat_activity where pid = $1 and cardinality(pg_blocking_pids(pid)) > 0', [aPid])).rowCount! > 0);
    // meanwhile the other company starts listening for firsts, and a colleague of
    // that company is assigned
    const otherHook = await f.webhook({ companyId: other.id, actions: ['contact.first_company_user_assigned'] });
    await b.query(`begin isolation level ${isolation}`);
    await assign(b, [y2.id]);
    // the owner's first committed, the assignment goes on, and commits before the colleague
    await holder.query('commit');
    await aAssigning;
    await a.query('commit');
    await b.query('commit');

    t.deepEqual((await deliveriesOf(db().pool, [ownerHook.id])).map((r) => r.payload.data.user.id), [Number(x1.id)]);
    // (the assignment began before the company listened: its first is the colleague's)
    t.deepEqual((await deliveriesOf(db().pool, [otherHook.id])).map((r) => r.payload.data.user.id), [Number(y2.id)]);
  });
}

// A writer in REPEATABLE READ whose snapshot was taken before the webhook for firsts
// existed writes no row of firsts and takes no lock: it sends no first either, every
// question of its being asked in that snapshot. The colleague that saw the webhook
// sends the one first.
for (const order of ['the colleague commits first', 'the colleague commits last'] as const) {
  test.serial(`a webhook for firsts created after a repeatable read writer's snapshot, ${order}: one first`, async (t) => {
    const f = factories(db().pool);
    const company = await f.company();
    const [early, colleague] = [await f.user(company.id), await f.user(company.id)];
    const contact = await f.contact(company.id);
    const [a, b] = [await connected(t), await connected(t)];
    const assign = (client: pg.Client, userId: string) =>
      client.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, userId]);

    await b.query('begin isolation level repeatable read');
    t.deepEqual((await b.query('select user_id from crm.contact_assignments where contact_id = $1', [contact.id])).rows, []);
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
    await a.query('begin');
    await assign(a, colleague.id);
    await assign(b, early.id);
    if (order === 'the colleague commits first') await a.query('commit');
    await b.query('commit');
    if (order === 'the colleague commits last') await a.query('commit');

    t.deepEqual((await deliveriesOf(db().pool, [hook.id])).map((r) => r.payload.data.user.id), [Number(colleague.id)]);
  });
}

test('a deleted contact takes its companies\' rows of firsts with it', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id);
  await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
  const [gone, kept] = [await f.contact(company.id), await f.contact(company.id)];
  for (const contact of [gone, kept]) {
    await db().pool.query('insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)', [contact.id, user.id]);
  }
  const firsts = async () => (await db().pool.query<{ contact_id: string }>(
    'select contact_id from webhooks_private.first_assignments where company_id = $1 order by contact_id', [company.id])).rows
    .map((row) => row.contact_id);
  t.deepEqual(await firsts(), [gone.id, kept.id]);
  await db().pool.query('delete from crm.contacts where id = $1', [gone.id]);
  t.deepEqual(await firsts(), [kept.id]);
});

test('an import assigning many contacts in one transaction takes no lock per contact: firsts hold no room in the lock table', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id);
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
  const { rows: contacts } = await db().pool.query<{ id: string }>(
    "insert into crm.contacts (company_id, first_name) select $1, 'Imported' from generate_series(1, 400) returning id",
    [company.id]);
  const ids = contacts.map((c) => c.id);
  const client = await connected(t);
  await client.query('begin');
  // one statement of 300 rows, then 100 statements of one (an import's loop)
  await client.query('insert into crm.contact_assignments (contact_id, user_id) select unnest($1::bigint[]), $2',
    [ids.slice(0, 300), user.id]);
  await client.query(`do $$ declare c bigint; begin
    foreach c in array '{${ids.slice(300).join(',')}}'::bigint[] loop
      insert into crm.contact_assignments (contact_id, user_id) values (c, ${Number(user.id)});
    end loop; end $$`);
  // (an advisory lock a contact was a room of its own in the server's lock table,
  // shared by every session: an import of some ten thousand contacts failed with
  // "out of shared memory", and every other session's locks with it)
  const { rows: [held] } = await client.query(
    "select count(*)::int as n from pg_locks where pid = pg_backend_pid() and locktype = 'advisory'");
  await client.query('commit');
  t.true(held.n < 10, `${held.n} advisory locks held`);
  t.is((await deliveriesOf(db().pool, [hook.id])).length, 400);
});

/** rows the CTE scans of a plan read, over all their loops */
function cteRowsRead(node: PlanNode & { 'CTE Name'?: string }): number {
  const own = node['Node Type'] === 'CTE Scan'
    ? ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)) * (node['Actual Loops'] ?? 1) : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + cteRowsRead(child), 0);
}

test('one statement assigning many contacts reads its own pairs a bounded number of times, not once a pair', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const user = await f.user(company.id);
  await f.webhook({ companyId: company.id, actions: ['contact.first_company_user_assigned'] });
  const n = 300;
  const { rows: contacts } = await db().pool.query<{ id: string }>(
    "insert into crm.contacts (company_id, first_name) select $1, 'Imported' from generate_series(1, $2) returning id",
    [company.id, n]);
  // a table of many assignments, as the CRM's is, and statistics that know it (other
  // companies' rows, written without triggers: they are the table's size, nothing else)
  const other = await f.company();
  const otherUser = await f.user(other.id);
  const filler = await connected(t);
  await filler.query('set session_replication_role = replica');
  await filler.query(`with c as (insert into crm.contacts (company_id) select $1 from generate_series(1, 5000) returning id)
                      insert into crm.contact_assignments (contact_id, user_id) select id, $2 from c`, [other.id, otherUser.id]);
  await filler.query('analyze crm.contacts, crm.contact_assignments, crm.users');
  const client = await connected(t);
  // the plan a long session comes to: generic, which knows nothing of the arrays'
  // sizes (an import's connection, after a few small statements)
  await client.query('set plan_cache_mode = force_generic_plan');
  // every statement's plan, the triggers' included, as a notice to this client
  const plans: { 'Query Text': string; Plan: PlanNode }[] = [];
  client.on('notice', (notice) => {
    const json = notice.message?.match(/plan:\s*(\{[\s\S]*\})\s*$/)?.[1];
    if (json) plans.push(JSON.parse(json));
  });
  await client.query(`load 'auto_explain';
    set auto_explain.log_min_duration = 0; set auto_explain.log_analyze = on; set auto_explain.log_timing = off;
    set auto_explain.log_nested_statements = on; set auto_explain.log_format = json; set auto_explain.log_level = notice`);
  await client.query('insert into crm.contact_assignments (contact_id, user_id) select unnest($1::bigint[]), $2',
    [contacts.map((c) => c.id), user.id]);
  await client.query('reset auto_explain.log_min_duration');

  const question = plans.filter((p) => /with made as materialized/.test(p['Query Text']));
  t.is(question.length, 1);
  const read = cteRowsRead(question[0].Plan);
  // (each pair looked for among all the statement's pairs: about n² / 2 rows)
  t.true(read <= 10 * n, `the statement's pairs read ${read} times over for ${n} pairs`);
  t.is((await deliveriesOf(db().pool, [(await db().pool.query(
    'select id from webhooks.webhooks where company_id = $1', [company.id])).rows[0].id])).length, n);
});
