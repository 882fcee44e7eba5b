// The API's own database login, webhook_authenticator (sql/60_access.sql): it has
// no rights of its own and can only become webhook_admin or webhook_viewer. For
// development and tests, give it a password with the owner's connection and connect
// as it; in production a DBA sets the password and DATABASE_URL names the role.
import { EngineClient } from '../relay/database.ts';

export const AUTHENTICATOR_ROLE = 'webhook_authenticator';

/** Sets the authenticator's password (as ownerUrl) and returns a URL that logs in as it. */
export async function authenticatorUrl(ownerUrl: string, password: string): Promise<string> {
  // (an EngineClient: a connection lost while it is in use is this call's error, not the process's end)
  const client = new EngineClient({ connectionString: ownerUrl });
  await client.connect();
  try {
    // Roles belong to the whole cluster: processes starting at once against databases
    // of one server (test files) may alter the role together, and Postgres refuses the
    // loser with "tuple concurrently updated". Trying again is all it takes.
    for (let attempt = 1; ; attempt++) {
      try {
        // ALTER ROLE takes no bind parameters; the literal is escaped by the driver
        await client.query(`alter role ${AUTHENTICATOR_ROLE} password ${client.escapeLiteral(password)}`);
        break;
      } catch (error) {
        if (attempt >= 10 || !/tuple concurrently updated/.test((error as Error).message)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20 * attempt));
      }
    }
  } finally {
    await client.end();
  }
  const url = new URL(ownerUrl);
  url.username = AUTHENTICATOR_ROLE;
  url.password = encodeURIComponent(password);
  return url.toString();
}
