// `npm run token` prints a bearer token for the admin API: one the API accepts, or,
// for an argument the API would refuse, no token and a clear error.
import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { verifyAuthorization } from '../../api/auth.ts';

const TOOL = fileURLToPath(new URL('../../tools/token.ts', import.meta.url));
const SECRET = 'token-tool-test-secret-of-enough-length';

async function token(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [TOOL, ...args], {
      env: { ...process.env, JWT_SECRET: SECRET },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
    return { code, stdout, stderr };
  }
}

test('a token for the largest company id the database can hold is one the API accepts', async (t) => {
  const { code, stdout } = await token('--company', '9223372036854775807');
  t.is(code, 0);
  const claims = await verifyAuthorization(`Bearer ${stdout.trim()}`, SECRET);
  t.is(claims.company_id, '9223372036854775807');
});

test('a company id beyond bigint is refused: no token the API would reject', async (t) => {
  const { code, stdout, stderr } = await token('--company', '9223372036854775808');
  t.is(code, 2);
  t.is(stdout, '');
  t.regex(stderr, /--company must be a company id/);
});
