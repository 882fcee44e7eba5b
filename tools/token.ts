// `npm run token -- --company 1 [--role webhook_viewer] [--sub name] [--expires 12h]`
// prints a bearer token for the admin API, signed with JWT_SECRET or, when that is
// not set, with the development secret `npm start` keeps in .data/jwt-secret.
import { parseArgs } from 'node:util';
import { API_ROLES, signToken, type ApiRole } from '../api/auth.ts';
import { jwtSecret } from '../api/jwt-secret.ts';

const usage = 'usage: npm run token -- --company <id> [--role webhook_admin|webhook_viewer] [--sub <who>] [--expires 12h]';

const { values } = parseArgs({
  options: {
    company: { type: 'string' },
    role: { type: 'string', default: 'webhook_admin' },
    sub: { type: 'string' },
    expires: { type: 'string', default: '12h' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help || !values.company) {
  console.error(usage);
  process.exit(values.help ? 0 : 2);
}
if (!/^[1-9][0-9]*$/.test(values.company)) {
  console.error(`--company must be a company id (a positive integer), got ${JSON.stringify(values.company)}`);
  process.exit(2);
}
if (!(API_ROLES as readonly string[]).includes(values.role!)) {
  console.error(`--role must be one of ${API_ROLES.join(', ')}, got ${JSON.stringify(values.role)}`);
  process.exit(2);
}
const secret = await jwtSecret({ allowDevSecret: true });
console.log(await signToken(secret, {
  companyId: values.company,
  role: values.role as ApiRole,
  sub: values.sub,
  expiresIn: values.expires,
}));
