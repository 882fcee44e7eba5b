// A process that runs the relay's notification listener alone, for
// test/relay/listener.test.ts: it says over IPC when it is listening and when it
// has lost its connection, closes the listener when told, and then has nothing
// left to do: it must exit by itself.
import { startListener } from '../../relay/listener.ts';

const say = (what: string) => process.send?.(what);
const log = {
  debug: (_: unknown, message?: string) => { if (message === 'listening for notifications') say('listening'); },
  info: () => {},
  warn: (...parts: unknown[]) => { if (parts.some((p) => typeof p === 'string' && p.includes('lost'))) say('lost'); },
  error: () => {},
};
let listening = false;
const listener = startListener({
  databaseUrl: process.env.DATABASE_URL!,
  log: log as never,
  onWake: () => {
    if (!listening) say('listening');
    listening = true;
  },
  // a lost connection is found within this, whatever the socket says
  checkEveryMs: 200,
});
process.on('message', async (message) => {
  if (message !== 'close') return;
  await listener.close();
  say('closed');
  process.disconnect();
});
