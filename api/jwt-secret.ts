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

/**
 * The shortest secret accepted, in bytes: HS256's own size (RFC 7518, 3.2). Every
 * admin of every company holds a token signed with it, and from any one of them a
 * secret can be guessed offline (an HMAC check costs microseconds, and the API is
 * never asked): a word, or a few random letters, gave the one who found it a token of
 * any company the API took as genuine.
 */
export const JWT_SECRET_MIN_BYTES = 32;

/** Throws, naming JWT_SECRET, for a secret shorter than JWT_SECRET_MIN_BYTES (its UTF-8 bytes, as it is used). */
export function refuseWeakJwtSecret(secret: string): void {
  const bytes = Buffer.byteLength(secret, 'utf8');
  if (bytes < JWT_SECRET_MIN_BYTES) {
    throw new Error(`JWT_SECRET must be at least ${JWT_SECRET_MIN_BYTES} bytes, random (openssl rand -base64 32), ` +
      `not ${bytes}: the API verifies tokens with it (HS256)`);
  }
}

/** JWT_SECRET if set (and long enough); otherwise the development secret when allowed. */
export async function jwtSecret(options: { allowDevSecret: boolean }): Promise<string> {
  const secret = process.env.JWT_SECRET || (options.allowDevSecret ? await devJwtSecret() : undefined);
  if (secret === undefined) throw new Error('JWT_SECRET is not set: the API verifies tokens with it (HS256)');
  refuseWeakJwtSecret(secret);
  return secret;
}
