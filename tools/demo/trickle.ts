// The demo's trickle: one contact change every few seconds, of the kinds the three
// demo webhooks listen to, made as the CRM would make them. Bounded: it stops after
// `count` changes, or as soon as the signal aborts.
import type pg from 'pg';
import { demoContact, type SeededDemo } from './seed.ts';

export interface TrickleOptions {
  count: number;
  everyMs: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

type Change = (client: pg.PoolClient, demo: SeededDemo, n: number) => Promise<string>;

const pick = <T>(list: T[], n: number): T => list[n % list.length]!;

const CHANGES: Change[] = [
  async (client, demo, n) => {
    const c = demoContact(100 + n);
    await client.query(`set local webhooks.source = 'platform'`);
    const { rows: [row] } = await client.query(
      `insert into crm.contacts (company_id, first_name, last_name, email, phone, street, city, state, postal_code)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id`,
      [demo.companyId, c.first_name, c.last_name, c.email, c.phone, c.street, c.city, c.state, c.postal_code]);
    demo.contactIds.push(row.id);
    return `new contact ${c.first_name} ${c.last_name}`;
  },
  async (client, demo, n) => {
    const id = pick(demo.contactIds, n * 5);
    await client.query(`set local webhooks.source = 'platform'`);
    await client.query(`update crm.contacts set city = city where id = $1`, [id]);
    return `contact #${id} saved in BPD`;
  },
  async (client, demo, n) => {
    const id = pick(demo.contactIds, n * 3);
    const status = demo.statuses.find((s) => s.name === 'Thank You Note')!;
    await client.query(`set local webhooks.source = 'platform'`);
    // removed first when it is there, so that adding it fires again
    await client.query(`delete from crm.contact_statuses where contact_id = $1 and status_id = $2`, [id, status.id]);
    await client.query(`insert into crm.contact_statuses (contact_id, status_id) values ($1, $2)`, [id, status.id]);
    return `"Thank You Note" added to contact #${id}`;
  },
  async (client, demo, n) => {
    const id = pick(demo.contactIds, n * 7);
    await client.query(`set local webhooks.source = 'encompass'`);
    await client.query(`update crm.contacts set phone = $2 where id = $1`, [id, `+1 555 02${String(n % 100).padStart(2, '0')}`]);
    return `contact #${id} phone changed in Encompass`;
  },
  async (client, demo, n) => {
    const id = pick(demo.contactIds, n * 11);
    const user = pick(demo.users, n);
    await client.query(`set local webhooks.source = 'platform'`);
    await client.query(`delete from crm.contact_assignments where contact_id = $1 and user_id = $2`, [id, user.id]);
    await client.query(`insert into crm.contact_assignments (contact_id, user_id) values ($1, $2)`, [id, user.id]);
    return `${user.name} assigned to contact #${id}`;
  },
];

/** Makes up to `count` changes, one every `everyMs`; resolves with how many were made. */
export async function trickle(pool: pg.Pool, demo: SeededDemo, options: TrickleOptions): Promise<number> {
  const { count, everyMs, signal, log = () => {} } = options;
  let made = 0;
  while (made < count && !signal?.aborted) {
    const client = await pool.connect();
    try {
      await client.query('begin');
      const what = await pick(CHANGES, made)(client, demo, made);
      await client.query('commit');
      made++;
      log(`change ${made}/${count}: ${what}`);
    } catch (error) {
      await client.query('rollback').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
    if (made < count) await sleep(everyMs, signal);
  }
  return made;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
