// `npm run relay`: the relay alone, against the database in DATABASE_URL.
// SIGTERM or SIGINT stops it gracefully (see Relay.stop).
//
// V8's heap flags must be given when the process starts: started without them, this
// file runs itself again with them (RELAY_NODE_FLAGS, their one home) and passes
// signals and the exit code through.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Relay } from './loop.ts';
import { operationsRegistry } from '../ops/operations.ts';
import { startOperationsServer, type OperationsServer } from '../ops/server.ts';
import { RELAY_NODE_FLAGS, runsWithRelayFlags } from './node-flags.ts';
import { relaySettings, SettingsError } from './settings.ts';
import { PART_LAUNCHER } from '../tools/supervisor.ts';

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

function runWithRelayFlags(): void {
  // through the parts' launcher, over an IPC channel: when this process is killed
  // outright (SIGKILL, which it cannot pass on), the channel closes and the relay stops
  // as on SIGTERM. Without it the relay ran on unseen, sending, after its supervisor had
  // "stopped" it.
  const child = spawn(process.execPath, [...RELAY_NODE_FLAGS, ...process.execArgv, PART_LAUNCHER, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
  });
  for (const signal of SIGNALS) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

async function runRelay(): Promise<void> {
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
  for (const signal of SIGNALS) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      relay.log.info({ signal }, 'stopping');
      Promise.all([relay.stop(), operations?.stop()]).then(
        () => process.exit(0),
        (error: unknown) => {
          relay.log.error({ err: error }, 'stop failed');
          process.exit(1);
        },
      );
    });
  }

  let operations: OperationsServer | undefined;
  const { metricsPort, metricsHost } = relay.settings;
  if (metricsPort !== null) {
    // beside the relay's own: process metrics and the backlog, asked through the relay's connections
    operationsRegistry(relay.pool, relay.metrics.registry);
    try {
      operations = await startOperationsServer({ port: metricsPort, host: metricsHost, registry: relay.metrics.registry, db: relay.pool });
    } catch (error) {
      // (a port taken, an address not of this host: said in one line, not node's stack)
      relay.log.fatal(`RELAY_METRICS_PORT ${metricsPort} on ${metricsHost} cannot be listened on: ${(error as Error).message}`);
      await relay.stop().catch(() => {});
      process.exit(1);
    }
    relay.log.info({ url: operations.url }, 'metrics, health and readiness served');
  }

  try {
    await relay.start();
  } catch (error) {
    relay.log.fatal({ err: error }, (error as Error).message);
    await relay.stop().catch(() => {});
    process.exit(1);
  }
  // webhooks.sending turned off while it ran: it has stopped, what it held settled
  void relay.halted.then(async (reason) => {
    relay.log.fatal(reason.message);
    await operations?.stop();
    process.exit(1);
  });
}

if (runsWithRelayFlags()) await runRelay();
else runWithRelayFlags();
