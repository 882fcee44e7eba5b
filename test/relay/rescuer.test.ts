// The rescuer (relay/rescuer.ts): one run returns what it rescued; started, it runs at
// once and on its timer, and tells the relay when deliveries are due again.
import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import { relayPool } from '../../relay/database.ts';
import { Rescuer, RESCUER_INTERVAL_DEFAULT_MS, type RescueResult } from '../../relay/rescuer.ts';
import { createTestDatabase } from '../helpers/db.ts';
import { factories } from '../helpers/factories.ts';

/** The bundle every test starts from: a database with due deliveries, and a rescuer on the relay's role. */
async function setup(t: ExecutionContext, options: { deliveries?: number; intervalMs?: number } = {}) {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const f = factories(database.pool);
  const company = await f.company();
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  for (let i = 0; i < (options.deliveries ?? 2); i++) await f.contact(company.id);
  const log = pino({ level: 'silent' });
  const pool = relayPool({ databaseUrl: database.url, role: 'bpd_webhooks_relay', log, queryTimeoutMs: 30_000 });
  t.teardown(() => pool.end());
  const results: RescueResult[] = [];
  const rescuer = new Rescuer({ db: pool, log, intervalMs: options.intervalMs, onRescued: (result) => results.push(result) });
  t.teardown(() => rescuer.stop());

  /** Claims every due delivery for a relay that then vanishes, its leases already over. */
  const abandonLeases = async () => {
    const { rows } = await database.pool.query(
      `select delivery_id from webhooks_relay.claim_deliveries('relay-gone', 100, interval '1 minute', 100)`,
    );
    await database.pool.query(`update webhooks.deliveries set locked_until = now() - interval '1 second' where locked_by = 'relay-gone'`);
    return rows.map((row) => row.delivery_id as string);
  };
  const states = async () =>
    (await database.pool.query(`select state, locked_by, attempts from webhooks.deliveries where webhook_id = $1 order by id`, [webhook.id])).rows;
  return { database, rescuer, results, abandonLeases, states };
}

test('the rescuer runs every five seconds unless told otherwise', (t) => {
  t.is(RESCUER_INTERVAL_DEFAULT_MS, 5_000);
  t.is(new Rescuer({ db: { query: async () => ({ rows: [] }) } as never, log: pino({ level: 'silent' }) }).intervalMs, 5_000);
});

test('runOnce: nothing expired, nothing rescued', async (t) => {
  const { rescuer, states } = await setup(t);
  t.deepEqual(await rescuer.runOnce(), { rescued: 0 });
  t.true((await states()).every((row) => row.state === 'pending'));
});

test('runOnce: leases that ran out go back to pending, their attempt counted', async (t) => {
  const { rescuer, abandonLeases, states } = await setup(t, { deliveries: 3 });
  t.is((await abandonLeases()).length, 3);
  t.deepEqual(await rescuer.runOnce(), { rescued: 3 });
  t.deepEqual(await states(), [1, 2, 3].map(() => ({ state: 'pending', locked_by: null, attempts: 1 })));
  t.deepEqual(await rescuer.runOnce(), { rescued: 0 }, 'a second run finds nothing');
});

test('started, the rescuer runs at once and reports what it rescued; stopped, it runs no more', async (t) => {
  const { rescuer, results, abandonLeases, states } = await setup(t, { deliveries: 2, intervalMs: 60 * 60_000 });
  await abandonLeases();
  rescuer.start();
  await rescuer.stop(); // waits for the run under way: the one start() began
  t.deepEqual(results, [{ rescued: 2 }]);
  t.true((await states()).every((row) => row.state === 'pending'));
  await abandonLeases();
  rescuer.start();
  await rescuer.stop();
  t.deepEqual(results, [{ rescued: 2 }], 'a stopped rescuer does not start again');
});
