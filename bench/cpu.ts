// CPU time of the whole Postgres instance, read from /proc: the postmaster's own time,
// the time of its children that already exited (cutime, cstime) and the time of the
// live backends. The difference over a phase is what Postgres spent on that phase.
//
// A measured phase ends before its senders stop: ending a sender's connections costs
// Postgres CPU of its own (each backend's exit), which grows with the connections and
// is not the work measured. Counted in, it made four relays' stop 0.5 s of Postgres
// CPU against 0.1 s for one relay, and graphile-worker's pool of 34 connections
// 0.11–0.20 s against the relay's 0.08–0.10 (2026-12-02; BENCHMARKS.md).
import { existsSync, readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name may hold spaces: fields start after the last ')'
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // the process exited meanwhile
  }
}

// fields after ')' start at field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17
const at = (fields: string[], field: number) => Number(fields[field - 3]);

// The children of a process, found by their parent pid in /proc/<pid>/stat (field 4).
// Not /proc/<pid>/task/<tid>/children: the kernel builds that list in pieces, and a
// child that forks or exits meanwhile can make it skip others (proc(5)); with relays'
// connections opening and the backlog writer's closing as a window opened, a live
// backend went uncounted at its start, and its whole CPU appeared in the window once
// it was reaped.
function childrenOf(pid: number): string[] {
  const children: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(entry);
    if (fields && Number(fields[4 - 3]) === pid) children.push(entry);
  }
  return children;
}

/**
 * Resolves once process `pid` is gone and reaped (at most boundMs). A backend's CPU
 * moves into the postmaster's cutime only when the postmaster reaps it; a connection
 * closed just before a measured window opens is waited for, so that its work stays
 * out of the window whichever side of the reaping the window's first reading falls.
 */
export async function processGone(pid: number, boundMs = 2_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export function postgresCpuSeconds(postmasterPid: number): number {
  const own = statFields(postmasterPid);
  if (!own) return Number.NaN;
  let ticks = at(own, 14) + at(own, 15) + at(own, 16) + at(own, 17);
  for (const child of childrenOf(postmasterPid)) {
    const fields = statFields(child);
    if (fields) ticks += at(fields, 14) + at(fields, 15);
  }
  return ticks / TICKS_PER_SECOND;
}

/** CPU time of one process (user and system), in seconds: NaN once it has exited. */
export function processCpuSeconds(pid: number): number {
  const fields = statFields(pid);
  return fields ? (at(fields, 14) + at(fields, 15)) / TICKS_PER_SECOND : Number.NaN;
}
