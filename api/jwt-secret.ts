// The JWT signing secret: JWT_SECRET, or for development a random one generated once
// and kept in .data/jwt-secret (so tokens survive a restart of `npm start`).
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEV_SECRET_FILE = fileURLToPath(new URL('../.data/jwt-secret', import.meta.url));

export async function devJwtSecret(file = DEV_SECRET_FILE): Promise<string> {
  const existing = await readFile(file, 'utf8').catch(() => '');
  if (existing.trim()) return existing.trim();
  await mkdir(dirname(file), { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  // wx: two processes starting at once keep the first one's secret
  await writeFile(file, secret + '\n', { mode: 0o600, flag: 'wx' }).catch(async (error) => {
    if (error.code !== 'EEXIST') throw error;
  });
  return (await readFile(file, 'utf8')).trim();
}

/** JWT_SECRET if set; otherwise the development secret when allowed. */
export async function jwtSecret(options: { allowDevSecret: boolean }): Promise<string> {
  if (process.env.JWT_SECRET) return process.env.JWT_SECRET;
  if (options.allowDevSecret) return await devJwtSecret();
  throw new Error('JWT_SECRET is not set');
}
