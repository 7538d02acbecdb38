/**
 * The level-triggered half of the annealer. Crowbar's ripple rules (§2.3) are edge-triggered:
 * they run once, after a state is saved. An operator can crash between a write and its ripple,
 * and its cache may lag, so every pass re-derives what the edges would have done from the
 * current world and returns the missing changes. In a world where every ripple completed, this
 * returns nothing; after a crash it finishes the job.
 *
 * The invariants it restores (each holds after every §2.2 transition has rippled):
 * - commit: a proposed noderole in a committed deployment is committed (§2.5);
 * - death: a noderole of a dead node is never active, error or transition without a run (§2.4);
 * - error: descendants of a noderole in error are blocked, except proposed/transition (§2.2 error!);
 * - todo/error with a parent in todo or blocked are pushed down (§2.2 todo!/block!);
 * - todo requires all parents active (§3.1); blocked with all parents active is todo (§2.3 active!).
 * Nodes that are not available are frozen: their noderoles keep their states (§2.4).
 */
import { messages, Scratch } from './overlay.ts';
import type { Outcome } from './states.ts';
import type { NodeRoleView, World } from './world.ts';
import { cohortOrder, compareNames, isNodeAlive, proposedBecause } from './world.ts';

export interface SettleOptions {
  /** Noderoles whose runs are in flight: their transition state is the runner's business. */
  readonly running: ReadonlySet<string>;
  /**
   * When given, only these noderoles and their descendants are settled. A noderole's settled state
   * depends only on itself, its ancestors, its node and its deployment, so a caller that names
   * every noderole whose own object, node or deployment changed since the last settle (and every
   * one whose run started or ended) gets the same changes as a full settle.
   */
  readonly scope?: Iterable<string> | undefined;
}

/** `roots` and everything below them, in (cohort, name) order. */
function descendantsInOrder(s: Scratch, roots: Iterable<string>): NodeRoleView[] {
  const seen = new Set<string>();
  const stack = [...roots];
  const out: NodeRoleView[] = [];
  for (let name = stack.pop(); name !== undefined; name = stack.pop()) {
    if (seen.has(name)) continue;
    seen.add(name);
    const nr = s.nr(name);
    if (!nr) continue;
    out.push(nr);
    for (const child of s.childrenOf(name)) if (!seen.has(child)) stack.push(child);
  }
  return out.sort((a, b) => a.cohort - b.cohort || compareNames(a.name, b.name));
}

/** At most this many members of a parent cycle are named in a message (which is capped). */
const CYCLE_NAMED = 8;

/**
 * The cycles among `ordered`'s parents edges, as strongly connected components of two or more
 * noderoles or a noderole that is its own parent, each in name order (Tarjan's algorithm, made
 * iterative so a long chain cannot overflow the stack). The binder only ever adds edges from a
 * noderole to the noderoles of roles it requires, which admission keeps acyclic, so a cycle can
 * only come from status written by someone else. `ordered` is closed under descendants (every
 * settle scope is), and every member of a cycle is a descendant of every other, so a cycle through
 * any of them lies wholly inside it.
 */
export function parentCycles(ordered: readonly NodeRoleView[]): string[][] {
  const byName = new Map(ordered.map((nr) => [nr.name, nr]));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  let next = 0;
  for (const root of ordered) {
    if (index.has(root.name)) continue;
    // Each frame: a noderole and how many of its parents have been looked at.
    const frames: [string, number][] = [[root.name, 0]];
    index.set(root.name, next);
    low.set(root.name, next++);
    stack.push(root.name);
    onStack.add(root.name);
    while (frames.length > 0) {
      const frame = frames[frames.length - 1];
      if (!frame) break;
      const [name, i] = frame;
      const parents = byName.get(name)?.parents ?? [];
      if (i < parents.length) {
        frame[1] = i + 1;
        const p = parents[i];
        if (p === undefined || !byName.has(p)) continue;
        if (!index.has(p)) {
          index.set(p, next);
          low.set(p, next++);
          stack.push(p);
          onStack.add(p);
          frames.push([p, 0]);
        } else if (onStack.has(p)) {
          low.set(name, Math.min(low.get(name) ?? 0, index.get(p) ?? 0));
        }
        continue;
      }
      frames.pop();
      const up = frames[frames.length - 1];
      if (up) low.set(up[0], Math.min(low.get(up[0]) ?? 0, low.get(name) ?? 0));
      if (low.get(name) !== index.get(name)) continue;
      const component: string[] = [];
      for (let m = stack.pop(); m !== undefined; m = stack.pop()) {
        onStack.delete(m);
        component.push(m);
        if (m === name) break;
      }
      if (component.length > 1 || parents.includes(name)) out.push(component.sort(compareNames));
    }
  }
  return out;
}

