// NOTIFY is a wake-up for a sleeping relay, sent on commit: at most one per
// transaction, none when nothing was written, none after a rollback, and none while
// every relay is awake (sql/20_wakeup.sql).
import test from 'ava';
import pg from 'pg';
import { CHANNEL, LOCK_CLASS, LOCK_KEYS, WEBHOOK_CHANGED_NOTICE } from '../../relay/engine-names.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { relayConnection, sentinel } from '../helpers/wake.ts';
import { factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

async function hookFor(action: string) {
  const f = factories(db().pool);
  const company = await f.company();
  await f.webhook({ companyId: company.id, actions: [action] });
  return { f, company };
}

test.serial('a relay asleep: one notification for a transaction that writes many deliveries, after commit', async (t) => {
  const { f, company } = await hookFor('contact.created');
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const relay = await relayConnection(db().url);
  t.true(await relay.goingIdle());
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query("insert into crm.contacts (company_id, first_name) select $1, 'n' || g from generate_series(1, 3) g", [company.id]);
    await client.query('insert into crm.contacts (company_id, first_name) values ($1, $2)', [company.id, 'last']);
    const { rows } = await client.query('select count(*)::int as n from webhooks.deliveries where company_id = $1', [company.id]);
    t.is(rows[0].n, 8);
    t.is(relay.pending(), 0, 'nothing before commit');
    await client.query('commit');
  } finally {
    client.release();
  }
  await sentinel(db().pool, 'end');
  t.deepEqual([(await relay.next()).payload, (await relay.next()).payload], ['', 'end']);
  await relay.close();
});

test.serial('a relay asleep: no notification after a rollback, nor for a change no webhook wants', async (t) => {
  const { f, company } = await hookFor('contact.created');
  const relay = await relayConnection(db().url);
  t.true(await relay.goingIdle());
  const client = await db().pool.connect();
  try {
    await client.query('begin');
    await client.query('insert into crm.contacts (company_id) values ($1)', [company.id]);
    await client.query('rollback');
  } finally {
    client.release();
  }
  await f.contact((await f.company()).id); // no webhook of this company listens
  await sentinel(db().pool, 'end');
  t.is((await relay.next()).payload, 'end');
  await relay.close();
});

test.serial('every relay awake: deliveries are written without a notification', async (t) => {
  const { f, company } = await hookFor('contact.created');
  const relay = await relayConnection(db().url);
  t.true(await relay.goingIdle());
  await relay.awake();
  await f.contact(company.id);
  await sentinel(db().pool, 'end');
  t.is((await relay.next()).payload, 'end');
  const { rows } = await db().pool.query('select count(*)::int as n from webhooks.deliveries where company_id = $1', [company.id]);
  t.is(rows[0].n, 1);
  await relay.close();
});

test.serial('a relay may not fall asleep while a transaction that skipped its NOTIFY is open', async (t) => {
  const { company } = await hookFor('contact.created');
  const relay = await relayConnection(db().url);
  const writer = await db().pool.connect();
  try {
    await writer.query('begin');
    await writer.query('insert into crm.contacts (company_id) values ($1)', [company.id]); // relay awake: no NOTIFY
    t.false(await relay.goingIdle(), 'the open transaction\'s delivery is not visible yet: look again');
    t.false(await relay.capturesDone(), 'asked again while it stays open');
    await writer.query('commit');
  } finally {
    writer.release();
  }
  t.true(await relay.capturesDone(), 'ended: one more claim sees its delivery');
  t.true(await relay.goingIdle(), 'and going idle anew says the same');
  await relay.close();
});

test.serial('waking up gives relay_idle back once, and writes no warning to the log', async (t) => {
  const client = new pg.Client({ connectionString: db().url });
  await client.connect();
  const notices: string[] = [];
  client.on('notice', (notice) => notices.push(`${notice.severity}: ${notice.message}`));
  try {
    for (let i = 0; i < 3; i++) {
      t.true((await client.query('select webhooks_relay.going_idle() as safe')).rows[0].safe);
      await client.query('select webhooks_relay.awake()');
    }
    const { rows } = await client.query(
      `select count(*)::int as n from pg_locks where locktype = 'advisory' and pid = pg_backend_pid() and classid = $1 and objid = $2`,
      [LOCK_CLASS, LOCK_KEYS.relayIdle],
    );
    t.is(rows[0].n, 0, 'relay_idle is not held once awake');
    t.deepEqual(notices, [], 'nothing for the server log');
  } finally {
    await client.end();
  }
});

test('TypeScript names the channel and the lock keys as the engine defines them', async (t) => {
  const { rows: [row] } = await db().pool.query(
    `select webhooks_private.notify_channel() as channel, webhooks_private.lock_space() as class,
            webhooks_private.capturing_lock() as capturing, webhooks_private.relay_idle_lock() as relay_idle,
            webhooks_private.webhook_changed_notice() as changed`);
  t.deepEqual(row, { channel: CHANNEL, class: LOCK_CLASS, capturing: LOCK_KEYS.capturing, relay_idle: LOCK_KEYS.relayIdle, changed: WEBHOOK_CHANGED_NOTICE });
});

test.serial('a webhook whose URL changes, that is disabled or deleted, or whose secret is rotated is named to every relay; other edits and enabling are not', async (t) => {
  const f = factories(db().pool);
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const relay = await relayConnection(db().url);
  try {
    const edits: Array<[string, string]> = [
      ['a new name', `update webhooks.webhooks set name = 'Renamed' where id = $1`],
      ['a new URL', `update webhooks.webhooks set url = 'https://moved.example.com/in' where id = $1`],
      ['disabled', `update webhooks.webhooks set enabled = false, disabled_at = now(), disabled_by = 'admin' where id = $1`],
      ['enabled', `update webhooks.webhooks set enabled = true, disabled_at = null, disabled_by = null where id = $1`],
      ['a rotated secret', `update webhooks.webhooks set secret_rotated_at = clock_timestamp() where id = $1`],
      ['deleted', `delete from webhooks.webhooks where id = $1`],
    ];
    const heard: string[] = [];
    for (const [edit, sql] of edits) {
      await db().pool.query(sql, [hook.id]);
      await sentinel(db().pool, `after ${edit}`);
      for (let n = await relay.next(); n.payload !== `after ${edit}`; n = await relay.next()) heard.push(`${edit}: ${n.payload}`);
    }
    const named = `${WEBHOOK_CHANGED_NOTICE}${hook.id}`;
    t.deepEqual(heard, [`a new URL: ${named}`, `disabled: ${named}`, `a rotated secret: ${named}`, `deleted: ${named}`]);
  } finally {
    await relay.close();
  }
});
