// Claim: one round trip leases a batch of due deliveries to this relay
// (webhooks_relay.claim_deliveries decides which, see sql/30_delivery.sql).
import type pg from 'pg';

/** One delivery as leased: everything needed to send it. */
export interface DeliveryJob {
  deliveryId: string;
  messageId: string;
  webhookId: string;
  /** the number of this attempt, 1 for the first */
  attempt: number;
  url: string;
  /** the stored payload, serialised once by Postgres: sent and signed byte for byte */
  body: string;
  secret: string | null;
  previousSecret: string | null;
  /**
   * The webhook's rate_limit pacing (epoch ms; null: not paced): sent not before
   * sendAt and before sendUntil, else handed back (the claim's slots add up to the
   * rate across the whole fleet).
   */
  sendAt: number | null;
  sendUntil: number | null;
}

export interface ClaimRequest {
  relayId: string;
  limit: number;
  leaseMs: number;
  perWebhookInFlight: number;
  /** requests this relay already has in flight, per webhook id */
  busy: ReadonlyMap<string, number>;
  /** refill these webhooks only; null: discover due work of all webhooks */
  only: string[] | null;
  /** the relay's request slots: each company with work gets its share of them */
  slots: number;
}

export interface Claimed {
  jobs: DeliveryJob[];
  /** a discovery was cut off at the limit: more may be due now */
  moreDue: boolean;
  /** a webhook with due deliveries was at its fleet-wide cap: look again after a settle */
  atCap: boolean;
}

const CLAIM = `
  select delivery_id, message_id, webhook_id, attempt, url, body, secret, previous_secret,
         (extract(epoch from send_at) * 1000)::float8 as send_at,
         (extract(epoch from send_until) * 1000)::float8 as send_until, more_due, at_cap
  from webhooks_relay.claim_deliveries($1, $2, make_interval(secs => $3::float8 / 1000), $4, $5::bigint[], $6::integer[], $7::bigint[], $8)`;

export async function claimDeliveries(db: Pick<pg.Pool, 'query'>, request: ClaimRequest): Promise<Claimed> {
  const { rows } = await db.query({
    name: 'bpd_webhooks_claim',
    text: CLAIM,
    values: [
      request.relayId,
      request.limit,
      request.leaseMs,
      request.perWebhookInFlight,
      [...request.busy.keys()],
      [...request.busy.values()],
      request.only,
      request.slots,
    ],
  });
  const jobs = rows.filter((row) => row.delivery_id !== null).map((row) => ({
    deliveryId: row.delivery_id,
    messageId: row.message_id,
    webhookId: row.webhook_id,
    attempt: row.attempt,
    url: row.url,
    body: row.body,
    secret: row.secret,
    previousSecret: row.previous_secret,
    sendAt: row.send_at === null ? null : Number(row.send_at),
    sendUntil: row.send_until === null ? null : Number(row.send_until),
  }));
  return { jobs, moreDue: rows.some((row) => row.more_due), atCap: rows.some((row) => row.at_cap) };
}
