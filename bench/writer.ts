// The open-loop writer: changes contacts at a fixed rate whatever the contender does
// (an open loop: a slow contender does not slow the arrivals down), each change its
// own transaction, and records when each commit returned.
import pg from 'pg';
import { now } from './clock.ts';
import { contactOf, SINGLE_CHANGE } from './database.ts';

export interface Written {
  /** seq → time its commit returned (0 if it did not) */
  committedAt: Float64Array;
  committed: number;
  /** how late the commits returned against their schedule, p99 in ms */
  lateP99Ms: number;
  /** the first commit's schedule time and the last commit's time */
  startedAt: number;
  endedAt: number;
}

export async function writeAtRate(
  url: string,
  rate: number,
  seconds: number,
  /** called every ~250 ms with the number committed so far */
  sample: (committed: number) => void,
): Promise<Written> {
  const total = Math.round(rate * seconds);
  const committedAt = new Float64Array(total + 1);
  const late: number[] = [];
  // enough connections that commit waits (fsync) overlap: Postgres groups their flushes
  const pool = new pg.Pool({ connectionString: url, max: 16 });
  // open the connections before the clock starts
  await Promise.all(Array.from({ length: 16 }, () => pool.query('select 1')));
  let committed = 0;
  let issued = 0;
  const inFlight = new Set<Promise<void>>();
  const startedAt = now();
  let lastSample = startedAt;
  const deadline = startedAt + seconds * 1000 + 30_000; // bound: give up on a stuck database

  while (issued < total && now() < deadline) {
    const due = Math.min(total, Math.floor(((now() - startedAt) * rate) / 1000) + 1);
    while (issued < due) {
      const seq = ++issued;
      const scheduled = startedAt + ((seq - 1) * 1000) / rate;
      const write: Promise<void> = pool.query({ name: 'bench-change', text: SINGLE_CHANGE, values: [contactOf(seq), seq] }).then(() => {
        const at = now();
        committedAt[seq] = at;
        late.push(at - scheduled);
        committed++;
        inFlight.delete(write);
      });
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
    lateP99Ms: late[Math.max(0, Math.ceil(late.length * 0.99) - 1)] ?? Number.NaN,
    startedAt,
    endedAt,
  };
}
