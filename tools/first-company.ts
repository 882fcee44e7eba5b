import { EngineClient } from '../relay/database.ts';

/** The CRM's first company (the lowest id), or null while crm.companies is empty. */
export async function firstCompany(url: string): Promise<string | null> {
  // (an EngineClient: a connection lost while it is in use is this call's error, not the process's end)
  const client = new EngineClient({ connectionString: url, application_name: 'bpd-webhooks start' });
  await client.connect();
  try {
    const { rows } = await client.query<{ id: string | null }>('select min(id)::text as id from crm.companies');
    return rows[0]!.id;
  } finally {
    await client.end();
  }
}
