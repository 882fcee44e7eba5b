// The setup form's pickers search a company's users and statuses as one types
// (webhooks.company_users_matching, company_statuses_matching, sql/55_report.sql):
// a search reads a few dozen rows of a brokerage of 20,000 users, where the whole list
// (company_users, every page of it) read all 20,000 for each page of a hundred, until
// it was read as a range of the same index (a page reads about its offset and itself). And the
// history of changes asks the names of the ids it shows alone (company_users_named).
import { readFile } from 'node:fs/promises';
import test from 'ava';
import type pg from 'pg';
import { API_PLANNER_SETTINGS } from '../../api/preset.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { tableReads } from '../helpers/plans.ts';

const db = useTestDatabase(test);

const USERS = 20_000;

/** A company of USERS users ("Broker 00001" … , broker00001@big.example) and as many statuses, beside a small one. */
async function brokerage() {
  const f = factories(db().pool);
  const big = await f.company('Big Brokerage');
  const small = await f.company('Small Office');
  // imported after the tables were last analyzed, as a brokerage moving in is: the
  // planner takes the company for one of none, and would sort its rows to take a few
  await db().pool.query('analyze crm.users, crm.statuses');
  await db().pool.query(
    `insert into crm.users (company_id, name, email)
     select $1, 'Broker ' || lpad(i::text, 5, '0'), 'broker' || lpad(i::text, 5, '0') || '@big.example'
     from generate_series(1, $2::int) i`, [big.id, USERS]);
  await db().pool.query(
    `insert into crm.statuses (company_id, name) select $1, 'Stage ' || lpad(i::text, 5, '0') from generate_series(1, $2::int) i`,
    [big.id, USERS]);
  return { f, big, small };
}

/** A statement of the company's viewer, as the API runs it (its planner settings), with the rows it read of a table (its index entries too). */
async function asViewer<T>(companyId: string, table: string, statement: (client: pg.PoolClient) => Promise<T>) {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    // (the statistics read as the owner: the API's roles may not name the CRM's tables)
    const before = await tableReads(client, table, { indexes: true });
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [companyId]);
    for (const [name, value] of Object.entries(API_PLANNER_SETTINGS)) await client.query('select set_config($1, $2, true)', [name, value]);
    const result = await statement(client);
    await client.query(`select set_config('role', 'none', true)`);
    return { result, read: (await tableReads(client, table, { indexes: true })) - before };
  } finally {
    await client.query('rollback');
    client.release();
  }
}

const usersMatching = (search: string | null) => (client: pg.PoolClient) =>
  client.query('select * from webhooks.company_users_matching($1)', [search]).then((r) => r.rows);

test('a search of 20,000 users reads a few dozen rows, by a prefix of the name or of the email, whatever the case', async (t) => {
  const { big } = await brokerage();
  const { rows: [{ most }] } = await db().pool.query('select webhooks.company_choices_up_to() as most');
  t.is(most, 20);

  // nothing typed: the first ones by name, and one more (more match)
  const first = await asViewer(big.id, 'crm.users', usersMatching(''));
  t.deepEqual(first.result.map((u) => u.name), Array.from({ length: 21 }, (_, i) => `Broker ${String(i + 1).padStart(5, '0')}`));
  t.true(first.read <= 4 * 21, `rows read: ${first.read}`);

  // a prefix of a name, in another case: 11 match (01230 to 01239 and 0123)
  const some = await asViewer(big.id, 'crm.users', usersMatching('bRoKeR 0123'));
  t.deepEqual(some.result.map((u) => u.name), Array.from({ length: 10 }, (_, i) => `Broker 0123${i}`));
  t.true(some.read <= 4 * 21, `rows read: ${some.read}`);

  // a prefix of an email
  const byEmail = await asViewer(big.id, 'crm.users', usersMatching('BROKER1999'));
  t.deepEqual(byEmail.result.map((u) => u.email), Array.from({ length: 10 }, (_, i) => `broker1999${i}@big.example`));

  // deep in the alphabet, and more than a search shows
  const late = await asViewer(big.id, 'crm.users', usersMatching('broker 19'));
  t.is(late.result.length, 21);
  t.is(late.result[0].name, 'Broker 19000');
  t.true(late.read <= 4 * 21, `rows read: ${late.read}`);

  // none
  const none = await asViewer(big.id, 'crm.users', usersMatching('zed'));
  t.deepEqual(none.result, []);
  t.true(none.read <= 4, `rows read: ${none.read}`);
});

