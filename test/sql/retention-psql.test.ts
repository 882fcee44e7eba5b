// docs/outbox.md schedules the retention's drops with psql alone, for a DBA without
// `npm start` or `npm run maintain`: run as written, it drops the expired days and
// records where the kept history starts (webhooks.kept_since(), which the page shows),
// as tools/maintain.ts does.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';
import { utcDay } from '../helpers/days.ts';

const db = useTestDatabase(test);

/** the shell lines docs/outbox.md gives for the drops, as written */
async function documentedDrops(): Promise<string> {
  const docs = await readFile(new URL('../../docs/outbox.md', import.meta.url), 'utf8');
  const block = /```sh\n(\s*# hourly, from the system's cron, as the owner:\n[\s\S]*?)\n\s*```/.exec(docs);
  if (!block) throw new Error("docs/outbox.md: no sh block of the hourly drops");
  return block[1]!;
}

test("the psql drops of docs/outbox.md drop an expired day and record where the kept history starts", async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await db().pool.query(`alter database ${db().name} set webhooks.retention = '5 days'`);
  const at = new Date(utcDay(-10).getTime() + 3_600_000);
  const { rows: [delivery] } = await db().pool.query(
    `insert into webhooks.deliveries (webhook_id, company_id, action, contact_id, payload, state, attempts, completed_at, created_at)
     values ($1, $2, 'contact.created', 1, '{}', 'succeeded', 1, $3, $3) returning id`,
    [webhook.id, company.id, at]);
  await db().pool.query('call webhooks.roll_up_report_counts()');

  await promisify(execFile)('sh', ['-c', await documentedDrops()], {
    env: { ...process.env, DATABASE_URL: db().url, PSQLRC: '/dev/null' },
  }).catch((error) => {
    if (error.code === 'ENOENT') throw new Error('psql is missing: install the Debian package postgresql-client (.ci/run does)');
    throw error;
  });

  const { rows: [gone] } = await db().pool.query('select count(*)::int as n from webhooks.deliveries where id = $1', [delivery.id]);
  t.is(gone.n, 0);
  const { rows: [kept] } = await db().pool.query('select webhooks.kept_since() as kept');
  t.deepEqual(kept.kept, utcDay(-9));
});
