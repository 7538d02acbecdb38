/**
 * What one annealer pass settles (pure). Passes settle the noderoles changed since the last one
 * (settle adds their descendants); under that, a level-triggered safety net settles every
 * noderole once a period, as controller-runtime's resync, so a missed event costs at most that
 * long. The net is a sweep over the nodes, a slice per pass, not one pass over the fleet: such a
 * pass holds the thread for tens of ms at 10,000 noderoles (more on a busy machine), and a
 * parent's end that arrives meanwhile waits that long for its child's start.
 */
import { compareNames } from './world.ts';

export interface SweepState {
  /** When the next sweep is due; 0: settle everything in the next pass (the first one). */
  readonly dueAt: number;
  /** The nodes of the sweep under way, in name order, and the first one not yet settled. */
  readonly nodes: readonly string[] | undefined;
  readonly next: number;
}

export const FIRST_PASS: SweepState = { dueAt: 0, nodes: undefined, next: 0 };

export interface ScopeRequest {
  /** Noderoles changed since the last pass (their objects, nodes, deployments, runs). */
  readonly changed: ReadonlySet<string>;
  /** How many noderoles the world has (bound ones). */
  readonly noderoles: number;
  readonly now: number;
  /** The nodes that have noderoles, read only when a sweep starts. */
  readonly nodes: () => Iterable<string>;
  /** The noderoles on a node. */
  readonly namesOn: (node: string) => Iterable<string>;
  /** How often a sweep starts, from the end of the last one. */
  readonly periodMs: number;
  /** About how many noderoles a pass of the sweep adds (whole nodes: a node is not split). */
  readonly slice: number;
}

export interface ScopePlan {
  readonly kind: 'full' | 'sweep' | 'changed';
  /** What to settle; undefined: every noderole. */
  readonly scope: ReadonlySet<string> | undefined;
  readonly state: SweepState;
  /** A sweep is under way: the next pass must come soon even if nothing else wakes the annealer. */
  readonly more: boolean;
}

/**
 * The scope of this pass and the sweep's state after it: everything at once on the first pass and
 * when most noderoles changed anyway (a slice would only add passes); otherwise the changed
 * noderoles, plus the next slice of nodes while a sweep is due or under way.
 */
export function planScope(st: SweepState, r: ScopeRequest): ScopePlan {
  if (st.dueAt === 0 || r.changed.size * 4 > r.noderoles) {
    return {
      kind: 'full',
      scope: undefined,
      state: { dueAt: r.now + r.periodMs, nodes: undefined, next: 0 },
      more: false,
    };
  }
  const nodes = st.nodes ?? (r.now >= st.dueAt ? [...r.nodes()].sort(compareNames) : undefined);
  if (nodes === undefined) return { kind: 'changed', scope: r.changed, state: st, more: false };
  const scope = new Set(r.changed);
  let i = st.nodes === undefined ? 0 : st.next;
  for (let n = 0; n < r.slice && i < nodes.length; i++) {
    for (const name of r.namesOn(nodes[i] ?? '')) {
      scope.add(name);
      n++;
    }
  }
  const done = i >= nodes.length;
  return {
    kind: 'sweep',
    scope,
    state: done
      ? { dueAt: r.now + r.periodMs, nodes: undefined, next: 0 }
      : { dueAt: st.dueAt, nodes, next: i },
    more: !done,
  };
}
