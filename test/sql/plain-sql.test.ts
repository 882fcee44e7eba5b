// Apps that write to the database directly fire webhooks too: here a psql session
// with no settings at all, as a DBA or a script would use.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const run = promisify(execFile);

test('a psql session with no settings fires contact.created with source "unknown"', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created', 'contact.updated'], fields: ['first_name'] });

  const psql = (sql: string) => run('psql', [db().url, '--no-psqlrc', '-v', 'ON_ERROR_STOP=1', '-c', sql]).catch((error) => {
    if (error.code === 'ENOENT') throw new Error('psql is missing: install the Debian package postgresql-client (.ci/run does)');
    throw error;
  });
  await psql(`insert into crm.contacts (company_id, first_name) values (${company.id}, 'Katherine')`);
  await psql(`update crm.contacts set first_name = 'Kate' where company_id = ${company.id}`);

  const rows = await deliveriesOf(db().pool, [hook.id]);
  t.deepEqual(rows.map((r) => [r.action, r.payload.data.contact.first_name, r.payload.data.source]), [
    ['contact.created', 'Katherine', 'unknown'],
    ['contact.updated', 'Kate', 'unknown'],
  ]);
});
