/**
 * CPU time of a path's relay processes, read from /proc, so a scenario can say how many bytes a
 * path carries per second of CPU ("Gbit/s per core"), whatever else the machine was doing: the
 * wall-clock rate depends on what else runs; CPU per byte much less.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks per second, the unit of /proc/<pid>/stat's CPU times. */
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User plus system ticks of one live process; 0 for one that is gone. */
function ticksOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime and stime: fields 14 and 15 of stat(5)
  } catch {
    return 0;
  }
}

/** `pid`'s live descendants, depth first (sshd forks a process, and privsep another, per connection). */
function descendants(pid: number): number[] {
  const found: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return found;
  }
  for (const task of tasks) {
    let children: string;
    try {
      children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const child of children.split(' ').filter(Boolean).map(Number)) found.push(child, ...descendants(child));
  }
  return found;
}

/** Whether this machine can account CPU per process (Linux /proc). */
export function canMeasureCpu(): boolean {
  return ticksOf(process.pid) > 0;
}

/**
 * Seconds of CPU the processes `pids` and their live descendants have used so far. Take it before
 * and after a transfer: the difference is what the transfer cost them (the processes must stay
 * alive in between; a descendant that exits takes its share with it).
 */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of new Set(pids.flatMap((root) => [root, ...descendants(root)]))) ticks += ticksOf(pid);
  return ticks / clockTicks();
}
