// Measures an ordered and an unordered webhook's backfill against a real relay, with
// and without a CRM writer updating the contacts just ahead of the walk: the walk's
// rate (contacts a second) and the writer's wait (p50, p99, most; and how often a
// step held the writer's contact, asked without waiting). Logs the figures (BENCHMARKS.md,
// "An ordered backfill beside a writer ahead of it"), and checks one snapshot a contact.
import test from 'ava';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import pg from 'pg';
import { spawnRelay, relayScene } from '../helpers/relay.ts';

const CONTACTS = 40_000;
const SECONDS = Number(process.env.BACKFILL_WAIT_SECONDS ?? 10);

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

for (const ordered of [false, true]) {
  for (const withWriter of [false, true]) {
    test.serial(`walk rate and writer wait: ${ordered ? 'ordered' : 'unordered'}, ${withWriter ? 'with' : 'without'} a writer`, async (t) => {
      t.timeout(120_000);
      const { database, receiver, f, company } = await relayScene(t);
      const pool = database.pool;
      const hook = await f.webhook({ companyId: company.id, actions: ['contact.updated'], fields: ['first_name', 'city'], url: receiver.url('/sync') });
      receiver.route('/sync', { secret: hook.secret });
      await pool.query(`select webhooks.set_webhook_delivery($1, null, $2)`, [hook.id, ordered]);
      await pool.query('alter table crm.contacts disable trigger "!webhooks_created"');
      await pool.query(
        `insert into crm.contacts (company_id, first_name, last_name, email, city)
         select $1, 'Contact ' || i, 'Backfilled', 'c' || i || '@example.com', 'City ' || i
         from generate_series(1, $2) i`, [company.id, CONTACTS]);
      await pool.query('alter table crm.contacts enable trigger "!webhooks_created"');
      await pool.query('analyze crm.contacts');
      const { rows: [{ id: backfillId }] } = await pool.query('select webhooks.backfill($1) as id', [hook.id]);
      const relay = spawnRelay(database.url, {});
      t.teardown(() => stopChild(relay));

      let running = true;
      const writer = new pg.Client({ connectionString: database.url });
      await writer.connect();
      t.teardown(() => writer.end());
      const waits: number[] = [];
      const heldWaits: number[] = [];
      const writing = withWriter && (async () => {
        for (let n = 0; running; n++) {
          const { rows: [b] } = await writer.query('select position from webhooks.backfills where id = $1', [backfillId]);
          const { rows: [c] } = await writer.query(
            `select id from crm.contacts where company_id = $1 and id > coalesce($2::bigint, 0) order by id offset ($3 % 40) limit 1`,
            [company.id, b?.position ?? null, n]);
          if (!c) continue;
          // (held by a step? asked without waiting: the machine's load is no lock)
          await writer.query('begin');
          let held = false;
          try {
            await writer.query('select 1 from crm.contacts where id = $1 for no key update nowait', [c.id]);
          } catch (e: any) {
            if (e.code !== '55P03') throw e;
            held = true;
          }
          await writer.query('rollback');
          const start = performance.now();
          await writer.query(`update crm.contacts set city = 'Written ' || $2 where id = $1`, [c.id, n]);
          waits.push(performance.now() - start);
          if (held) heldWaits.push(performance.now() - start);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      // from the first snapshot written, SECONDS of walk
      const first = async () => {
        for (;;) {
          const { rows: [b] } = await pool.query('select queued from webhooks.backfills where id = $1', [backfillId]);
          if (Number(b.queued) > 0) return Number(b.queued);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      };
      const q0 = await first();
      const t0 = performance.now();
      await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
      const { rows: [b1] } = await pool.query('select queued, state from webhooks.backfills where id = $1', [backfillId]);
      const elapsed = (performance.now() - t0) / 1000;
      running = false;
      if (writing) await writing;
      const sorted = [...waits].sort((a, x) => a - x);
      const p = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0;
      const rate = (Number(b1.queued) - q0) / elapsed;
      t.log(`${ordered ? 'ordered' : 'unordered'} ${withWriter ? 'with' : 'without'} writer: walk ${rate.toFixed(0)} contacts/s (${b1.state})`
        + (withWriter ? `; writer ${waits.length} updates, p50 ${p(0.5).toFixed(1)} ms, p99 ${p(0.99).toFixed(1)} ms, max ${p(1).toFixed(1)} ms; held by a step ${heldWaits.length}, those waited at most ${Math.max(0, ...heldWaits).toFixed(1)} ms` : ''));
      t.true(rate > 0);
      // (beside the writer, every contact the walk passed still has one snapshot)
      await stopChild(relay);
      const { rows: [walk] } = await pool.query(
        `select count(*)::int as snapshots, count(distinct contact_id)::int as contacts,
                (select queued::int from webhooks.backfills where id = $2) as queued
         from webhooks.deliveries where webhook_id = $1 and action = 'contact.snapshot'`, [hook.id, backfillId]);
      t.deepEqual(walk, { snapshots: walk.queued, contacts: walk.queued, queued: walk.queued });
      t.true(walk.queued >= Number(b1.queued));
    });
  }
}
