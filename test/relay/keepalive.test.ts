// The relay keeps its database connections open however long they are idle; a NAT or
// firewall on the path may drop a quiet one after a few minutes, and the next query on
// it would wait for an answer that never comes. So each has TCP keepalives after
// KEEPALIVE_AFTER_MS idle (the system's default is two hours): read here from the
// kernel's own timers (`ss -o`), for every connection the relay opened.
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { KEEPALIVE_AFTER_MS } from '../../relay/database.ts';
import { relayScene, testRelay, waitForRows } from '../helpers/relay.ts';

/**
 * Seconds until the keepalive timer of the established TCP socket from local port
 * `port` to the server's `serverPort` fires; null: none, or no such socket. (The
 * server's port too: a port the relay's connection left may be taken at once by
 * another socket of the machine, an HTTP client's with a keepalive of its own.)
 */
function keepaliveSeconds(port: number, serverPort: number): number | null {
  const out = execFileSync('ss', ['-tnoH', 'state', 'established', `( sport = :${port} and dport = :${serverPort} )`],
    { encoding: 'utf8' });
  const timer = /timer:\(keepalive,(?:(\d+)min)?(?:(\d+)(?:\.\d+)?sec)?(?:(\d+)ms)?/.exec(out);
  if (!timer) return null;
  return Number(timer[1] ?? 0) * 60 + Number(timer[2] ?? 0) + Number(timer[3] ?? 0) / 1000;
}

test("every database connection of the relay has TCP keepalives after KEEPALIVE_AFTER_MS idle, not the system's two hours", async (t) => {
  const { database, f, company } = await relayScene(t);
  await f.webhook({ companyId: company.id, actions: ['contact.created'] });
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();
  await f.contact(company.id);

  // the relay's connections, as the server sees them (their ports are the relay's
  // own): the pool's, the idle announcement's once it has gone idle, the listener's
  const kinds = ['bpd-webhooks-relay', 'bpd-webhooks-relay-idle', 'bpd-webhooks-relay-listener'];
  const activity = `select application_name, client_port from pg_stat_activity
     where datname = current_database() and application_name = any ($1) and client_port is not null`;
  const rows = await waitForRows<{ application_name: string; client_port: number }>(database.pool, activity,
    [kinds], (found) => kinds.every((kind) => found.some((r) => r.application_name === kind)), 10_000);
  const serverPort = Number(new URL(database.url).port);
  for (const { application_name, client_port } of rows) {
    // (a socket with data on its way shows its retransmission timer instead: ask again)
    let seconds = keepaliveSeconds(client_port, serverPort);
    for (let tries = 0; seconds === null && tries < 100; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      seconds = keepaliveSeconds(client_port, serverPort);
    }
    // a connection of the pool closed meanwhile has no socket left to ask
    if (seconds === null && !(await database.pool.query(activity, [kinds])).rows.some((r) => r.client_port === client_port)) {
      t.true(rows.some((r) => r.application_name === application_name && r.client_port !== client_port),
        `${application_name} (port ${client_port}): closed, and no other connection of its kind to ask`);
      continue;
    }
    t.not(seconds, null, `${application_name} (port ${client_port}): no keepalive timer`);
    t.true(seconds! <= KEEPALIVE_AFTER_MS / 1000, `${application_name} (port ${client_port}): keepalive in ${seconds} s`);
  }
});
