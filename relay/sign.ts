// Standard Webhooks signatures (https://www.standardwebhooks.com): the receiver
// recomputes HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>" with the
// secret it was given and compares. During a secret rotation both the new and the
// still-valid previous secret sign, space-separated, so receivers holding either
// keep verifying.
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { leastRecentlyUsed } from './lru.ts';

const PREFIX = 'whsec_';

/** The HMAC key of a "whsec_<base64>" secret: the base64 part, decoded. */
export function secretKey(secret: string): Buffer {
  if (!secret.startsWith(PREFIX)) throw new Error('a signing secret must start with whsec_');
  const key = Buffer.from(secret.slice(PREFIX.length), 'base64');
  if (key.length === 0) throw new Error('a signing secret must not be empty');
  return key;
}

/**
 * The signing keys kept derived, one a secret (a KeyObject each: under a kilobyte,
 * most of it OpenSSL's, outside the heap). Importing a key costs more than the HMAC itself;
 * a relay signs with few secrets, many times each. Past the bound the least recently
 * used key is forgotten: a fleet with more webhooks than this derives again only the
 * keys of those it signs for least often, one at a time, not every key at once (until 2026-12-06 the cache was emptied whenever it held this many, and every
 * key was derived again after it).
 */
export const SIGNING_KEYS_MAX = 10_000;

// (least recently used out: relay/lru.ts)
const keys = new Map<string, KeyObject>();
let derived = 0;
function keyObject(secret: string): KeyObject {
  return leastRecentlyUsed(keys, secret, SIGNING_KEYS_MAX, derive);
}
function derive(secret: string): KeyObject {
  derived++;
  return createSecretKey(secretKey(secret));
}

/** How many signing keys this process has derived from secrets (each a miss of the cache). */
export function signingKeysDerived(): number {
  return derived;
}

export function sign(secret: string, messageId: string, timestamp: number, body: string): string {
  // the signed content "<id>.<timestamp>.<body>" in two parts: the body (about a KiB)
  // is not copied into a new string first
  const mac = createHmac('sha256', keyObject(secret)).update(`${messageId}.${timestamp}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

/** The webhook-timestamp of a time in milliseconds: whole seconds. */
export function signedTimestamp(now: number): number {
  return Math.floor(now / 1000);
}

/**
 * The webhook-signature header's value: the current secret's signature, then each
 * still-valid previous secret's, space-separated. Built as one string, no array
 * joined: a send with no previous secret (the usual) allocates its signature alone.
 */
export function signatures(messageId: string, body: string, secret: string, previousSecrets: readonly string[], timestamp: number): string {
  let value = sign(secret, messageId, timestamp, body);
  for (const previous of previousSecrets) {
    if (previous !== secret) value += ` ${sign(previous, messageId, timestamp, body)}`;
  }
  return value;
}

/**
 * A delivery's request headers in one object: its content's and its sender's, and the
 * three Standard Webhooks headers (a spread of the signature's headers into the
 * others made a second object each send).
 */
export function deliveryHeaders(userAgent: string, messageId: string, timestamp: number, signature: string) {
  return {
    'content-type': 'application/json',
    'user-agent': userAgent,
    'webhook-id': messageId,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signature,
  };
}
