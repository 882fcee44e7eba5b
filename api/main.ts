// `DATABASE_URL=… JWT_SECRET=… npm run api`: the admin API alone, against any
// Postgres that `npm run migrate` has brought up to date. PORT (default 5678) and
// HOST (default 127.0.0.1) say where it listens.
import { startApi } from './server.ts';
import { jwtSecret } from './jwt-secret.ts';
import { apiAddress } from './address.ts';
import { limitsFromEnv } from './limits.ts';
import { maxTokenLifetime } from './auth.ts';
import { trustedProxies } from './token-failures.ts';
import { databaseUrlRefusal } from '../relay/database.ts';

let address: ReturnType<typeof apiAddress>;
try {
  address = apiAddress();
  // (startApi reads them again; a bad one said so with a stack)
  limitsFromEnv();
  maxTokenLifetime();
  trustedProxies();
} catch (error) {
  console.error((error as Error).message);
  process.exit(2);
}
const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error('DATABASE_URL is not set (npm start runs the API beside its own database)');
  process.exit(2);
}
if (databaseUrlRefusal(databaseUrl)) {
  console.error(databaseUrlRefusal(databaseUrl));
  process.exit(2);
}
let secret: string;
try {
  secret = await jwtSecret({ allowDevSecret: false });
} catch (error) {
  console.error((error as Error).message);
  process.exit(2);
}
// a failure to start said in one line, not a stack: its port taken, or the database
// refusing it for good (a wrong password, no such database; one that does not answer
// yet is waited for, startApi serving /healthz and /readyz meanwhile)
const cannotStart = (error: Error & { syscall?: string }) => error.syscall === 'listen'
  ? `the API could not start: ${error.message}`
  : `the API could not start: ${error.message} (reading its schema from the database)`;
const api = await startApi({
  databaseUrl,
  jwtSecret: secret,
  ...address,
}).catch((error: Error) => {
  console.error(cannotStart(error));
  process.exit(1);
});
void api.halted.then((error) => {
  console.error(cannotStart(error));
  process.exit(1);
});
console.log(`Admin API: ${api.url}/graphql  (Ruru: ${api.url}/graphiql, Reports page: ${api.url}/reports/webhooks)`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void api.stop().then(() => process.exit(0)));
}
