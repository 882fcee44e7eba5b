// The demo's receiver: a small HTTP server on loopback that takes the webhooks' POSTs,
// verifies each signature with the `standardwebhooks` package (as a customer's
// receiver would, not with this project's own signing code), logs one line per
// request and shows the latest ones on a page of its own (GET /).
//
// Now and then /tasks answers 503 Service Unavailable, so that the demo shows a
// failed attempt, its retry and its history.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Received {
  at: Date;
  path: string;
  messageId: string;
  type: string;
  verified: boolean;
  status: number;
  summary: string;
}

export interface DemoReceiver {
  url: string;
  received: Received[];
  /** the secrets each path accepts (replaced when the webhooks are seeded or rotated) */
  setSecrets(path: string, secrets: string[]): void;
  close(): Promise<void>;
}

const KEEP = 200;
const FLAKY_PATH = '/tasks';
const FLAKY_EVERY = 6;

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function summaryOf(body: any): string {
  const contact = body?.data?.contact ?? {};
  const name = [contact.first_name, contact.last_name].filter(Boolean).join(' ') || contact.email || `contact #${contact.id}`;
  const extra = body?.data?.status?.name ? ` · status ${body.data.status.name}`
    : body?.data?.user?.name ? ` · user ${body.data.user.name}`
      : body?.data?.changed_fields?.length ? ` · changed ${body.data.changed_fields.join(', ')}` : '';
  return `${name}${extra}`;
}

function verify(secrets: string[], body: string, headers: IncomingHttpHeaders): boolean {
  return secrets.some((secret) => {
    try {
      new Webhook(secret).verify(body, headers as Record<string, string>);
      return true;
    } catch {
      return false;
    }
  });
}

function page(received: Received[]): string {
  const rows = received.slice().reverse().map((r) => `<tr>
      <td>${escapeHtml(r.at.toISOString().replace('T', ' ').slice(0, 19))}</td>
      <td><code>${escapeHtml(r.path)}</code></td>
      <td>${escapeHtml(r.type)}</td>
      <td>${escapeHtml(r.summary)}</td>
      <td class="${r.verified ? 'ok' : 'bad'}">${r.verified ? 'verified' : 'BAD SIGNATURE'}</td>
      <td>${r.status}</td>
      <td><code>${escapeHtml(r.messageId)}</code></td></tr>`).join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="3">
<title>Demo receiver · bpd-webhooks</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#1f2330}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #e3e5ec;padding:6px 8px;text-align:left}.ok{color:#1d7a46}.bad{color:#b3261e;font-weight:600}</style>
</head><body><h1>Demo receiver</h1>
<p>What the webhooks of Demo Realty sent here, newest first (the latest ${KEEP}); each signature checked with the
<code>standardwebhooks</code> package. The page reloads every 3 seconds.</p>
<table><thead><tr><th>Received (UTC)</th><th>Path</th><th>Type</th><th>Contact</th><th>Signature</th><th>Answered</th><th>webhook-id</th></tr></thead>
<tbody>${rows || '<tr><td colspan="7">Nothing yet.</td></tr>'}</tbody></table></body></html>`;
}

/** Starts the receiver on 127.0.0.1 (port 0: any free one). log gets one line per request. */
export async function startDemoReceiver(port: number, log: (line: string) => void = () => {}): Promise<DemoReceiver> {
  const secrets = new Map<string, string[]>();
  const received: Received[] = [];
  let flakyCount = 0;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET') {
      if (path !== '/') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(received));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const verified = verify(secrets.get(path) ?? [], body, req.headers);
      let parsed: any = null;
      try {
        parsed = JSON.parse(body);
      } catch {
        // shown as it is below
      }
      const flaky = path === FLAKY_PATH && ++flakyCount % FLAKY_EVERY === 0;
      const status = !verified ? 401 : flaky ? 503 : 200;
      const entry: Received = {
        at: new Date(),
        path,
        messageId: String(req.headers['webhook-id'] ?? ''),
        type: String(parsed?.type ?? '?'),
        verified,
        status,
        summary: parsed ? summaryOf(parsed) : body.slice(0, 80),
      };
      received.push(entry);
      if (received.length > KEEP) received.shift();
      log(`receiver ${status} ${path} ${entry.type} · ${entry.summary} · ${verified ? 'signature verified' : 'BAD SIGNATURE'}${flaky ? ' (answered 503 on purpose: watch the retry)' : ''}`);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ received: verified }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // loopback only: the demo's receiver is never reachable from elsewhere
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    received,
    setSecrets: (path, list) => secrets.set(path, list),
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
