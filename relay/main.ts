// `npm run relay`: the relay alone, against the database in DATABASE_URL.
// SIGTERM or SIGINT stops it gracefully (see Relay.stop).
import { Relay } from './loop.ts';
import { relaySettings, SettingsError } from './settings.ts';

let relay: Relay;
try {
  relay = new Relay(relaySettings());
} catch (error) {
  if (error instanceof SettingsError) {
    console.error(`relay: ${error.message}`);
    process.exit(2);
  }
  throw error;
}

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    relay.log.info({ signal }, 'stopping');
    relay.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        relay.log.error({ err: error }, 'stop failed');
        process.exit(1);
      },
    );
  });
}

try {
  await relay.start();
} catch (error) {
  relay.log.fatal({ err: error }, (error as Error).message);
  await relay.stop().catch(() => {});
  process.exit(1);
}
