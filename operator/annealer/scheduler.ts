/**
 * Which noderoles the annealer starts next: §3.1 runnable selection with the §3.4 caps (one run
 * per node, at most N in flight cluster-wide).
 */
import { LayeredMap } from './layered-map.ts';
import { freezesNode } from './states.ts';
import type { NodeRoleView, World } from './world.ts';
import { compareNames, isNodeAlive, nodeOfNoderoleName, viewsInState } from './world.ts';

/** The annealer's limits and what is already running. */
export interface PickOptions {
  /** Cluster-wide cap on runs in flight (§3.4: 10 in the original). */
  readonly maxConcurrent: number;
  /** Names of noderoles whose runs are in flight. */
  readonly running: ReadonlySet<string>;
}

/** Nodes that must not start a run: one already runs there, or a noderole is in transition or error. */
function busyNodes(world: World, running: ReadonlySet<string>): Set<string> {
  const busy = new Set<string>();
  // §3.2 one-run-per-node: a run in flight occupies its node whatever the noderole's state says.
  for (const name of running) busy.add(world.noderoles.get(name)?.node ?? nodeOfNoderoleName(name));
  // §3.1 / §2.6: a node with a noderole in transition or error is frozen.
  for (const state of ['transition', 'error'] as const) {
    for (const nr of viewsInState(world, state)) if (freezesNode(nr.state)) busy.add(nr.node);
  }
  return busy;
}

/**
 * Why a noderole is not runnable on its own terms (§3.1), or undefined when it is. Node-wide
 * reasons (another run on the node, a frozen node) are left to {@link pickRuns}.
 */
export function notRunnableReason(world: World, nr: NodeRoleView): string | undefined {
  if (nr.state !== 'todo') return `noderole is ${nr.state}, not todo`;
  if (!nr.available) return 'noderole is not available (debug mode targets another role)';
  if (nr.hold !== undefined) return nr.hold;
  const dep = world.deployments.get(nr.deployment);
  if (dep?.state !== 'committed') return `deployment ${nr.deployment} is not committed`;
  const node = world.nodes.get(nr.node);
  if (!node) return `node ${nr.node} does not exist`;
  if (!node.available) return `node ${nr.node} is not available`;
  if (!isNodeAlive(node)) return `node ${nr.node} is not alive`;
  return undefined;
}

/**
 * The noderoles to start now, in (cohort, name) order (§3.1 "cohort ASC, id ASC"): runnable, at
 * most one per node, none on a node with a run in flight or a noderole in transition or error,
 * and never more than `maxConcurrent` in flight counting `running`.
 */
export function pickRuns(world: World, options: PickOptions): string[] {
  const slots = options.maxConcurrent - options.running.size;
  if (slots <= 0) return [];
  const busy = busyNodes(world, options.running);
  if (world.todoOrder !== undefined) return pickFrom(world, todoInOrder(world), slots, busy);
  const candidates: NodeRoleView[] = [];
  for (const nr of viewsInState(world, 'todo'))
    if (!busy.has(nr.node) && !options.running.has(nr.name)) candidates.push(nr);
  // The first `slots` that pass, in (cohort, name) order. After a large commit `todo` holds
  // every root (10,000 at 10,000 nodes) and a pass comes with every write: sorting them all each
  // pass took half the operator's CPU. Almost every candidate passes, so the few best, kept in
  // one sweep, usually fill the slots; only when they do not is the whole list sorted.
  const few = slots * 2 + 8;
  if (candidates.length > few) {
    const picked = pickFrom(world, smallest(candidates, few), slots, busy);
    if (picked.length >= slots) return picked;
  }
  candidates.sort(byCohortName);
  return pickFrom(world, candidates, slots, busy);
}

/**
 * The todo noderoles in (cohort, name) order, read lazily through the maintained order: the names
 * a layer over the world replaced (a pass's own changes: few) are sorted and merged in.
 */
function* todoInOrder(world: World): Generator<NodeRoleView> {
  const replaced = new Set<string>(
    world.noderoles instanceof LayeredMap
      ? (world.noderoles as LayeredMap<string, NodeRoleView>).replaced()
      : [],
  );
  const layered: NodeRoleView[] = [];
  for (const name of replaced) {
    const nr = world.noderoles.get(name);
    if (nr?.state === 'todo') layered.push(nr);
  }
  layered.sort(byCohortName);
  let i = 0;
  for (const name of world.todoOrder ?? []) {
    if (replaced.has(name)) continue;
    const nr = world.noderoles.get(name);
    if (nr === undefined) continue;
    for (
      let next = layered[i];
      next !== undefined && byCohortName(next, nr) < 0;
      next = layered[++i]
    )
      yield next;
    yield nr;
  }
  for (; i < layered.length; i++) yield layered[i] as NodeRoleView;
}

function byCohortName(a: NodeRoleView, b: NodeRoleView): number {
  return a.cohort - b.cohort || compareNames(a.name, b.name);
}

/** The `k` first of `all` in (cohort, name) order, sorted; one sweep, `all` untouched. */
function smallest(all: readonly NodeRoleView[], k: number): NodeRoleView[] {
  const top: NodeRoleView[] = [];
  for (const nr of all) {
    const last = top[top.length - 1];
    if (top.length >= k && last !== undefined && byCohortName(nr, last) >= 0) continue;
    let lo = 0;
    let hi = top.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const m = top[mid];
      if (m !== undefined && byCohortName(m, nr) <= 0) lo = mid + 1;
      else hi = mid;
    }
    top.splice(lo, 0, nr);
    if (top.length > k) top.pop();
  }
  return top;
}

/** Walks `ordered` and takes what may run, one per node, until `slots` are taken. */
function pickFrom(
  world: World,
  ordered: Iterable<NodeRoleView>,
  slots: number,
  busyBefore: ReadonlySet<string>,
): string[] {
  const busy = new Set(busyBefore);
  const picked: string[] = [];
  for (const nr of ordered) {
    if (picked.length >= slots) break;
    if (busy.has(nr.node) || notRunnableReason(world, nr) !== undefined) continue;
    busy.add(nr.node);
    picked.push(nr.name);
  }
  return picked;
}
