// Where the admin API (and its Reports page) listens, as every command reads it from
// the environment: PORT and HOST, an empty one unset (a compose file's `PORT: ${PORT}`
// with PORT unset: PORT= is no port 0, HOST= no every address).

export const DEFAULT_API_PORT = 5678;
export const DEFAULT_API_HOST = '127.0.0.1';

export function apiAddress(env: NodeJS.ProcessEnv = process.env): { port: number; host: string } {
  return { port: portSetting(env, 'PORT', DEFAULT_API_PORT), host: env.HOST || DEFAULT_API_HOST };
}

/** A port the environment names (empty: unset, the fallback); one that is no port is
 * refused by name: node's listen said only `options.port should be >= 0 and < 65536`,
 * with its stack, and the embedded Postgres was handed NaN. 0 is any free port. */
export function portSetting(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const text = env[name];
  if (!text) return fallback;
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port > 65_535) {
    throw new Error(`${name} must be a port, a whole number from 0 to 65535, got ${JSON.stringify(text)}`);
  }
  return port;
}

/** The address to reach it at from this machine (localhost when it listens on every address). */
export function apiUrl(env: NodeJS.ProcessEnv = process.env): string {
  const { port, host } = apiAddress(env);
  return `http://${host === '0.0.0.0' ? 'localhost' : host}:${port}`;
}
