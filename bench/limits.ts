// The machine's limits, each measured in a child process of its own:
//   http: the same ~1 KiB body, signed, POSTed to the receiver with the same undici
//         Pool and the same concurrency as the contenders, as fast as it goes; no database.
//   db:   the relay's own claim and settle SQL over a pre-filled outbox, with the same
//         concurrency and batch as the relay, settling every claimed row as delivered
//         (204) without any HTTP.
// A contender that delivers through both can at best reach the lower of the two.
import { serveChild } from './child.ts';
import { now } from './clock.ts';
import { BENCH_SECRET, post, senderPool, webhookHeaders } from './http.ts';

async function httpLimit(): Promise<void> {
  const origin = process.env.RECEIVER_ORIGIN!;
  const path = process.env.RECEIVER_PATH!;
  const concurrency = Number(process.env.CONCURRENCY);
  const total = Number(process.env.COUNT);
  // the body with "seq":0, as the relay would send change 0
  const template = process.env.BODY!;
  const pool = senderPool(origin, concurrency);
  let next = 1;
  let failures = 0;

  async function lane(): Promise<void> {
    while (next <= total) {
      const seq = next++;
      const body = template.replace('"seq":0', `"seq":${seq}`);
      const status = await post(pool, path, webhookHeaders(BENCH_SECRET, `msg_limit_${seq}`, body), body);
      if (status !== 204) failures++;
    }
  }

  await serveChild(async (finished) => ({
    start() {
      const started = now();
      void Promise.all(Array.from({ length: concurrency }, lane)).then(() =>
        finished({ elapsedMs: now() - started, sent: total, failures }),
      );
    },
    async stop() {
      await pool.close();
    },
  }));
}

if (process.send) {
  if (process.env.LIMIT === 'http') await httpLimit();
  else throw new Error(`unknown LIMIT ${process.env.LIMIT}`);
}
