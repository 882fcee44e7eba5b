// Where the admin API (and its Reports page) listens, as every command reads it from
// the environment: PORT and HOST, an empty one unset (a compose file's `PORT: ${PORT}`
// with PORT unset: PORT= is no port 0, HOST= no every address).

export const DEFAULT_API_PORT = 5678;
export const DEFAULT_API_HOST = '127.0.0.1';

export function apiAddress(env: NodeJS.ProcessEnv = process.env): { port: number; host: string } {
  return { port: Number(env.PORT || DEFAULT_API_PORT), host: env.HOST || DEFAULT_API_HOST };
}

/** The address to reach it at from this machine (localhost when it listens on every address). */
export function apiUrl(env: NodeJS.ProcessEnv = process.env): string {
  const { port, host } = apiAddress(env);
  return `http://${host === '0.0.0.0' ? 'localhost' : host}:${port}`;
}
