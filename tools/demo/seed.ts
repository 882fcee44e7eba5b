// The demo's data: a company with users, statuses (among them "Thank You Note") and
// contacts, and three webhooks posting to the demo's receiver. Seeding is idempotent:
// a second run finds "Demo Realty" and only points its webhooks at the receiver's
// current address.
//
// Webhooks are made with webhooks.create_webhook, the function behind GraphQL's
// createWebhook, as an admin of the company would; the demo connects as the database
// owner (it also writes the CRM tables), so it reads the secrets of webhooks made by an
// earlier run from where the relay reads them.
import type pg from 'pg';

export const DEMO_COMPANY = 'Demo Realty';
export const DEMO_ACTOR = 'demo@demo-realty.example';

export const DEMO_USERS = [
  { name: 'Jane Doe', email: 'jane.doe@demo-realty.example' },
  { name: 'Omar Haddad', email: 'omar.haddad@demo-realty.example' },
  { name: 'Li Wei', email: 'li.wei@demo-realty.example' },
];

export const DEMO_STATUSES = ['Thank You Note', 'Hot Lead', 'Closed Won', 'Follow Up'];

const FIRST = ['Ada', 'Grace', 'Alan', 'Katherine', 'Edsger', 'Barbara', 'Donald', 'Margaret', 'Dennis', 'Frances',
  'Ken', 'Radia', 'Tim', 'Hedy', 'John', 'Sophie', 'Linus', 'Annie', 'Claude', 'Mary'];
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Johnson', 'Dijkstra', 'Liskov', 'Knuth', 'Hamilton', 'Ritchie', 'Allen',
  'Thompson', 'Perlman', 'Berners-Lee', 'Lamarr', 'Backus', 'Wilson', 'Torvalds', 'Easley', 'Shannon', 'Keller'];
const STREETS = ['Maple Ave', 'Oak St', 'Pine Rd', 'Cedar Ln', 'Elm Dr', 'Birch Way'];
const CITIES: Array<[string, string, string]> = [
  ['Springfield', 'IL', '62701'], ['Madison', 'WI', '53703'], ['Boulder', 'CO', '80302'],
  ['Austin', 'TX', '78701'], ['Portland', 'OR', '97205'], ['Raleigh', 'NC', '27601'],
];

export const DEMO_CONTACT_COUNT = 24;

/** The i-th demo contact (deterministic, so runs look alike). */
export function demoContact(i: number) {
  const first = FIRST[i % FIRST.length]!;
  const last = LAST[(i * 7) % LAST.length]!;
  const [city, state, postal] = CITIES[i % CITIES.length]!;
  return {
    first_name: first,
    last_name: last,
    email: `${first}.${last}.${i}@example.com`.toLowerCase(),
    phone: `+1 555 01${String(i % 100).padStart(2, '0')}`,
    street: `${100 + i * 3} ${STREETS[i % STREETS.length]}`,
    city, state, postal_code: postal,
  };
}

export interface DemoWebhookSpec {
  key: string;
  name: string;
  path: string;
  fields: string[];
  actions: string[];
  status?: string;
  user?: string;
}

export const DEMO_WEBHOOKS: DemoWebhookSpec[] = [
  {
    key: 'notes', name: 'Handwritten thank-you notes', path: '/thank-you-notes',
    fields: ['first_name', 'last_name', 'street', 'city', 'state', 'postal_code'],
    actions: ['contact.status_added'], status: 'Thank You Note',
  },
  {
    key: 'sheet', name: 'Contacts spreadsheet', path: '/spreadsheet',
    fields: ['first_name', 'last_name', 'email', 'phone'],
    actions: ['contact.created', 'contact.saved', 'contact.updated'],
  },
  {
    key: 'tasks', name: 'Jane’s new contacts to her task list', path: '/tasks',
    fields: ['first_name', 'last_name', 'email', 'phone'],
    actions: ['contact.user_assigned'], user: 'Jane Doe',
  },
];

export interface SeededWebhook extends DemoWebhookSpec {
  id: string;
  url: string;
  /** the signing secrets the receiver accepts (current, and the previous one while valid) */
  secrets: string[];
}

export interface SeededDemo {
  companyId: string;
  created: boolean;
  users: Array<{ id: string; name: string }>;
  statuses: Array<{ id: string; name: string }>;
  contactIds: string[];
  webhooks: SeededWebhook[];
}

type Progress = (step: string, done: number, total: number) => void;

/**
 * Seeds (or finds) the demo company and points its webhooks at receiverUrl
 * (`http://127.0.0.1:port`). progress is told of each step.
 */
