// `npm run token -- --company 1 [--role webhook_viewer] [--sub name] [--expires 12h]`
// prints a bearer token for the admin API, signed with JWT_SECRET or, when that is
// not set, with the development secret `npm start` keeps in .data/jwt-secret.
import { parseArgs } from 'node:util';
import { API_ROLES, companyIdOf, DEFAULT_TOKEN_LIFETIME, durationSeconds, maxTokenLifetime, signToken, type ApiRole } from '../api/auth.ts';
import { jwtSecret } from '../api/jwt-secret.ts';

const usage = 'usage: npm run token -- --company <id> [--role webhook_admin|webhook_viewer] [--sub <who>] [--expires 12h]';

const { values } = parseArgs({
  options: {
    company: { type: 'string' },
    role: { type: 'string', default: 'webhook_admin' },
    sub: { type: 'string' },
    expires: { type: 'string', default: DEFAULT_TOKEN_LIFETIME },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help || !values.company) {
  console.error(usage);
  process.exit(values.help ? 0 : 2);
}
// (as the API reads the token's claim: a positive integer a bigint holds)
if (companyIdOf(values.company) === null) {
  console.error(`--company must be a company id (a positive integer, at most a bigint), got ${JSON.stringify(values.company)}`);
  process.exit(2);
}
if (!(API_ROLES as readonly string[]).includes(values.role!)) {
  console.error(`--role must be one of ${API_ROLES.join(', ')}, got ${JSON.stringify(values.role)}`);
  process.exit(2);
}
const lifetime = durationSeconds(values.expires!);
if (lifetime === null) {
  console.error(`--expires must be a duration such as 12h, 30m or 7d, got ${JSON.stringify(values.expires)}`);
  process.exit(2);
}
if (lifetime > maxTokenLifetime()) {
  console.error(`--expires ${values.expires} is longer than the API accepts (JWT_MAX_LIFETIME, ${maxTokenLifetime()} seconds)`);
  process.exit(2);
}
const secret = await jwtSecret({ allowDevSecret: true });
console.log(await signToken(secret, {
  companyId: values.company,
  role: values.role as ApiRole,
  sub: values.sub,
  expiresIn: values.expires,
}));