export function settle(world: World, options: SettleOptions): Outcome {
  const s = new Scratch(world);
  let ordered: NodeRoleView[];
  if (options.scope === undefined) {
    ordered = [];
    for (const name of cohortOrder(world)) {
      const nr = world.noderoles.get(name);
      if (nr) ordered.push(nr);
    }
  } else {
    ordered = descendantsInOrder(s, options.scope);
  }
  const frozen = (nr: NodeRoleView): boolean => world.nodes.get(nr.node)?.available === false;

  // Propose and commit (§2.2 propose!/commit!, §2.5): a noderole is held in proposed while its
  // deployment, its node or it itself is proposed; once none is, it is committed. One committed
  // again after it ran takes its descendants with it, so they run again after it.
  for (const nr of ordered) {
    if (options.running.has(nr.name)) continue;
    const st = s.state(nr.name);
    const why = proposedBecause(world, nr);
    if (why !== undefined) {
      if (frozen(nr)) continue;
      if (st !== 'transition' && (st !== 'proposed' || nr.message !== why))
        s.set(nr.name, 'proposed', why);
    } else if (st === 'proposed') {
      s.blockOrTodo(nr.name, nr.runCount > 0 ? messages.recommitted : messages.committed);
      if (nr.runCount > 0) s.blockDescendants(nr.name);
    }
  }

  for (const nr of ordered) {
    const node = world.nodes.get(nr.node);
    if (!node || isNodeAlive(node) || options.running.has(nr.name)) continue;
    const st = s.state(nr.name);
    if (st === 'active' || st === 'error' || st === 'transition') {
      s.blockOrTodo(nr.name, messages.nodeNotAlive(nr.node));
    }
  }

  // A cycle of parents (only hand-written status can make one) would keep its members waiting on
  // each other, or let one run while its parent is blocked: each member goes to error with a
  // message naming the cycle, which blocks everything below it; the rest of the graph goes on.
  const onCycle = new Set<string>();
  for (const cycle of parentCycles(ordered)) {
    const msg = messages.parentCycle(cycle.slice(0, CYCLE_NAMED), cycle.length);
    for (const name of cycle) {
      onCycle.add(name);
      const nr = world.noderoles.get(name);
      if (!nr || options.running.has(name) || frozen(nr)) continue;
      const st = s.state(name);
      if (st === 'proposed' || st === 'transition') continue;
      if (st !== 'error' || nr.message !== msg) s.set(name, 'error', msg);
    }
  }

  // Error blocks the whole sub-DAG below it (§2.2 error!). An ancestor's error wins over a
  // noderole's own: error! of the ancestor blocks it. Ancestors outside a scope are unchanged,
  // so their origins are derived on demand from the states as they stand.
  const errorOrigin = new Map<string, string | null>();
  const originOf = (name: string, depth: number): string | undefined => {
    const known = errorOrigin.get(name);
    if (known !== undefined) return known ?? undefined;
    let origin: string | undefined;
    // In progress: a parent cycle leads back here, and the walk ends instead of going round it.
    errorOrigin.set(name, null);
    // Depth bounds the walk on a very deep graph.
    if (depth <= 10_000) {
      for (const p of world.noderoles.get(name)?.parents ?? []) {
        origin = originOf(p, depth + 1);
        if (origin !== undefined) break;
      }
    }
    if (origin === undefined && s.state(name) === 'error') origin = name;
    errorOrigin.set(name, origin ?? null);
    return origin;
  };
  for (const nr of ordered) originOf(nr.name, 0);

  for (const nr of ordered) {
    if (frozen(nr) || onCycle.has(nr.name)) continue;
    const st = s.state(nr.name);
    if (st === undefined || st === 'proposed' || st === 'transition') continue;
    const origin = errorOrigin.get(nr.name) ?? undefined;
    if (origin !== undefined && origin !== nr.name) {
      const msg = messages.blockedByError(origin);
      if (st !== 'blocked' || nr.message !== msg) s.set(nr.name, 'blocked', msg);
      continue;
    }
    const waiting = s.waitingOn(nr.name);
    if (st === 'todo' && waiting !== undefined) {
      s.block(nr.name, s.waitingMessage(nr.name));
    } else if (
      st === 'error' &&
      nr.parents.some((p) => s.state(p) === 'todo' || s.state(p) === 'blocked')
    ) {
      s.block(nr.name, s.waitingMessage(nr.name));
    } else if (st === 'blocked' && waiting === undefined) {
      s.todo(nr.name, messages.todo);
    }
  }
  return s.done();
}

/**
 * A run that was cancelled (its node died, or the operator is stopping) did not complete: the
 * noderole goes back to block_or_todo without counting a run.
 */
export function cancelRun(world: World, name: string, message: string): Outcome {
  const s = new Scratch(world);
  if (s.state(name) !== 'transition') return s.done();
  if (s.waitingOn(name) === undefined) s.todo(name, message);
  else s.block(name, message);
  return s.done();
}
