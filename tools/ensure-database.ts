import pg from 'pg';
import { EngineClient } from '../relay/database.ts';

/** Creates the database on the server behind serverUrl unless it exists. */
export async function ensureDatabase(serverUrl: string, name: string): Promise<void> {
  // (an EngineClient: a connection lost while it is in use is this call's error, not the process's end)
  const client = new EngineClient({ connectionString: serverUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (!rowCount) {
      await client.query(`create database ${pg.escapeIdentifier(name)}`).catch((error: { code?: string }) => {
        if (error.code !== '42P04') throw error; // created meanwhile by another process
      });
    }
  } finally {
    await client.end();
  }
}
