// The open-loop writer: changes contacts at a fixed rate whatever the contender does
// (an open loop: a slow contender does not slow the arrivals down), each change its
// own transaction, and records when each commit returned. When the database cannot
// take the rate (more than MAX_PENDING changes waiting for their commit), due changes
// are dropped rather than queued, so the window stays bounded in time; the rate
// actually written is reported next to the rate offered.
import pg from 'pg';
import { now } from './clock.ts';
import { contactOf, SINGLE_CHANGE } from './database.ts';

const CONNECTIONS = 16;
const MAX_PENDING = 4 * CONNECTIONS;

export interface Written {
  /** seq → time its commit returned; changes are numbered 1..committed */
  committedAt: Float64Array;
  committed: number;
  /** due changes not written because the database was MAX_PENDING behind */
  dropped: number;
  failed: number;
  /** how late the commits returned against their schedule, p99 in ms */
  lateP99Ms: number;
  startedAt: number;
  endedAt: number;
}

export async function writeAtRate(
  url: string,
  rate: number,
  seconds: number,
  /** called every ~250 ms with the number committed so far */
  sample: (committed: number) => void,
  /** the changes write custom.seq = seqOffset + their number (a warm-up writes apart from the window) */
  seqOffset = 0,
): Promise<Written> {
  const total = Math.round(rate * seconds);
  const committedAt = new Float64Array(total + 1);
  const late: number[] = [];
  // enough connections that commit waits (fsync) overlap: Postgres groups their flushes
  // (and never closed for being idle: pg's pool closes a client idle for 10 s, and its
  // replacement would start cold in the middle of the window)
  const pool = new pg.Pool({ connectionString: url, max: CONNECTIONS, idleTimeoutMillis: 0 });
  // open the connections before the clock starts, and warm each one, as an
  // application's pool is warm: a change rolled back runs the contender's triggers
  // once on every connection (their functions compiled, their statements planned)
  // and leaves nothing to deliver. Cold, sixteen first changes at the window's start
  // took the CPU the senders needed: 75 of the 77 deliveries slower than 30 ms in a
  // 250/s window of bpd-webhooks came in its first 170 ms (2026-12-01).
  const clients = await Promise.all(Array.from({ length: CONNECTIONS }, () => pool.connect()));
  await Promise.all(
    clients.map(async (client, i) => {
      await client.query('begin');
      await client.query({ name: 'bench-change', text: SINGLE_CHANGE, values: [contactOf(seqOffset + i + 1), 0] });
      await client.query('rollback');
    }),
  );
  for (const client of clients) client.release();
  let committed = 0;
  let failed = 0;
  let dropped = 0;
  let due = 0;
  let seq = 0;
  const inFlight = new Set<Promise<void>>();
  const startedAt = now();
  const endAt = startedAt + seconds * 1000;
  let lastSample = startedAt;

  while (due < total && now() < endAt) {
    const dueNow = Math.min(total, Math.floor(((now() - startedAt) * rate) / 1000) + 1);
    for (; due < dueNow; due++) {
      if (inFlight.size >= MAX_PENDING) {
        dropped++;
        continue;
      }
      const mine = ++seq;
      const scheduled = startedAt + (due * 1000) / rate;
      const write: Promise<void> = pool
        .query({ name: 'bench-change', text: SINGLE_CHANGE, values: [contactOf(seqOffset + mine), seqOffset + mine] })
        .then(
          () => {
            const at = now();
            committedAt[mine] = at;
            late.push(at - scheduled);
            committed++;
          },
          () => void failed++,
        )
        .finally(() => inFlight.delete(write));
      inFlight.add(write);
    }
    if (now() - lastSample >= 250) {
      lastSample = now();
      sample(committed);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(inFlight);
  const endedAt = now();
  await pool.end();
  late.sort((a, b) => a - b);
  return {
    committedAt,
    committed,
    dropped,
    failed,
    lateP99Ms: late[Math.max(0, Math.ceil(late.length * 0.99) - 1)] ?? Number.NaN,
    startedAt,
    endedAt,
  };
}
