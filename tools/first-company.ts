import pg from 'pg';

/** The CRM's first company (the lowest id), or null while crm.companies is empty. */
export async function firstCompany(url: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, application_name: 'bpd-webhooks start' });
  await client.connect();
  try {
    const { rows } = await client.query<{ id: string | null }>('select min(id)::text as id from crm.companies');
    return rows[0]!.id;
  } finally {
    await client.end();
  }
}
