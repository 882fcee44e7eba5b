// Runs the parts of `npm start` (the relay, the admin API) as child processes that
// do not share a fate: a part that dies is logged and started again, after a pause
// that doubles with each crash in a row (so a part that cannot start does not spin),
// while the other parts go on. Stopping stops the parts in reverse order of start,
// each with SIGTERM (its graceful stop), and waits for them to exit.
//
// Children run in their own process group (detached), so a Ctrl-C in the terminal
// reaches this process only and the parts stop in order, before the database. Each
// child holds an IPC channel to this process and stops when it closes: a supervisor
// killed outright leaves no part behind (tools/part.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { backoffMs } from '../relay/backoff.ts';

/** Runs a part with its life tied to its parent's (tools/part.ts); `npm run relay`'s re-execution uses it too. */
export const PART_LAUNCHER = fileURLToPath(new URL('./part.ts', import.meta.url));

export interface PartSpec {
  /** a short name for logs: "relay", "api" */
  name: string;
  /** the part's entry point (a .ts file Node runs) */
  script: string;
  env: NodeJS.ProcessEnv;
  /** V8 flags of the part's process */
  nodeFlags?: string[];
}

export interface Backoff {
  /** pause before the first restart */
  initialMs: number;
  /** the longest pause */
  maxMs: number;
  /** a part up this long is healthy again: its next crash restarts after initialMs */
  resetAfterMs: number;
}

export const DEFAULT_BACKOFF: Readonly<Backoff> = Object.freeze({ initialMs: 500, maxMs: 30_000, resetAfterMs: 60_000 });

/** How long a part may take to stop gracefully before it is killed. */
const STOP_TIMEOUT_MS = 30_000;

export interface SupervisorEvents {
  /** a part's process started */
  started?(name: string, pid: number): void;
}

interface RunningPart {
  spec: PartSpec;
  child?: ChildProcess;
  startedAt: number;
  crashesInARow: number;
  restartTimer?: NodeJS.Timeout;
}

export class Supervisor {
  readonly #parts: RunningPart[];
  readonly #backoff: Backoff;
  readonly #log: (line: string) => void;
  readonly #events: SupervisorEvents;
  #stopping = false;

  constructor(parts: PartSpec[], options: { backoff?: Partial<Backoff>; log?: (line: string) => void; events?: SupervisorEvents } = {}) {
    this.#parts = parts.map((spec) => ({ spec, startedAt: 0, crashesInARow: 0 }));
    this.#backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.#log = options.log ?? ((line) => console.error(line));
    this.#events = options.events ?? {};
  }

  start(): void {
    for (const part of this.#parts) this.#spawn(part);
  }

  /** The pid of a part's current process, if it runs. */
  pid(name: string): number | undefined {
    return this.#parts.find((part) => part.spec.name === name)?.child?.pid;
  }

  #spawn(part: RunningPart): void {
    part.restartTimer = undefined;
    if (this.#stopping) return;
    const { spec } = part;
    const child = spawn(process.execPath, [...(spec.nodeFlags ?? []), PART_LAUNCHER, spec.script], {
      env: spec.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      detached: true,
    });
    part.child = child;
    part.startedAt = Date.now();
    child.once('spawn', () => this.#events.started?.(spec.name, child.pid!));
    child.once('error', (error) => this.#log(`${spec.name}: could not start: ${error.message}`));
    child.once('exit', (code, signal) => {
      if (part.child === child) part.child = undefined;
      if (this.#stopping) return;
      const upMs = Date.now() - part.startedAt;
      part.crashesInARow = upMs >= this.#backoff.resetAfterMs ? 1 : part.crashesInARow + 1;
      const pauseMs = backoffMs(part.crashesInARow - 1, { baseMs: this.#backoff.initialMs, capMs: this.#backoff.maxMs });
      this.#log(`${spec.name} (pid ${child.pid}) exited ${signal ? `on ${signal}` : `with code ${code}`} after ${(upMs / 1000).toFixed(1)} s; ` +
        `restarting in ${pauseMs} ms (crash ${part.crashesInARow} in a row); the other parts go on`);
      part.restartTimer = setTimeout(() => this.#spawn(part), pauseMs);
    });
  }

  /** Stops every part, last started first; resolves once all have exited. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const part of [...this.#parts].reverse()) {
      clearTimeout(part.restartTimer);
      const child = part.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const killer = setTimeout(() => {
        this.#log(`${part.spec.name} (pid ${child.pid}) did not stop within ${STOP_TIMEOUT_MS / 1000} s: killing it`);
        child.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(killer);
    }
  }
}
