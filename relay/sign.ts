// Standard Webhooks signatures (https://www.standardwebhooks.com): the receiver
// recomputes HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>" with the
// secret it was given and compares. During a secret rotation both the new and the
// still-valid previous secret sign, space-separated, so receivers holding either
// keep verifying.
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';

const PREFIX = 'whsec_';

/** The HMAC key of a "whsec_<base64>" secret: the base64 part, decoded. */
export function secretKey(secret: string): Buffer {
  if (!secret.startsWith(PREFIX)) throw new Error('a signing secret must start with whsec_');
  const key = Buffer.from(secret.slice(PREFIX.length), 'base64');
  if (key.length === 0) throw new Error('a signing secret must not be empty');
  return key;
}

// Importing a key costs more than the HMAC itself; a relay signs with few secrets,
// many times each. Bounded, in case of very many webhooks.
const keys = new Map<string, KeyObject>();
function keyObject(secret: string): KeyObject {
  let key = keys.get(secret);
  if (!key) {
    if (keys.size >= 10_000) keys.clear();
    key = createSecretKey(secretKey(secret));
    keys.set(secret, key);
  }
  return key;
}

export function sign(secret: string, messageId: string, timestamp: number, body: string): string {
  // the signed content "<id>.<timestamp>.<body>" in two parts: the body (about a KiB)
  // is not copied into a new string first
  const mac = createHmac('sha256', keyObject(secret)).update(`${messageId}.${timestamp}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** The three Standard Webhooks headers; `now` in milliseconds. */
export function signatureHeaders(
  messageId: string,
  body: string,
  secret: string,
  previousSecrets: readonly string[],
  now: number = Date.now(),
): SignedHeaders {
  const timestamp = Math.floor(now / 1000);
  const signatures = [sign(secret, messageId, timestamp, body)];
  for (const previous of previousSecrets) {
    if (previous !== secret) signatures.push(sign(previous, messageId, timestamp, body));
  }
  return {
    'webhook-id': messageId,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signatures.join(' '),
  };
}
