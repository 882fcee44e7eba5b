// CPU time of the whole Postgres instance, read from /proc: the postmaster's own time,
// the time of its children that already exited (cutime, cstime) and the time of the
// live backends. The difference over a phase is what Postgres spent on that phase.
import { readdirSync, readFileSync } from 'node:fs';

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

function childrenOf(pid: number): string[] {
  const children: string[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      children.push(...readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(' ').filter(Boolean));
    } catch {
      // a thread that ended
    }
  }
  return children;
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
