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
import { compareNames, isNodeAlive } from './world.ts';

const byCohort = (a: NodeRoleView, b: NodeRoleView): number =>
  a.cohort - b.cohort || compareNames(a.name, b.name);

export interface SettleOptions {
  /** Noderoles whose runs are in flight: their transition state is the runner's business. */
  readonly running: ReadonlySet<string>;
}

export function settle(world: World, options: SettleOptions): Outcome {
  const s = new Scratch(world);
  const ordered = [...world.noderoles.values()].sort(byCohort);
  const frozen = (nr: NodeRoleView): boolean => world.nodes.get(nr.node)?.available === false;

  for (const nr of ordered) {
    const dep = world.deployments.get(nr.deployment);
    if (s.state(nr.name) === 'proposed' && dep?.state === 'committed') {
      s.blockOrTodo(nr.name, messages.committed);
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

  // Error blocks the whole sub-DAG below it (§2.2 error!).
  const errorOrigin = new Map<string, string>();
  // An ancestor's error wins over a noderole's own: error! of the ancestor blocks it.
  for (const nr of ordered) {
    const inherited = nr.parents.map((p) => errorOrigin.get(p)).find((o) => o !== undefined);
    if (inherited !== undefined) errorOrigin.set(nr.name, inherited);
    else if (s.state(nr.name) === 'error') errorOrigin.set(nr.name, nr.name);
  }

  for (const nr of ordered) {
    if (frozen(nr)) continue;
    const st = s.state(nr.name);
    if (st === undefined || st === 'proposed' || st === 'transition') continue;
    const origin = errorOrigin.get(nr.name);
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