export async function seedDemo(pool: pg.Pool, receiverUrl: string, progress: Progress = () => {}): Promise<SeededDemo> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    // one seeding at a time: two demos started at once make one company
    await client.query(`select pg_advisory_xact_lock(hashtext('bpd_webhooks.demo_seed'))`);
    const found = await client.query<{ id: string }>('select id from crm.companies where name = $1 order by id limit 1', [DEMO_COMPANY]);
    const created = found.rows.length === 0;
    const companyId = created
      ? (await client.query<{ id: string }>('insert into crm.companies (name) values ($1) returning id', [DEMO_COMPANY])).rows[0]!.id
      : found.rows[0]!.id;
    // changes made here are the demo's, in the audit trail and in disabled_by
    await client.query(`select set_config('jwt.claims.company_id', $1, true), set_config('jwt.claims.sub', $2, true)`,
      [companyId, DEMO_ACTOR]);
    await client.query(`set local webhooks.source = 'platform'`);

    if (created) {
      for (const [i, user] of DEMO_USERS.entries()) {
        await client.query('insert into crm.users (company_id, name, email) values ($1, $2, $3)', [companyId, user.name, user.email]);
        progress('users', i + 1, DEMO_USERS.length);
      }
      for (const [i, name] of DEMO_STATUSES.entries()) {
        await client.query('insert into crm.statuses (company_id, name) values ($1, $2)', [companyId, name]);
        progress('statuses', i + 1, DEMO_STATUSES.length);
      }
    }
    const users = (await client.query<{ id: string; name: string }>(
      'select id, name from crm.users where company_id = $1 order by id', [companyId])).rows;
    const statuses = (await client.query<{ id: string; name: string }>(
      'select id, name from crm.statuses where company_id = $1 order by id', [companyId])).rows;

    const webhooks: SeededWebhook[] = [];
    for (const [i, spec] of DEMO_WEBHOOKS.entries()) {
      const url = `${receiverUrl}${spec.path}`;
      const existing = await client.query<{ id: string; url: string }>(
        'select id, url from webhooks.webhooks where company_id = $1 and name = $2 order by id limit 1', [companyId, spec.name]);
      let id: string;
      if (existing.rows[0]) {
        id = existing.rows[0].id;
        if (existing.rows[0].url !== url) await client.query('select webhooks.update_webhook(id => $1, url => $2)', [id, url]);
      } else {
        const statusId = spec.status ? statuses.find((s) => s.name === spec.status)?.id : null;
        const userId = spec.user ? users.find((u) => u.name === spec.user)?.id : null;
        const made = await client.query<{ id: string }>(
          `select (r.webhook).id from webhooks.create_webhook($1, $2, $3, $4::webhooks.action[], $5, $6) r`,
          [spec.name, url, spec.fields, spec.actions, statusId ?? null, userId ?? null]);
        id = made.rows[0]!.id;
      }
      const { rows: [keys] } = await client.query<{ secret: string; previous_secrets: string[] }>(
        `select secret, webhooks_private.valid_rotated_secrets(webhook_id) as previous_secrets
         from webhooks_private.webhook_secrets where webhook_id = $1`, [id]);
      webhooks.push({ ...spec, id, url, secrets: [keys!.secret, ...keys!.previous_secrets] });
      progress('webhooks', i + 1, DEMO_WEBHOOKS.length);
    }

    // contacts last, so that the webhooks fire for them
    if (created) {
      for (let i = 0; i < DEMO_CONTACT_COUNT; i++) {
        const c = demoContact(i);
        const columns = Object.keys(c);
        await client.query(
          `insert into crm.contacts (company_id, ${columns.join(', ')}) values ($1, ${columns.map((_, k) => `$${k + 2}`).join(', ')})`,
          [companyId, ...Object.values(c)]);
        progress('contacts', i + 1, DEMO_CONTACT_COUNT);
      }
    }
    const contactIds = (await client.query<{ id: string }>(
      'select id from crm.contacts where company_id = $1 order by id', [companyId])).rows.map((r) => r.id);
    await client.query('commit');
    return { companyId, created, users, statuses, contactIds, webhooks };
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    client.release();
  }
}

/**
 * The signing secrets of every webhook of the company that posts to the receiver,
 * by path: the current one and, for 24 hours after each rotation, the one it replaced.
 * Read again every few seconds, so that webhooks made or rotated on the page verify too.
 */
export async function receiverSecrets(pool: pg.Pool, companyId: string, receiverUrl: string): Promise<Map<string, string[]>> {
  const { rows } = await pool.query<{ url: string; secret: string; previous_secrets: string[] }>(
    `select w.url, s.secret, webhooks_private.valid_rotated_secrets(w.id) as previous_secrets
     from webhooks.webhooks w join webhooks_private.webhook_secrets s on s.webhook_id = w.id
     where w.company_id = $1 and starts_with(w.url, $2 || '/')`, [companyId, receiverUrl]);
  const byPath = new Map<string, string[]>();
  for (const row of rows) {
    const path = row.url.slice(receiverUrl.length).split('?')[0]!;
    byPath.set(path, [...(byPath.get(path) ?? []), row.secret, ...row.previous_secrets]);
  }
  return byPath;
}
