// Each contender (and each limit) runs in a child process of its own, so that its CPU
// time and peak memory are its own. The protocol over the IPC channel is small:
//   child → parent  {type: 'ready'}        set up (connections open), not working yet
//   parent → child  {type: 'go'}           start working; CPU is counted from here
//   child → parent  {type: 'started'}      working (e.g. the worker's startup finished)
//   parent → child  {type: 'mark'}         count CPU (and the worker's figures) from
//   child → parent  {type: 'marked'}       here on: what came before was warm-up
//   child → parent  {type: 'done', ...}    optional: a limit that finished its own work
//   parent → child  {type: 'stop'}         stop, report, exit
//   child → parent  {type: 'stats', ...}   CPU seconds from go (or mark) to stop, peak RSS,
//                                          extra figures
import { fork, type ChildProcess } from 'node:child_process';

export interface ChildStats {
  cpuSeconds: number;
  peakRssMb: number;
  extra: Record<string, number>;
}

export interface Worker {
  /** begins the work; resolves once started */
  start(): Promise<void> | void;
  /** optional: count the extra figures from here on (the warm-up is over) */
  mark?(): void;
  /** stops the work (gracefully) and returns extra figures to report */
  stop(): Promise<Record<string, number> | void>;
}

type FromChild = { type: 'ready' } | { type: 'started' } | { type: 'marked' } | { type: 'done'; extra: Record<string, number> } | ({ type: 'stats' } & ChildStats);

// ---------------------------------------------------------------- child side

/** Runs in the child: set up, wait for go, work until stop. `finished` lets a limit say it is done. */
export async function serveChild(setup: (finished: (extra: Record<string, number>) => void) => Promise<Worker>): Promise<void> {
  const send = (message: FromChild) => process.send!(message);
  const worker = await setup((extra) => send({ type: 'done', extra }));
  let cpuAtGo: NodeJS.CpuUsage | undefined;
  process.on('message', async (message: { type: string }) => {
    if (message.type === 'go') {
      cpuAtGo = process.cpuUsage();
      await worker.start();
      send({ type: 'started' });
    } else if (message.type === 'mark') {
      cpuAtGo = process.cpuUsage();
      worker.mark?.();
      send({ type: 'marked' });
    } else if (message.type === 'stop') {
      // CPU up to the stop: the stop's own work (ending connections and timers) is not
      // the work measured, and grows with the number of processes (bench/cpu.ts)
      const cpu = process.cpuUsage(cpuAtGo);
      const extra = (await worker.stop()) ?? {};
      send({
        type: 'stats',
        cpuSeconds: cpuAtGo ? (cpu.user + cpu.system) / 1e6 : 0,
        peakRssMb: process.resourceUsage().maxRSS / 1024,
        extra,
      });
      // exit once the message is out, so a --cpu-prof profile is written too
      process.disconnect();
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready' });
}

// ---------------------------------------------------------------- parent side

export interface ChildHandle {
  pid: number;
  /** tells the child to start; resolves once it says it has started */
  go(): Promise<void>;
  /** CPU and the worker's figures count from here on; resolves once the child has marked */
  mark(): Promise<void>;
  /** resolves when the child says it finished on its own (limits), with its figures */
  done: Promise<Record<string, number>>;
  /** stops the child and returns its figures; kills it if it does not answer within the bound */
  stop(timeoutMs?: number): Promise<ChildStats>;
}

export interface SpawnOptions {
  env: Record<string, string>;
  /** Node flags */
  execArgv?: string[];
  /** a folder for a V8 CPU profile of this child (node --cpu-prof) */
  cpuProfDir?: string;
  name: string;
}

export async function spawnChild(file: string, options: SpawnOptions): Promise<ChildHandle> {
  const execArgv = [...(options.execArgv ?? [])];
  if (options.cpuProfDir) {
    execArgv.push('--cpu-prof', '--cpu-prof-dir', options.cpuProfDir, '--cpu-prof-name', `${options.name}.${Date.now()}.cpuprofile`);
  }
  const child: ChildProcess = fork(file, [], {
    execArgv,
    env: { ...process.env, ...options.env, BENCH_CHILD: file },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let resolveStarted: () => void = () => {};
  const started = new Promise<void>((resolve) => (resolveStarted = resolve));
  let resolveMarked: () => void = () => {};
  let resolveDone: (extra: Record<string, number>) => void = () => {};
  const done = new Promise<Record<string, number>>((resolve) => (resolveDone = resolve));
  let resolveStats: (stats: ChildStats) => void = () => {};
  const stats = new Promise<ChildStats>((resolve) => (resolveStats = resolve));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  await new Promise<void>((resolve, reject) => {
    child.on('message', (message: FromChild) => {
      if (message.type === 'ready') resolve();
      else if (message.type === 'started') resolveStarted();
      else if (message.type === 'marked') resolveMarked();
      else if (message.type === 'done') resolveDone(message.extra);
      else if (message.type === 'stats') resolveStats(message);
    });
    void exited.then((code) => reject(new Error(`${options.name} exited with code ${code} before it was ready`)));
  });

  return {
    pid: child.pid!,
    done,
    go: () => {
      child.send({ type: 'go' });
      return started;
    },
    mark: () => {
      const marked = new Promise<void>((resolve) => (resolveMarked = resolve));
      child.send({ type: 'mark' });
      return marked;
    },
    async stop(timeoutMs = 20_000) {
      if (child.exitCode !== null) throw new Error(`${options.name} exited early with code ${child.exitCode}`);
      child.send({ type: 'stop' });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`${options.name} did not stop within ${timeoutMs} ms`));
        }, timeoutMs);
      });
      try {
        const result = await Promise.race([stats, timeout]);
        await Promise.race([exited, timeout]);
        return result;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
