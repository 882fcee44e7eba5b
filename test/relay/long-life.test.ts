// A relay runs for months, for thousands of companies whose receivers come and go:
// what it holds must not grow with the work it has done. An in-process relay, a warm
// phase and then ten times the work (webhooks on origins of their own, receivers that
// answer, fail, redirect, reset, close or never answer, secrets rotated, webhooks
// deleted and receivers gone), or its database connections broken again and again:
// afterwards it holds the same handles, sockets and bookkeeping as after the first.
// (The tests run one at a time: they count what the whole process holds.)
import { readdirSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import test from 'ava';
import { CHANNEL, WEBHOOK_CHANGED_NOTICE } from '../../relay/engine-names.ts';
import type { Relay } from '../../relay/loop.ts';
import { relayScene, testRelay, waitForFinalDeliveries, waitForRows } from '../helpers/relay.ts';
import { until } from '../helpers/until.ts';

const ANSWERS: Record<string, (socket: Socket) => void> = {
  ok: (s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'),
  closes: (s) => s.end('HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok'),
  fails: (s) => s.write('HTTP/1.1 500 Oops\r\ncontent-length: 4\r\n\r\noops'),
  redirects: (s) => s.write('HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1/elsewhere\r\ncontent-length: 0\r\n\r\n'),
  resets: (s) => s.destroy(),
  silent: () => {},
};
const KINDS = Object.keys(ANSWERS);

/** A receiver on `host` answering each request as `kind` says; close() drops it and its connections (it vanishes). */
async function receiver(host: string, kind: string) {
  const open = new Set<Socket>();
  const server = createServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(buffered.slice(0, end))?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.slice(end + 4 + length);
        ANSWERS[kind]!(socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const url = `http://${host}:${(server.address() as { port: number }).port}/hook`;
  return {
    url,
    close: () => {
      for (const socket of open) socket.destroy();
      server.close();
    },
  };
}

/**
 * What the relay holds now: its process's file descriptors and handles, undici's
 * origins, its bookkeeping. Less the connections of the relay's pool, which opens
 * up to its three as its settles and timers happen to overlap, and the claims' own.
 */
function holdings(relay: Relay) {
  const handles: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) handles[kind] = (handles[kind] ?? 0) + 1;
  const databaseConnections = relay.pool.totalCount + relay.claimPool.totalCount;
  handles.TCPSocketWrap = (handles.TCPSocketWrap ?? 0) - databaseConnections;
  const inner = relay as unknown as {
    sender: { origins: number };
    slots: Record<string, unknown>;
    holdings: { size: number };
    pacing: Map<unknown, unknown>;
  };
  const bookkeeping: Record<string, number> = { held: inner.holdings.size, pacing: inner.pacing.size, origins: inner.sender.origins };
  for (const [name, value] of Object.entries(inner.slots)) {
    if (value instanceof Map || value instanceof Set) bookkeeping[`slots.${name}`] = value.size;
  }
  return { fds: readdirSync('/proc/self/fd').length - databaseConnections, handles, bookkeeping };
}

/**
 * holdings(), the least of each count over a moment: a claim or a settle under way
 * holds a timer or two of its own (the query's timeout, the gathering of results).
 */
async function floor(relay: Relay) {
  const least = holdings(relay);
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    const now = holdings(relay);
    least.fds = Math.min(least.fds, now.fds);
    for (const kind of new Set([...Object.keys(least.handles), ...Object.keys(now.handles)])) {
      least.handles[kind] = Math.min(least.handles[kind] ?? 0, now.handles[kind] ?? 0);
    }
  }
  return least;
}

test.serial('ten times the work to ten times the receivers, failing, redirected, silent, secrets rotated, webhooks deleted: the relay holds no more than after the first', async (t) => {
  const { database, f } = await relayScene(t, { retryBase: '10 milliseconds' });
  // (every failure counted against a webhook: none waits behind its circuit breaker)
  await database.pool.query(`alter database ${database.name} set webhooks.breaker_after = 1000`);
  const relay = testRelay(database.url, { RELAY_REQUEST_TIMEOUT_MS: '1000', RELAY_CONNECT_TIMEOUT_MS: '1000' });
  t.teardown(() => relay.stop());
  await relay.start();

  let network = 0;
  /** `companies` companies, each with a webhook to a receiver of every kind on an address of its own; each sent 4 contacts, its secrets rotated after 2 */
  const phase = async (companies: number) => {
    const receivers = [];
    const webhooks: string[] = [];
    const kindOf = new Map<string, string>();
    for (let c = 0; c < companies; c++) {
      network++;
      const company = await f.company();
      const ids = [];
      for (const [i, kind] of KINDS.entries()) {
        const r = await receiver(`127.0.${100 + network}.${i + 1}`, kind);
        receivers.push(r);
        // (a silent receiver's attempt takes the whole request timeout: one is enough)
        const { id } = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: r.url, maxAttempts: kind === 'silent' ? 1 : 2 });
        ids.push(id);
        kindOf.set(id, kind);
      }
      for (let k = 0; k < 2; k++) await f.contact(company.id);
      await database.pool.query('update webhooks.webhooks set secret_rotated_at = now() where id = any ($1::bigint[])', [ids]);
      for (let k = 0; k < 2; k++) await f.contact(company.id);
      webhooks.push(...ids);
    }
    const deliveries = await waitForFinalDeliveries(database.pool, webhooks, webhooks.length * 4, 30_000);
    const outcomes: Record<string, Record<string, number>> = {};
    for (const d of deliveries) {
      const kind = kindOf.get(String(d.webhook_id))!;
      outcomes[kind] ??= {};
      outcomes[kind][d.state] = (outcomes[kind][d.state] ?? 0) + 1;
    }
    const each = 4 * companies;
    t.deepEqual(outcomes, {
      ok: { succeeded: each }, closes: { succeeded: each },
      fails: { failed: each }, redirects: { failed: each }, resets: { failed: each }, silent: { failed: each },
    });
    await database.pool.query('delete from webhooks.webhooks where id = any ($1::bigint[])', [webhooks]);
    for (const r of receivers) r.close();
    // the receivers are gone: undici lets each origin go once its connections close
    await until('every origin let go', async () => holdings(relay).bookkeeping.origins === 0);
  };

  await phase(1);
  const warm = await floor(relay);
  await phase(10);
  const after = await floor(relay);
  t.deepEqual(after.bookkeeping, warm.bookkeeping);
  t.deepEqual(after.handles, warm.handles);
  t.is(after.fds, warm.fds);
});