test('the text typed is compared as it is: % and _ match themselves, and a name longer than the index holds is matched whole', async (t) => {
  const { f, big, small } = await brokerage();
  const percent = await f.user(big.id, '100% Realty');
  const underscore = await f.user(big.id, 'a_b Team');
  await f.user(big.id, 'axb Team');
  const long = await f.user(big.id, `${'L'.repeat(250)}ong`);
  await f.user(big.id, `${'L'.repeat(250)}ate`);
  const mine = await f.user(small.id, 'Broker Smith');

  t.deepEqual((await asViewer(big.id, 'crm.users', usersMatching('100%'))).result.map((u) => u.id), [percent.id]);
  t.deepEqual((await asViewer(big.id, 'crm.users', usersMatching('%'))).result, []);
  t.deepEqual((await asViewer(big.id, 'crm.users', usersMatching('a_b'))).result.map((u) => u.id), [underscore.id]);
  t.deepEqual((await asViewer(big.id, 'crm.users', usersMatching('_'))).result, []);
  t.deepEqual((await asViewer(big.id, 'crm.users', usersMatching(`${'l'.repeat(250)}on`))).result.map((u) => u.id), [long.id]);
  // another company's users are not found, nor the other's by this one
  t.deepEqual((await asViewer(small.id, 'crm.users', usersMatching('broker'))).result.map((u) => u.id), [mine.id]);
  t.false((await asViewer(big.id, 'crm.users', usersMatching('broker smith'))).result.some((u) => u.id === mine.id));
  // a caller with no company finds none
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('role', 'webhook_viewer', true)`);
    t.deepEqual((await client.query('select * from webhooks.company_users_matching($1)', ['a'])).rows, []);
  } finally {
    await client.query('rollback');
    client.release();
  }
});

/** A page of the whole list, as PostGraphile asks a function's connection (a limit and an offset around it). */
const page = (list: string, limit: number, offset: number) => (client: pg.PoolClient) =>
  client.query(`select * from webhooks.${list}() limit $1 offset $2`, [limit, offset]).then((r) => r.rows);

test('the whole lists (companyUsers, companyStatuses) read a page and its offset, not the company\'s every user or status', async (t) => {
  const { big, small } = await brokerage();
  // the first page: about a page (each row read is an index entry and its row)
  const first = await asViewer(big.id, 'crm.users', page('company_users', 101, 0));
  t.deepEqual(first.result.slice(0, 2).map((u) => u.name), ['Broker 00001', 'Broker 00002']);
  t.is(first.result.length, 101);
  t.true(first.read <= 2 * 101 + 4, `rows read for the first page: ${first.read}`);
  // deeper: the offset read too, as every list's (at most 10,000: PAGE_TOO_DEEP)
  // until it was a range of the index, each page read and sorted all 20,000
  const deep = await asViewer(big.id, 'crm.users', page('company_users', 101, 5000));
  t.is(deep.result[0].name, 'Broker 05001');
  t.true(deep.read <= 2 * 5101 + 4, `rows read for a page after 5,000: ${deep.read}`);
  const statuses = await asViewer(big.id, 'crm.statuses', page('company_statuses', 101, 0));
  t.deepEqual(statuses.result.slice(0, 2).map((s) => s.name), ['Stage 00001', 'Stage 00002']);
  t.true(statuses.read <= 2 * 101 + 4, `rows read for the first page of statuses: ${statuses.read}`);
  // the company's own alone, and by name whatever the case
  const other = await asViewer(small.id, 'crm.users', page('company_users', 101, 0));
  t.deepEqual(other.result, []);
});

test('a search finds a prefix of any of a name\'s words too ("Smith" finds "Anna Smith", the fifth word and later too), and still reads a bounded number of rows of 20,000', async (t) => {
  const { f, big } = await brokerage();
  const anna = await f.user(big.id, 'Anna Smith');
  const carl = await f.user(big.id, 'Smith Carl');
  const bob = await f.user(big.id, 'Bob  Smithers Jones');
  const maria = await f.user(big.id, 'Ana Maria de Smith');
  const far = await f.user(big.id, 'Ana Maria de la Smith');
  const ids = (rows: { id: string }[]) => rows.map((u) => u.id).sort();

  // a word's prefix, whatever its place, and whatever the case
  const smith = await asViewer(big.id, 'crm.users', usersMatching('SMITH'));
  t.deepEqual(ids(smith.result), [anna.id, bob.id, carl.id, maria.id, far.id].sort());
  // from that word on, several words
  t.deepEqual(ids((await asViewer(big.id, 'crm.users', usersMatching('smithers jo'))).result), [bob.id]);
  t.deepEqual(ids((await asViewer(big.id, 'crm.users', usersMatching('jones'))).result), [bob.id]);
  // a word in the middle of a word is not a word
  t.deepEqual((await asViewer(big.id, 'crm.users', usersMatching('mith'))).result, []);

  // 20,000 second words ("Broker 01230"): at most a search's rows read from each range
  const numbers = await asViewer(big.id, 'crm.users', usersMatching('0123'));
  t.deepEqual(numbers.result.map((u) => u.name), Array.from({ length: 10 }, (_, i) => `Broker 0123${i}`));
  t.true(numbers.read <= 2 * 5 * 21, `rows read: ${numbers.read}`);
  const many = await asViewer(big.id, 'crm.users', usersMatching('1'));
  t.is(many.result.length, 21);
  t.true(many.read <= 2 * 5 * 21, `rows read: ${many.read}`);

  const statuses = await asViewer(big.id, 'crm.statuses', (client) =>
    client.query('select * from webhooks.company_statuses_matching($1)', ['000']).then((r) => r.rows));
  t.deepEqual(statuses.result.map((s) => s.name), Array.from({ length: 21 }, (_, i) => `Stage ${String(i + 1).padStart(5, '0')}`));
  t.true(statuses.read <= 2 * 4 * 21, `rows read: ${statuses.read}`);
});

test('a role of the CRM\'s that may write its users and statuses still may: the trigger that keeps the names\' words runs as its owner', async (t) => {
  const { big } = await brokerage();
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    // (a role of this transaction alone)
    await client.query('create role crm_writer_for_a_test');
    await client.query('grant usage on schema crm to crm_writer_for_a_test');
    await client.query('grant insert, update on crm.users, crm.statuses to crm_writer_for_a_test');
    await client.query('set local role crm_writer_for_a_test');
    await client.query(`insert into crm.users (company_id, name, email) values ($1, 'Anna Smith', 'anna@big.example')`, [big.id]);
    await client.query(`insert into crm.statuses (company_id, name) values ($1, 'Thank You Note')`, [big.id]);
    t.pass();
  } finally {
    await client.query('rollback');
    client.release();
  }
});

test('a search of 20,000 statuses reads a few dozen rows', async (t) => {
  const { big, small } = await brokerage();
  const matching = (search: string) => (client: pg.PoolClient) =>
    client.query('select * from webhooks.company_statuses_matching($1)', [search]).then((r) => r.rows);
  const some = await asViewer(big.id, 'crm.statuses', matching('stage 0004'));
  t.deepEqual(some.result.map((s) => s.name), Array.from({ length: 10 }, (_, i) => `Stage 0004${i}`));
  t.true(some.read <= 2 * 21, `rows read: ${some.read}`);
  const first = await asViewer(big.id, 'crm.statuses', matching(''));
  t.is(first.result.length, 21);
  t.true(first.read <= 2 * 21, `rows read: ${first.read}`);
  t.deepEqual((await asViewer(small.id, 'crm.statuses', matching(''))).result, []);
});

test('the names of the ids a page of the history of changes shows: one probe each, the company\'s alone, at most 1,000 ids', async (t) => {
  const { f, big, small } = await brokerage();
  const theirs = await f.user(small.id, 'Not Yours');
  const { rows: ids } = await db().pool.query(
    `select id from crm.users where company_id = $1 and name in ('Broker 00007', 'Broker 15000') order by id`, [big.id]);
  const named = await asViewer(big.id, 'crm.users', (client) =>
    client.query('select * from webhooks.company_users_named($1)', [[...ids.map((r) => r.id), theirs.id, '999999999']]).then((r) => r.rows));
  t.deepEqual(named.result.map((u) => u.name), ['Broker 00007', 'Broker 15000']);
  t.true(named.read <= 2 * 4, `rows read: ${named.read}`);
  const { rows: [{ first }] } = await db().pool.query(
    'select array(select id from crm.statuses where company_id = $1 order by id limit 3) as first', [big.id]);
  const statuses = await asViewer(big.id, 'crm.statuses', (client) =>
    client.query('select * from webhooks.company_statuses_named($1)', [first]).then((r) => r.rows));
  t.deepEqual(statuses.result.map((s) => s.name), ['Stage 00001', 'Stage 00002', 'Stage 00003']);

  const refused = await db().pool.query('select * from webhooks.company_users_named(array(select generate_series(1, 1001)::bigint))').then(
    () => null, (error) => ({ code: error.code, constraint: error.constraint, column: error.column }));
  t.deepEqual(refused, { code: '22023', constraint: 'names_asked_max', column: 'ids' });
});

/** The entries a statement read of the index of the names' words (webhooks_private.crm_name_words). */
async function wordEntriesRead(companyId: string, search: string) {
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    const before = await tableReads(client, 'webhooks_private.crm_name_words', { indexes: true });
    await client.query(`select set_config('role', 'webhook_viewer', true), set_config('jwt.claims.company_id', $1, true)`, [companyId]);
    for (const [name, value] of Object.entries(API_PLANNER_SETTINGS)) await client.query('select set_config($1, $2, true)', [name, value]);
    const { rows } = await client.query('select * from webhooks.company_users_matching($1)', [search]);
    await client.query(`select set_config('role', 'none', true)`);
    return { rows, read: (await tableReads(client, 'webhooks_private.crm_name_words', { indexes: true })) - before };
  } finally {
    await client.query('rollback');
    client.release();
  }
}

test('a search finds a word that punctuation starts ("Brien" finds "O\'Brien", "Jones" "Smith-Jones", "doe" "jane.doe") and any word of a long name, kept as names change', async (t) => {
  const { f, big, small } = await brokerage();
  const cruz = await f.user(big.id, 'Mary Ann de la Cruz');
  const brien = await f.user(big.id, "Conan O'Brien");
  const curly = await f.user(big.id, 'Sinead O\u2019Connor');
  const jones = await f.user(big.id, 'Anna Smith-Jones');
  const jane = await f.user(big.id, 'jane.doe');
  const under = await f.user(big.id, 'ops_team (night)');
  const won = await f.status(big.id, 'Closed/Won');
  const found = async (companyId: string, search: string) =>
    (await asViewer(companyId, 'crm.users', usersMatching(search))).result.map((u) => u.id).sort();

  t.deepEqual(await found(big.id, 'Cruz'), [cruz.id]);
  t.deepEqual(await found(big.id, 'la cr'), [cruz.id]);
  t.deepEqual(await found(big.id, 'brien'), [brien.id]);
  t.deepEqual(await found(big.id, 'connor'), [curly.id]);
  t.deepEqual(await found(big.id, 'JONES'), [jones.id]);
  t.deepEqual(await found(big.id, 'smith-j'), [jones.id]);
  t.deepEqual(await found(big.id, 'doe'), [jane.id]);
  t.deepEqual(await found(big.id, 'team (n'), [under.id]);
  t.deepEqual(await found(big.id, 'night'), [under.id]);
  t.deepEqual((await asViewer(big.id, 'crm.statuses', (client) =>
    client.query('select * from webhooks.company_statuses_matching($1)', ['won']).then((r) => r.rows))).result.map((s) => s.id), [won.id]);
  // the middle of a word is not a word's start
  t.deepEqual(await found(big.id, 'rien'), []);
  // another company's are not found
  t.deepEqual(await found(small.id, 'cruz'), []);

  // a rename, a move to another company and a delete are followed
  await db().pool.query(`update crm.users set name = 'Mary Ann de la Vega' where id = $1`, [cruz.id]);
  t.deepEqual(await found(big.id, 'cruz'), []);
  t.deepEqual(await found(big.id, 'vega'), [cruz.id]);
  await db().pool.query('update crm.users set company_id = $2 where id = $1', [jones.id, small.id]);
  t.deepEqual(await found(big.id, 'jones'), []);
  t.deepEqual(await found(small.id, 'jones'), [jones.id]);
  await db().pool.query('delete from crm.users where id = $1', [brien.id]);
  t.deepEqual(await found(big.id, 'brien'), []);
  await db().pool.query('delete from crm.statuses where id = $1', [won.id]);
  const { rows: [{ left }] } = await db().pool.query(
    `select count(*)::int as left from webhooks_private.crm_name_words where (kind, id) in (('u', $1), ('s', $2))`, [brien.id, won.id]);
  t.is(left, 0);
});

test('a name of many words that match counts once: a search still shows as many users as it may, and reads its own company\'s entries alone', async (t) => {
  const { f, big, small } = await brokerage();
  // 100 words of one name that start with "a", and 30 users with one each
  const many = await f.user(big.id, `X ${'a '.repeat(100)}`.trim());
  for (let i = 0; i < 30; i++) await f.user(big.id, `Y${String(i).padStart(2, '0')} Ab`);
  const { rows, read } = await wordEntriesRead(big.id, 'a');
  t.is(rows.length, 21);
  t.true(rows.some((u) => u.id === many.id));
  t.true(read <= 100 + 2 * 21, `entries read: ${read}`);

  // the small company reads none of the 20,000 words of the big one's
  await f.user(small.id, 'Ann Broker');
  const theirs = await wordEntriesRead(small.id, '0');
  t.deepEqual(theirs.rows, []);
  t.true(theirs.read <= 1, `entries read: ${theirs.read}`);
  const mine = await wordEntriesRead(small.id, 'broker');
  t.deepEqual(mine.rows.map((u) => u.name), ['Ann Broker']);
  t.true(mine.read <= 2, `entries read: ${mine.read}`);
});

// (serial: its migration takes crm.users and crm.statuses for its triggers, one after
// the other, and the file's other tests, writing both at the same time, deadlocked
// with it in a fresh-clone run)
test.serial('migration 0069 fills the words of the users and statuses there are, and may run again', async (t) => {
  const { f, big } = await brokerage();
  const cruz = await f.user(big.id, 'Mary Ann de la Cruz');
  const won = await f.status(big.id, 'Closed/Won');
  // (the company's alone: the file's other tests write theirs)
  const words = `select count(*)::int as n from webhooks_private.crm_name_words where company_id = $1`;
  const { rows: [{ n: before }] } = await db().pool.query(words, [big.id]);
  t.is(before, 2 * USERS + 4 + 1, 'a word of each user and status ("Broker 00001"), ann, de, la, cruz, won');
  // as before the migration: the company's users and statuses without their words
  await db().pool.query('delete from webhooks_private.crm_name_words where company_id = $1', [big.id]);
  t.deepEqual((await asViewer(big.id, 'crm.users', usersMatching('cruz'))).result, []);

  const text = await readFile(new URL('../../migrations/0069_crm_name_words.sql', import.meta.url), 'utf8');
  await db().pool.query(text);
  await db().pool.query(text);

  const { rows: [{ n: after }] } = await db().pool.query(words, [big.id]);
  t.is(after, before, 'every word again, once');
  t.deepEqual((await asViewer(big.id, 'crm.users', usersMatching('cruz'))).result.map((u) => u.id), [cruz.id]);
  t.deepEqual((await asViewer(big.id, 'crm.statuses', (client) =>
    client.query('select * from webhooks.company_statuses_matching($1)', ['won']).then((r) => r.rows))).result.map((s) => s.id), [won.id]);
});

/** The shared buffers a statement read (hit or read in), its plan's, as EXPLAIN (ANALYZE, BUFFERS) counts them. */
async function buffersRead(statement: string, values: unknown[]) {
  const { rows: [row] } = await db().pool.query(`explain (analyze, buffers, format json) ${statement}`, values);
  const plan = row['QUERY PLAN'][0].Plan;
  return plan['Shared Hit Blocks'] + plan['Shared Read Blocks'] as number;
}

// (serial: alone, before the file's other tests, each of which writes 40,000 rows)
test.serial('a name of 10 MB (the CRM\'s names have no bound) costs its write the words of its first 200 characters, not a pass over all of it for each word', async (t) => {
  const { small } = await brokerage();
  const huge = await db().pool.query(
    `insert into crm.users (company_id, name) values ($1, repeat('a ', 100) || repeat('x', 10000000)) returning id`, [small.id]);
  const { rows: [{ n }] } = await db().pool.query(
    `select count(*)::int as n from webhooks_private.crm_name_words where company_id = $1 and id = $2`, [small.id, huge.rows[0].id]);
  t.is(n, 99, 'each word that starts in the first 200 characters, but the first');
  // The passes over the name its words took, counted in the pages of it they read, not
  // in the time they took: the name as stored (compressed, out of line) is read again by
  // each function that takes it, in whole or its start alone (left), so that lowering it
  // whole for each word (12 to 19 s a write, 0.25 s without the words) read 1,603 pages
  // where the whole name is 19, as the write lowered its copy each time; its start for
  // each word reads about 2 pages of it.
  const id = huge.rows[0].id;
  const whole = await buffersRead('select md5(u.name) from crm.users u where u.id = $1', [id]);
  const words = await buffersRead('select k.key from crm.users u cross join lateral webhooks_private.name_words(u.name) k where u.id = $1', [id]);
  t.true(whole > 10, `the name is stored out of line: ${whole} pages read in whole`);
  t.true(words < n * whole / 4, `its ${n} words read ${words} pages, less than a quarter of the whole name (${whole}) each`);
});

test('a search answers names and emails by their first 200 characters: 21 users of 4 MB names and emails answered 168 MB', async (t) => {
  const { small } = await brokerage();
  await db().pool.query(
    `insert into crm.users (company_id, name, email)
     select $1, 'A' || i || repeat('x', 4000000), 'a' || i || repeat('y', 4000000) || '@example.com' from generate_series(1, 21) i`, [small.id]);
  await db().pool.query(
    `insert into crm.statuses (company_id, name) select $1, 'A' || i || repeat('x', 4000000) from generate_series(1, 21) i`, [small.id]);
  const users = await asViewer(small.id, 'crm.users', usersMatching('a'));
  const statuses = await asViewer(small.id, 'crm.statuses', (client) =>
    client.query('select * from webhooks.company_statuses_matching($1)', ['a']).then((r) => r.rows));
  t.is(users.result.length, 21);
  t.is(statuses.result.length, 21);
  t.true(users.result.every((u) => u.name.length === 200 && u.name.startsWith('A') && u.email.length === 200), 'the first 200 characters');
  t.true(statuses.result.every((s) => s.name.length === 200));
});
