// Migration 0036: a signing secret has the form webhooks_private.new_secret() makes,
// "whsec_" and the base64 of 32 bytes, in both secret tables. The check was only
// like 'whsec_%', which let "whsec_" alone through: a secret that cannot sign.
import test from 'ava';
import { migrate } from '../../tools/migrate.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);
const MIGRATION = '0036_secret_form';

/** A secret of the form the engine makes: whsec_ and the base64 of 32 bytes. */
const GOOD = `whsec_${Buffer.alloc(32, 1).toString('base64')}`;
const BAD = [
  'whsec_',
  'whsec-not-base64',
  'whsec_AAAA',
  `whsec_${Buffer.alloc(31, 1).toString('base64')}`,
  `whsec_${Buffer.alloc(33, 1).toString('base64')}`,
  `whsec_${Buffer.alloc(32, 1).toString('base64url')}`,
  `whsec_${Buffer.alloc(32, 1).toString('base64').slice(0, -1)}`,
  // 32 bytes' length, but no base64 an encoder writes: its last character carries bits past them
  `whsec_${Buffer.alloc(32, 1).toString('base64').slice(0, -2)}F=`,
  `whsec_${Buffer.alloc(32, 1).toString('base64')}\n`,
  ` ${GOOD}`,
];

async function webhookOf() {
  const f = factories(db().pool);
  const company = await f.company();
  return f.webhook({ companyId: company.id, actions: ['contact.created'] });
}

test('a secret not of the engine\'s form is refused on insert and on update, in both tables, naming the check', async (t) => {
  const hook = await webhookOf();
  const other = await webhookOf();
  const { rows: [{ secret: before }] } = await db().pool.query(
    'select secret from webhooks_private.webhook_secrets where webhook_id = $1', [hook.id]);
  t.regex(before, /^whsec_[A-Za-z0-9+/]{43}=$/, 'what the engine makes passes');
  for (const secret of BAD) {
    const update = await t.throwsAsync(db().pool.query(
      'update webhooks_private.webhook_secrets set secret = $2 where webhook_id = $1', [hook.id, secret])) as any;
    t.like(update, { code: '23514', constraint: 'webhook_secrets_secret_form' }, JSON.stringify(secret));
    const rotated = await t.throwsAsync(db().pool.query(
      `insert into webhooks_private.rotated_secrets (webhook_id, secret, expires_at) values ($1, $2, now() + interval '1 hour')`,
      [hook.id, secret])) as any;
    t.like(rotated, { code: '23514', constraint: 'rotated_secrets_secret_form' }, JSON.stringify(secret));
  }
  await db().pool.query('delete from webhooks_private.webhook_secrets where webhook_id = $1', [other.id]);
  const insert = await t.throwsAsync(db().pool.query(
    'insert into webhooks_private.webhook_secrets (webhook_id, secret) values ($1, $2)', [other.id, 'whsec_'])) as any;
  t.like(insert, { code: '23514', constraint: 'webhook_secrets_secret_form' });

  const { rows: [{ secret: after }] } = await db().pool.query(
    'select secret from webhooks_private.webhook_secrets where webhook_id = $1', [hook.id]);
  t.is(after, before, 'nothing was changed');
  const { rows: [{ n }] } = await db().pool.query(
    'select count(*)::int as n from webhooks_private.rotated_secrets where webhook_id = $1', [hook.id]);
  t.is(n, 0, 'nothing was stored');
  // one of the form, written by hand: accepted
  await db().pool.query('update webhooks_private.webhook_secrets set secret = $2 where webhook_id = $1', [hook.id, GOOD]);
  await db().pool.query('insert into webhooks_private.webhook_secrets (webhook_id, secret) values ($1, $2)', [other.id, GOOD]);
});

test.serial('migrating a database holding a secret written by hand keeps it and checks every write from then on; rotating replaces it and does not keep it', async (t) => {
  const hook = await webhookOf();
  const fine = await webhookOf();
  // the tables as they were before 0036, with a secret that cannot sign
  await db().pool.query(`
    alter table webhooks_private.webhook_secrets drop constraint webhook_secrets_secret_form,
      add constraint webhook_secrets_secret_check check (secret like 'whsec_%');
    alter table webhooks_private.rotated_secrets drop constraint rotated_secrets_secret_form,
      add constraint rotated_secrets_secret_check check (secret like 'whsec_%')`);
  await db().pool.query(`update webhooks_private.webhook_secrets set secret = 'whsec_' where webhook_id = $1`, [hook.id]);
  await db().pool.query(
    `insert into webhooks_private.rotated_secrets (webhook_id, secret, expires_at) values ($1, 'whsec_x', now() + interval '1 hour')`,
    [fine.id]);

  await db().pool.query('delete from webhooks_private.migrations where name >= $1', [MIGRATION]);
  await migrate(db().url);

  const { rows: checks } = await db().pool.query(
    `select conrelid::regclass::text as on_table, conname, convalidated from pg_constraint
     where conrelid in ('webhooks_private.webhook_secrets'::regclass, 'webhooks_private.rotated_secrets'::regclass) and contype = 'c'
     order by conname`);
  t.deepEqual(checks, [
    { on_table: 'webhooks_private.rotated_secrets', conname: 'rotated_secrets_secret_form', convalidated: false },
    { on_table: 'webhooks_private.webhook_secrets', conname: 'webhook_secrets_secret_form', convalidated: false },
  ], 'the loose checks gone, the strict ones in their place, not validated against the rows before');
  const { rows: kept } = await db().pool.query(
    `select webhook_id, secret from webhooks_private.webhook_secrets where webhook_id = $1
     union all select webhook_id, secret from webhooks_private.rotated_secrets`, [hook.id]);
  t.deepEqual(kept, [{ webhook_id: hook.id, secret: 'whsec_' }, { webhook_id: fine.id, secret: 'whsec_x' }], 'the rows before, as they were');
  const refused = await t.throwsAsync(db().pool.query(
    `update webhooks_private.webhook_secrets set secret = 'whsec_' || webhook_id where webhook_id = $1`, [fine.id])) as any;
  t.is(refused.constraint, 'webhook_secrets_secret_form');

  // rotating is how a bad secret is replaced: the new one is of the form, and the bad
  // one is not kept valid beside it (it cannot sign, and the check refuses it)
  const { rows: [rotated] } = await db().pool.query('select secret from webhooks.rotate_webhook_secret($1)', [hook.id]);
  t.regex(rotated.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  const { rows: [now] } = await db().pool.query(
    `select s.secret, (select count(*)::int from webhooks_private.rotated_secrets r where r.webhook_id = s.webhook_id) as rotated_out
     from webhooks_private.webhook_secrets s where s.webhook_id = $1`, [hook.id]);
  t.deepEqual(now, { secret: rotated.secret, rotated_out: 0 });
  // a good one is kept valid as ever
  const { rows: [again] } = await db().pool.query('select secret from webhooks.rotate_webhook_secret($1)', [hook.id]);
  const { rows: valid } = await db().pool.query('select secret from webhooks_private.rotated_secrets where webhook_id = $1', [hook.id]);
  t.deepEqual(valid, [{ secret: rotated.secret }]);
  t.not(again.secret, rotated.secret);
});
