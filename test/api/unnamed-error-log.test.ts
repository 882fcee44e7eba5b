// An error the API does not name (a database refusing in a way no rule of api/errors.ts
// knows: a disk full, a DBA's trigger) is answered "An error occurred (logged with
// hash …, id …)" and logged as one JSON line of the API's log, its first of a minute
// only: the same error asked again and again (one company's script, at its 20 requests
// a second) is counted in the next line, not written each time. It was PostGraphile's
// own log: console.error, outside the JSON log, some 30 lines of text and stacks a
// request, without bound.
import test from 'ava';
import { GraphQLError } from 'postgraphile/graphql';
import { UNNAMED_ERROR_LINES_PER_MINUTE, UNNAMED_ERROR_LOG_EVERY_MS, UnnamedErrors } from '../../api/errors.ts';
import { startTestApi } from '../helpers/api.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { logLines } from '../helpers/lines.ts';

const db = useTestDatabase(test);

const RENAME = 'mutation($id: BigInt!, $name: String) { updateWebhook(input: { id: $id, name: $name }) { result { id } } }';

test.serial('one unnamed error asked 50 times is logged once, as one JSON line naming its hash, and nothing goes to console.error', async (t) => {
  const { lines, log } = logLines();
  const api = await startTestApi(db().url, { log, limits: { companyRequestsPerSecond: 1_000, companyRequestBurst: 1_000 } });
  t.teardown(() => api.stop());
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  // the database refuses every change of a webhook with a SQLSTATE the API has no name for
  await db().pool.query(`
    create function public.refuse_as_disk_full() returns trigger language plpgsql as $$
    begin raise exception using errcode = 'disk_full', message = 'could not extend file: No space left on device'; end $$;
    create trigger refuse_as_disk_full before update on webhooks.webhooks for each row execute function public.refuse_as_disk_full()`);
  t.teardown(() => db().pool.query('drop trigger refuse_as_disk_full on webhooks.webhooks; drop function public.refuse_as_disk_full()'));

  const consoleErrors: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => void consoleErrors.push(args);
  t.teardown(() => { console.error = consoleError; });

  const token = await api.token(company.id);
  const hashes = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const response = await api.gql(token, RENAME, { id: hook.id, name: `Hook ${i}` });
    t.is(response.errors?.length, 1);
    const match = /^An error occurred \(logged with hash: '([\w+/=-]+)', id: '(\w+)'\)$/.exec(response.errors![0].message);
    t.truthy(match, response.errors![0].message);
    if (match) hashes.add(match[1]);
  }
  console.error = consoleError;
  t.is(hashes.size, 1, 'the same error, the same hash');
  const [hash] = hashes;

  t.deepEqual(consoleErrors, [], 'nothing written outside the JSON log');
  const logged = lines.filter((line) => line.includes(hash));
  t.is(logged.length, 1, logged.join('\n'));
  const entry = JSON.parse(logged[0]);
  t.like(entry, { level: 50, hash, repeated: 0 });
  t.like(entry.err, { code: '53100', message: 'could not extend file: No space left on device' });
  t.true(logged[0].length < 4_000, `${logged[0].length} characters`);
});

test('an unnamed error answered again within a minute is counted in its next line; lines of them all are at most UNNAMED_ERROR_LINES_PER_MINUTE a minute, those past it counted too', (t) => {
  const { lines, log } = logLines();
  let now = 0;
  const unnamed = new UnnamedErrors(log, () => now);
  const failure = (text: string) => new GraphQLError(text, { path: ['webhooks'], originalError: new Error(text) });

  for (let i = 0; i < 10; i++) t.regex(unnamed.answer(failure('the same')).message, /^An error occurred \(logged with hash: '[\w-]+', id: '\w+'\)$/);
  t.is(lines.length, 1);
  now += UNNAMED_ERROR_LOG_EVERY_MS - 1;
  unnamed.answer(failure('the same'));
  t.is(lines.length, 1, 'still within its minute');
  now += 1;
  unnamed.answer(failure('the same'));
  t.is(lines.length, 2);
  t.like(JSON.parse(lines[1]), { level: 50, repeated: 10, unlogged: 0, path: ['webhooks'], err: { message: 'the same' } });

  // an error whose text differs at each request (the request's values in it)
  now += 60_000;
  lines.length = 0;
  for (let i = 0; i < UNNAMED_ERROR_LINES_PER_MINUTE + 40; i++) unnamed.answer(failure(`id ${i} failed`));
  t.is(lines.length, UNNAMED_ERROR_LINES_PER_MINUTE);
  now += 60_000;
  unnamed.answer(failure('another'));
  t.is(lines.length, UNNAMED_ERROR_LINES_PER_MINUTE + 1);
  t.like(JSON.parse(lines.at(-1)!), { repeated: 0, unlogged: 40, err: { message: 'another' } });
});
