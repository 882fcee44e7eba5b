// The process of one part under tools/supervisor.ts: `node tools/part.ts <entry.ts>`.
// The part runs as it would alone (its own SIGTERM handling stops it gracefully);
// this only ties its life to the supervisor's: when the IPC channel closes (the
// supervisor exited, however it died), the part is asked to stop like on SIGTERM.
import { pathToFileURL } from 'node:url';

const entry = process.argv[2];
if (!entry) {
  console.error('usage: node tools/part.ts <entry point>');
  process.exit(2);
}
process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
// the channel must not keep a part alive that has finished on its own
process.channel?.unref();
await import(pathToFileURL(entry).href);