test.serial('its database connections broken ten times over, and woken thousands of times: the relay reconnects each time and holds no more timers, sockets or listeners than before', async (t) => {
  const { database, f, company } = await relayScene(t);
  const r = await receiver('127.0.99.1', 'ok');
  t.teardown(() => r.close());
  const webhook = await f.webhook({ companyId: company.id, actions: ['contact.created'], url: r.url });
  const warnings: string[] = [];
  const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
  process.on('warning', onWarning);
  t.teardown(() => void process.off('warning', onWarning));
  const relay = testRelay(database.url);
  t.teardown(() => relay.stop());
  await relay.start();

  const kinds = ['bpd-webhooks-relay', 'bpd-webhooks-relay-idle', 'bpd-webhooks-relay-listener'];
  let sent = 0;
  /** one more delivery made and settled, with every kind of the relay's connections open again */
  const deliver = async () => {
    await f.contact(company.id);
    await waitForFinalDeliveries(database.pool, [webhook.id], ++sent);
    await waitForRows(database.pool,
      `select count(distinct application_name)::int as kinds from pg_stat_activity where datname = $1 and application_name = any ($2)`,
      [database.name, kinds], ([row]) => row.kinds === kinds.length, 10_000);
  };
  await deliver();
  const warm = await floor(relay);
  for (let i = 0; i < 10; i++) {
    await database.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name = any ($2)`,
      [database.name, kinds]);
    await deliver();
  }
  // woken by notifications (of changes, and of webhooks changed) and by hand
  await database.pool.query(`select pg_notify($1, case when i % 2 = 0 then '' else $2 || i end) from generate_series(1, 2000) i`,
    [CHANNEL, WEBHOOK_CHANGED_NOTICE]);
  for (let i = 0; i < 2000; i++) {
    relay.wake();
    if (i % 100 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  await deliver();
  const after = await floor(relay);
  t.deepEqual(after.handles, warm.handles);
  t.is(after.fds, warm.fds);
  t.is(relay.pool.listenerCount('error'), 1);
  t.is(relay.claimPool.listenerCount('error'), 1);
  t.deepEqual(warnings, []);
  const deliveries = await waitForFinalDeliveries(database.pool, [webhook.id], 12);
  t.true(deliveries.every((d) => d.state === 'succeeded'));
});
