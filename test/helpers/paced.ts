// The scene of the rate_limit tests (test/fleet/rate-limit*.test.ts) and how they
// measure it: a paced webhook to the receiver with its contacts written, the times its
// requests were sent as the relays recorded them, and the busiest second among them.
import type { ExecutionContext } from 'ava';
import type pg from 'pg';
import { relayScene } from './relay.ts';

/** A webhook of the scene's company paced at `rate` a second, answered 200 at /paced, and `contacts` new contacts that fire it. */
export async function pacedScene(t: Pick<ExecutionContext, 'teardown'>, rate: number, contacts: number) {
  const scene = await relayScene(t);
  const { database, receiver, f, company } = scene;
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/paced') });
  await database.pool.query('update webhooks.webhooks set rate_limit = $2 where id = $1', [webhook.id, rate]);
  receiver.route('/paced', { secret: webhook.secret, otherwise: 200 });
  await database.pool.query(
    `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, $2::int) n`,
    [company.id, contacts],
  );
  return { ...scene, webhook };
}

/**
 * When each attempt of the webhook was sent, in ms, as the relays recorded it: the
 * receiver's arrival times would add a loaded machine's scheduling delays.
 */
export async function sentTimes(pool: Pick<pg.Pool, 'query'>, webhookId: string): Promise<number[]> {
  const { rows } = await pool.query(
    `select extract(epoch from attempted_at) * 1000 as at from webhooks.delivery_attempts
     where webhook_id = $1 order by attempted_at`,
    [webhookId],
  );
  return rows.map((r) => Number(r.at));
}

/** The most times within any second-long window (the busiest windows start at a time of the list). */
export function busiest(times: number[]): number {
  let most = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (j < times.length && times[j]! < times[i]! + 1000) j++;
    most = Math.max(most, j - i);
  }
  return most;
}
