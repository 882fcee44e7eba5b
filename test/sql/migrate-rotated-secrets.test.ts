// Migration 0034: the one previous secret a webhook kept becomes a row of
// webhooks_private.rotated_secrets with its own expiry, while it is still valid; the
// old columns go.
import test from 'ava';
import { migrate } from '../../tools/migrate.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const MIGRATION = '0034_rotated_secrets';

test.serial('a previous secret still valid moves with its expiry, an expired one does not, and the old columns go', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const valid = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const expired = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  await f.webhook({ companyId: company.id, actions: ['contact.created'] }); // no previous secret
  // the table as it was before 0034, the previous secrets where they were kept
  await db().pool.query(`
    drop table webhooks_private.rotated_secrets;
    alter table webhooks_private.webhook_secrets
      add column previous_secret text check (previous_secret like 'whsec_%'),
      add column previous_expires_at timestamptz,
      add constraint webhook_secrets_previous_pair check ((previous_secret is null) = (previous_expires_at is null))`);
  const { rows: [{ until }] } = await db().pool.query(`select now() + interval '5 hours' as until`);
  await db().pool.query(
    `update webhooks_private.webhook_secrets
     set previous_secret = 'whsec_' || webhook_id, previous_expires_at = case when webhook_id = $1 then $3::timestamptz else now() - interval '1 hour' end
     where webhook_id in ($1, $2)`, [valid.id, expired.id, until]);
  const { rows: secretsBefore } = await db().pool.query('select webhook_id, secret from webhooks_private.webhook_secrets order by webhook_id');

  await db().pool.query('delete from webhooks_private.migrations where name >= $1', [MIGRATION]);
  await migrate(db().url);

  const { rows: moved } = await db().pool.query('select webhook_id, secret, expires_at from webhooks_private.rotated_secrets');
  t.deepEqual(moved, [{ webhook_id: valid.id, secret: `whsec_${valid.id}`, expires_at: until }]);
  t.deepEqual((await db().pool.query('select webhook_id, secret from webhooks_private.webhook_secrets order by webhook_id')).rows,
    secretsBefore, 'the current secrets as they were');
  const { rows: columns } = await db().pool.query(
    `select attname from pg_attribute where attrelid = 'webhooks_private.webhook_secrets'::regclass and attnum > 0 and not attisdropped
     order by attnum`);
  t.deepEqual(columns.map((c) => c.attname), ['webhook_id', 'secret']);
});
