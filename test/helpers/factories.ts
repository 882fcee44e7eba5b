// Small factories for CRM rows and webhooks. Every test makes its own company, so
// tests of one file share a database without seeing each other's rows.
import { randomBytes } from 'node:crypto';
import type pg from 'pg';

type Queryable = Pick<pg.Pool, 'query'>;
const tag = () => randomBytes(3).toString('hex');

export interface Contact {
  id: string;
  company_id: string;
  first_name: string | null;
  last_name: string | null;
  email: string | null;
  street: string | null;
  city: string | null;
  state: string | null;
  postal_code: string | null;
  [column: string]: unknown;
}

export interface WebhookInput {
  companyId: string;
  actions: string[];
  fields?: string[];
  url?: string;
  name?: string;
  statusId?: string | null;
  userId?: string | null;
  enabled?: boolean;
  maxAttempts?: number | null;
  ignoreSources?: string[];
  watchFields?: string[];
  conditions?: unknown;
}

export interface Webhook {
  id: string;
  company_id: string;
  name: string;
  url: string;
  fields: string[];
  actions: string[];
  enabled: boolean;
  secret: string;
  ignore_sources: string[];
  watch_fields: string[];
  conditions: unknown;
}

export function factories(db: Queryable) {
  async function one<T>(sql: string, params: unknown[]): Promise<T> {
    const { rows } = await db.query(sql, params);
    return rows[0] as T;
  }
  return {
    company: (name = `Company ${tag()}`) =>
      one<{ id: string; name: string }>('insert into crm.companies (name) values ($1) returning *', [name]),

    user: (companyId: string, name = `User ${tag()}`) =>
      one<{ id: string; company_id: string; name: string; email: string }>(
        'insert into crm.users (company_id, name, email) values ($1, $2, $3) returning *',
        [companyId, name, `${name.toLowerCase().replaceAll(' ', '.')}@example.com`],
      ),

    status: (companyId: string, name = `Status ${tag()}`) =>
      one<{ id: string; company_id: string; name: string }>(
        'insert into crm.statuses (company_id, name) values ($1, $2) returning *',
        [companyId, name],
      ),

    contact: (companyId: string, values: Record<string, unknown> = {}) => {
      const row = { first_name: 'Ada', last_name: 'Lovelace', email: `ada.${tag()}@example.com`, ...values };
      const columns = Object.keys(row);
      return one<Contact>(
        `insert into crm.contacts (company_id, ${columns.join(', ')})
         values ($1, ${columns.map((_, i) => `$${i + 2}`).join(', ')}) returning *`,
        [companyId, ...Object.values(row)],
      );
    },

    webhook: async (input: WebhookInput): Promise<Webhook> => {
      const webhook = await one<Webhook>(
        `insert into webhooks.webhooks (company_id, name, url, fields, actions, status_id, user_id, enabled, disabled_at, max_attempts,
                                        ignore_sources, watch_fields, conditions)
         values ($1, $2, $3, $4, $5::webhooks.action[], $6, $7, $8, case when $8 then null else now() end, $9, $10, $11, $12)
         returning id, company_id, name, url, fields, actions::text[] as actions, status_id, user_id, enabled, created_at,
                   ignore_sources, watch_fields, conditions`,
        [
          input.companyId,
          input.name ?? `Hook ${tag()}`,
          input.url ?? 'https://receiver.example.com/hook',
          input.fields ?? ['first_name', 'last_name', 'email'],
          input.actions,
          input.statusId ?? null,
          input.userId ?? null,
          input.enabled ?? true,
          input.maxAttempts ?? null,
          input.ignoreSources ?? [],
          input.watchFields ?? [],
          input.conditions === undefined ? null : JSON.stringify(input.conditions),
        ],
      );
      // written by an AFTER INSERT trigger; read here, where the tests may see it
      const { rows } = await db.query('select secret from webhooks_private.webhook_secrets where webhook_id = $1', [webhook.id]);
      return { ...webhook, secret: rows[0].secret as string };
    },

    /**
     * Another company's backlog: a company whose one webhook hears contact.created, and
     * `count` contacts created in one statement, each a delivery queued for it.
     */
    backlog: async (count: number): Promise<{ company: { id: string; name: string }; webhook: Webhook }> => {
      const company = await one<{ id: string; name: string }>('insert into crm.companies (name) values ($1) returning *', [`Company ${tag()}`]);
      const webhook = await factories(db).webhook({ companyId: company.id, actions: ['contact.created'] });
      await db.query(
        `insert into crm.contacts (company_id, first_name) select $1, 'Contact ' || n from generate_series(1, $2::int) n`,
        [company.id, count]);
      return { company, webhook };
    },
  };
}

export interface DeliveryRow {
  id: string;
  message_id: string;
  webhook_id: string;
  company_id: string;
  action: string;
  contact_id: string;
  payload: { type: string; timestamp: string; data: Record<string, any> };
  state: string;
  attempts: number;
  created_at: Date;
  last_error: string | null;
  completed_at: Date | null;
}

/** The deliveries of the given webhooks, oldest first. */
export async function deliveriesOf(db: Queryable, webhookIds: string[]): Promise<DeliveryRow[]> {
  const { rows } = await db.query(
    'select * from webhooks.deliveries where webhook_id = any ($1::bigint[]) order by id',
    [webhookIds],
  );
  return rows;
}

/**
 * `count` webhooks of one company (for `contact.deleted`, sending `first_name`), past
 * the company's bound (webhooks.max_webhooks_per_company, raised for their
 * transaction alone): named `${name} n`, each to `url`, or to a URL of its own.
 */
export async function webhooksInBulk(pool: Pick<pg.Pool, 'connect'>, companyId: string, count: number,
                                     { name = 'Hook', url }: { name?: string; url?: string } = {}): Promise<void> {
  const writer = await pool.connect();
  try {
    await writer.query('begin');
    await writer.query(`select set_config('webhooks.max_webhooks_per_company', $1, true)`, [String(count)]);
    await writer.query(
      `insert into webhooks.webhooks (company_id, name, url, fields, actions)
       select $1, $2 || ' ' || n, coalesce($3, 'https://receiver.example.com/' || n), '{first_name}', '{contact.deleted}'
       from generate_series(1, $4::int) n`, [companyId, name, url ?? null, count]);
    await writer.query('commit');
  } catch (error) {
    await writer.query('rollback').catch(() => {});
    throw error;
  } finally {
    writer.release();
  }
}
