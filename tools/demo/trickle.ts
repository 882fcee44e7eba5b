// The demo's trickle: one contact change every few seconds, of the kinds the three
// demo webhooks listen to, made as the CRM would make them. Bounded: it stops after
// `count` changes, or as soon as the signal aborts.
import type pg from 'pg';
import { isConnectionError } from '../../relay/database.ts';
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
    try {
      log(`change ${made + 1}/${count}: ${await change(pool, demo, made)}`);
      made++;
    } catch (error) {
      // a connection lost (a restart, a DBA's pg_terminate_backend): the change is
      // rolled back, and made again after the wait on a new connection
      if (!isConnectionError(error)) throw error;
      log(`database connection lost (${(error as Error).message}): trying that change again`);
    }
    if (made < count) await sleep(everyMs, signal);
  }
  return made;
}

/** The change number `n`, in a transaction of its own; says what it did. */
async function change(pool: pg.Pool, demo: SeededDemo, n: number): Promise<string> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const what = await pick(CHANGES, n)(client, demo, n);
    await client.query('commit');
    client.release();
    return what;
  } catch (error) {
    await client.query('rollback').catch(() => {});
    // (a client whose connection is lost is not given back to the pool)
    client.release(error as Error);
    throw error;
  }
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
