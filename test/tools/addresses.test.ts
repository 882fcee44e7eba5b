// Where `npm start`'s parts are, as every command reads it from the environment: an
// empty PORT, HOST, DATABASE_URL or EMBEDDED_PG_PORT is unset (a compose file's
// `PORT: ${PORT}` with PORT unset), as npm start and the API take them. `npm run
// demo` read them with `??`: PORT= made it look for the API at port 0, and HOST= at
// "http://:5678".
import test from 'ava';
import { apiAddress, apiUrl } from '../../api/address.ts';
import { startDatabaseUrl } from '../../tools/database-url.ts';

test('the API\'s address: PORT and HOST, their defaults when unset or empty, localhost for every address', (t) => {
  t.deepEqual(apiAddress({}), { port: 5678, host: '127.0.0.1' });
  t.deepEqual(apiAddress({ PORT: '', HOST: '' }), { port: 5678, host: '127.0.0.1' });
  t.deepEqual(apiAddress({ PORT: '6000', HOST: '::1' }), { port: 6000, host: '::1' });
  t.is(apiUrl({ PORT: '', HOST: '' }), 'http://127.0.0.1:5678');
  t.is(apiUrl({ PORT: '6000', HOST: '0.0.0.0' }), 'http://localhost:6000');
});

test('the database npm start uses: DATABASE_URL, else its embedded one, an empty setting unset', (t) => {
  t.is(startDatabaseUrl({}), 'postgres://postgres:postgres@127.0.0.1:5433/bpd_webhooks');
  t.is(startDatabaseUrl({ DATABASE_URL: '', EMBEDDED_PG_PORT: '' }), 'postgres://postgres:postgres@127.0.0.1:5433/bpd_webhooks');
  t.is(startDatabaseUrl({ EMBEDDED_PG_PORT: '6543' }), 'postgres://postgres:postgres@127.0.0.1:6543/bpd_webhooks');
  t.is(startDatabaseUrl({ DATABASE_URL: 'postgres://crm@db/crm' }), 'postgres://crm@db/crm');
});
