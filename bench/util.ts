/** Helpers the benchmarks share. */
import { readFileSync } from 'node:fs';

/** Runs `fn` over `items` with at most `n` in flight. */
export async function pool<T>(
  items: readonly T[],
  n: number,
  fn: (x: T) => Promise<void>,
): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) {
        const x = items[i++];
        if (x !== undefined) await fn(x);
      }
    }),
  );
}

/** Peak resident set size of a process (VmHWM), in MiB. */
export function rssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m?.[1] ? Number(m[1]) / 1024 : 0;
}

/**
 * CPU time a process and its child processes (NSD serves from forked children) have used so far,
 * all threads, in seconds (utime + stime from /proc/<pid>/stat, in ticks of 1/100 s on Linux).
 */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let children = 0;
  try {
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ')) {
      if (c.trim()) children += cpuSeconds(Number(c));
    }
  } catch {
    // a child that exited meanwhile, or no children file: its time is not counted
  }
  return (Number(rest[11]) + Number(rest[12])) / 100 + children;
}

/** This process's child processes named `comm` (e.g. the control plane it started). */
export function childPids(comm: string): number[] {
  const pids = readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8')
    .split(' ')
    .filter((p) => p.trim() !== '')
    .map(Number);
  return pids.filter((p) => {
    try {
      return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === comm;
    } catch {
      return false;
    }
  });
}

/** Cumulative bucket counts of a Prometheus histogram without labels, by upper bound (seconds). */
function buckets(metrics: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, 'gm');
  for (const m of metrics.matchAll(re)) {
    out.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  }
  return out;
}

/**
 * The q-quantile of what a histogram observed between two scrapes, as the upper bound of the
 * bucket it falls in (in ms): a bound, not an estimate. Undefined when nothing was observed.
 */
export function histogramQuantileMs(
  before: string,
  after: string,
  name: string,
  q: number,
): number | undefined {
  const a = buckets(before, name);
  const b = [...buckets(after, name)].sort(([x], [y]) => x - y);
  const total = (b.at(-1)?.[1] ?? 0) - (a.get(Infinity) ?? 0);
  if (total <= 0) return undefined;
  for (const [le, count] of b) {
    if (count - (a.get(le) ?? 0) >= q * total) return le * 1000;
  }
  return undefined;
}
