/**
 * Noderole names kept in (cohort, name) order (§3.1 "cohort ASC, id ASC") under inserts and
 * removals, so that runnable selection reads only the first few todo noderoles it picks. After a
 * commit at 10,000 nodes `todo` holds 10,000 roots; a pass comes with every write, and reading
 * them all on each pass (to keep the few best) was the largest part of the operator's CPU.
 */
import { compareNames } from './world.ts';

export class CohortOrder implements Iterable<string> {
  /** Sorted by (cohort, name). A sorted array: inserts move pointers (microseconds at 10,000). */
  private readonly keys: { readonly cohort: number; readonly name: string }[] = [];
  private readonly cohorts = new Map<string, number>();

  get size(): number {
    return this.keys.length;
  }

  has(name: string): boolean {
    return this.cohorts.has(name);
  }

  /** Puts `name` at its place for `cohort`, or removes it when `cohort` is undefined. */
  set(name: string, cohort: number | undefined): void {
    const was = this.cohorts.get(name);
    if (was === cohort) return;
    if (was !== undefined) {
      this.keys.splice(this.at(was, name), 1);
      this.cohorts.delete(name);
    }
    if (cohort === undefined) return;
    this.keys.splice(this.at(cohort, name), 0, { cohort, name });
    this.cohorts.set(name, cohort);
  }

  /** Names in (cohort, name) order; do not change the set while iterating. */
  *[Symbol.iterator](): Iterator<string> {
    for (const k of this.keys) yield k.name;
  }

  /** The index of the first key not before (cohort, name). */
  private at(cohort: number, name: string): number {
    let lo = 0;
    let hi = this.keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const k = this.keys[mid];
      if (k !== undefined && (k.cohort - cohort || compareNames(k.name, name)) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
