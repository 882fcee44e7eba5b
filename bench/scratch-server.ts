import { startEmbeddedPostgres } from '../relay/db/embedded.ts';
import { migrate } from '../relay/db/migrate.ts';
import pg from 'pg';
const s = await startEmbeddedPostgres({ dataDir: '/tmp/scratch-pg', port: 5488, fast: true });
const c = new pg.Client({ connectionString: s.url() }); await c.connect();
await c.query('drop database if exists x'); await c.query('create database x'); await c.end();
await migrate(s.url('x'));
console.log('ready');
setInterval(() => {}, 1e9);
