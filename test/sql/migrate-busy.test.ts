// `npm run migrate` on a database in use: the relay claiming, the CRM writing
// contacts, the API reading history. Re-applying sql/ replaces views, triggers and
// policies, which takes strong locks one file after another; taken as it went, a
// claim or a contact write holding one of them and wanting the next deadlocked with
// it, and either the migrate failed (its table changes already committed, the
// engine's not) or the CRM's write did. Neither may fail.
import test from 'ava';
import { migrate } from '../../tools/migrate.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

test('migrates beside claims, contact writes and history reads: every one succeeds, and so does each migrate', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  let stop = false;
  const failed: string[] = [];
  let rounds = 0;
  const work = async () => {
    while (!stop) {
      try {
        await db().pool.query(
          `select * from webhooks_relay.claim_deliveries('relay-m', 10, interval '1 minute', 10, '{}', '{}', array[$1::bigint])`,
          [hook.id]);
        await db().pool.query('select count(*) from webhooks.fire_history where webhook_id = $1', [hook.id]);
        await db().pool.query(`insert into crm.contacts (company_id, first_name) values ($1, 'During')`, [company.id]);
        rounds++;
      } catch (error) {
        failed.push((error as Error).message);
      }
    }
  };
  const workers = Array.from({ length: 4 }, work);
  const migrated: string[] = [];
  try {
    for (let i = 0; i < 5; i++) {
      await migrate(db().url).then(() => migrated.push('ok'), (error: Error) => migrated.push(error.message));
    }
  } finally {
    stop = true;
    await Promise.all(workers);
  }
  t.deepEqual(migrated, ['ok', 'ok', 'ok', 'ok', 'ok']);
  t.deepEqual(failed, []);
  t.true(rounds > 0);
});
