// One step of every running backfill (webhooks_relay.backfill_step, sql/35_backfill.sql)
// serves at most p_limit of them. Those that can do nothing now (a disabled webhook's,
// paused; one whose receiver has not taken its last batch yet) must not take those
// places: else a few companies' paused backfills held every other company's still.
// Its own database: a step without p_only steps every backfill there is.
import test from 'ava';
import { useTestDatabase } from '../helpers/db.ts';
import { deliveriesOf, factories } from '../helpers/factories.ts';

const db = useTestDatabase(test);

test('backfills that can do nothing now do not hold the others back', async (t) => {
  const f = factories(db().pool);
  const start = async (webhookId: string) =>
    (await db().pool.query('select webhooks.backfill($1) as id', [webhookId])).rows[0].id as string;
  // two companies whose webhooks were disabled while their backfills ran
  for (let i = 0; i < 2; i++) {
    const company = await f.company();
    const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
    await f.contact(company.id);
    await start(hook.id);
    await db().pool.query('update webhooks.webhooks set enabled = false, disabled_at = now() where id = $1', [hook.id]);
  }
  const company = await f.company();
  const hook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const contact = await f.contact(company.id);
  const id = await start(hook.id);

  const { rows: [stepped] } = await db().pool.query('select webhooks_relay.backfill_step(p_limit => 2) as written');
  t.is(stepped.written, 1);
  const snapshots = (await deliveriesOf(db().pool, [hook.id])).filter((d) => d.action === 'contact.snapshot');
  t.deepEqual(snapshots.map((d) => d.contact_id), [contact.id]);
  const { rows: [backfill] } = await db().pool.query('select state from webhooks.backfills where id = $1', [id]);
  t.is(backfill.state, 'done');
});
