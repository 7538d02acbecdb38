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
 * CPU time (user + system) a process has used, in ms, from /proc/<pid>/stat (clock ticks of 10 ms).
 * CPU per unit of work is the measure a shared machine's load disturbs least: waiting for a core
 * stretches wall time, not the CPU a request costs.
 */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) in parentheses; utime and stime are the
  // 14th and 15th fields, the 12th and 13th after it.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / 100;
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
