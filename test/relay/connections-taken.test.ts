// A database that takes no more connections (the CRM's own apps hold every one the
// server's max_connections, or a connection limit, allows: SQLSTATE 53300) is a wait,
// not a refusal: the relay started then waits for a connection, saying so, and delivers
// once it has one. Until 2026-12-07 it stopped at once, exit status 1, saying it could
// not work in that database and to grant it its role.
import test from 'ava';
import { connectionsTaken, relayLoginUrl } from '../helpers/crm-role.ts';
import { ownConnection } from '../helpers/db.ts';
import { relayScene, rememberedLog, testRelay } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

test('a relay started while the CRM\'s apps hold every connection the database takes waits, saying so, and delivers once one is let go', async (t) => {
  const { database, receiver, f, company } = await relayScene(t);
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: receiver.url('/hook') });
  receiver.route('/hook', { secret: webhook.secret });
  await f.contact(company.id);
  const login = await relayLoginUrl(t, database);

  const { letGo } = await connectionsTaken(t, database.pool, login.role);
  const refused = await ownConnection(login.url, t).then(() => null, (error: { code?: string }) => error.code);
  t.is(refused, '53300', 'the relay\'s login gets no connection');

  const { log, lines } = rememberedLog();
  const relay = testRelay(login.url, {}, { log });
  t.teardown(() => relay.stop());
  let stopped: Error | undefined;
  const started = relay.start().catch((error: Error) => { stopped = error; });
  await until('the relay says it waits for the database', async () =>
    stopped !== undefined || lines().some((line) => line.includes('too many connections')));
  t.is(stopped?.message, undefined, 'the relay did not stop');
  const waiting = lines().map((line) => JSON.parse(line)).filter((line) => line.msg === 'database not reachable yet; the relay keeps trying');
  t.is(waiting.length, 1, lines().join('\n'));
  t.regex(waiting[0].err.message, /too many connections for role/);
  t.is(waiting[0].level, 40);

  // the apps let go of connections: the relay takes them, and delivers
  await letGo();
  await receiver.waitFor(1, { path: '/hook' });
  await started;
  t.true(lines().some((line) => JSON.parse(line).msg === 'relay started'), lines().join('\n'));
});
