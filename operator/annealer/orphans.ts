/**
 * Orphaned runs: a noderole in transition with no run in this process, no start being written and
 * no decision pending for it. That happens when a run's start was written but answered with an
 * error (the write happened), or its result could not be recorded; nothing else moves it again,
 * so after a grace period (this process's own writes and its cache catch up) it is re-adopted.
 *
 * The grace is kept by wake-ups of the annealer. A wake-up is a delayed add on its workqueue, and
 * a queue keeps only the earliest delayed add of a key: a wake-up asked for once, on the first
 * sighting, is lost when an earlier one is pending (a retry 25 ms later) or when a timer fires a
 * millisecond before the grace is over by `Date.now()`. So every pass that leaves an orphan
 * waiting asks again for a wake-up when the first of them is due.
 */

export interface OrphanPlan {
  /** When each orphan still waiting was first seen (candidates only). */
  readonly since: Map<string, number>;
  /** Orphans whose grace is over: re-adopt them now. */
  readonly adopt: string[];
  /** Wake the annealer in this many ms (the next orphan due), or undefined when none waits. */
  readonly wakeInMs: number | undefined;
}

/**
 * Decides over this pass's `candidates` (the orphans now), given when each was first seen:
 * which to re-adopt and when to look again. Names that are no longer orphans are forgotten.
 */
export function planOrphans(
  seen: ReadonlyMap<string, number>,
  candidates: Iterable<string>,
  now: number,
  graceMs: number,
): OrphanPlan {
  const since = new Map<string, number>();
  const adopt: string[] = [];
  let due: number | undefined;
  for (const name of candidates) {
    const first = seen.get(name) ?? now;
    if (now - first >= graceMs) {
      adopt.push(name);
      continue;
    }
    since.set(name, first);
    const at = first + graceMs;
    due = due === undefined ? at : Math.min(due, at);
  }
  return { since, adopt, wakeInMs: due === undefined ? undefined : Math.max(1, due - now) };
}
