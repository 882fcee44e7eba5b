// Names the SQL engine (sql/) defines and TypeScript must use exactly as they are:
// the NOTIFY channel and the advisory-lock keys of the wake-up protocol, defined in
// SQL in sql/00_schemas.sql (test/sql/notify.test.ts checks that both agree). Only
// tests and the listener need them; the relay itself goes through the engine's functions.

/** The channel capture notifies on commit when a relay sleeps (sql/20_wakeup.sql). */
export const CHANNEL = 'bpd_webhooks';

/**
 * A notification on CHANNEL whose payload starts with this names a webhook that changed
 * its URL, was disabled or deleted, or had its secret rotated: the relay hands back
 * what it holds of it unsent (sql/20_wakeup.sql, relay/loop.ts).
 */
export const WEBHOOK_CHANGED_NOTICE = 'webhook_changed:';

/** The class of every advisory lock the engine takes: 'bpdw' as a 32-bit integer. */
export const LOCK_CLASS = 1651532919;

/** Advisory-lock keys within LOCK_CLASS (sql/20_wakeup.sql). */
export const LOCK_KEYS = {
  /** held shared by every capturing transaction that skipped its NOTIFY, until it ends */
  capturing: 1,
  /** held shared by every relay waiting for work, on its idle connection, until it wakes */
  relayIdle: 2,
} as const;
