/**
 * Derived states: a Deployment's state and counts (§1.5) and a Node's summary state (§1.1).
 */
import type { NodeRoleState, StateCounts } from './states.ts';
import { emptyCounts } from './states.ts';
import type { DeploymentView, NodeRoleView } from './world.ts';

/** The derived state of a deployment, as in `Deployment.status.state`. */
export type DeploymentState = 'proposed' | 'committed' | 'active' | 'error';

/** A deployment's derived state and its noderoles counted per state. */
export interface DeploymentSummary {
  readonly state: DeploymentState;
  readonly counts: StateCounts;
}

/** Counts noderoles per state. */
export function countStates(noderoles: Iterable<Pick<NodeRoleView, 'state'>>): StateCounts {
  const counts = emptyCounts();
  for (const nr of noderoles) {
    counts[nr.state] += 1;
    counts.total += 1;
  }
  return counts;
}

/**
 * §1.5 Deployment#state: proposed if proposed; else active when every noderole is active (an
 * empty deployment too); else error when any is in error; else committed. Only the noderoles of
 * `dep` are counted, so all noderoles may be passed.
 */
export function deploymentSummary(
  dep: DeploymentView,
  noderoles: Iterable<NodeRoleView>,
): DeploymentSummary {
  const counts = countStates([...noderoles].filter((nr) => nr.deployment === dep.name));
  let state: DeploymentState;
  if (dep.state === 'proposed') state = 'proposed';
  else if (counts.active === counts.total) state = 'active';
  else if (counts.error > 0) state = 'error';
  else state = 'committed';
  return { state, counts };
}

/** The derived state of a node, as in `Node.status.state`. */
export type NodeState = Exclude<NodeRoleState, 'blocked'>;

/**
 * §1.1 Node#state: error, transition or proposed if any noderole is in one; else todo if any is
 * blocked or todo; else active. The model returns the first one it meets (§11.8, order
 * unspecified); we rank error over transition over proposed so the answer is stable.
 */
export function nodeState(noderoles: Iterable<Pick<NodeRoleView, 'state'>>): NodeState {
  const counts = countStates(noderoles);
  if (counts.error > 0) return 'error';
  if (counts.transition > 0) return 'transition';
  if (counts.proposed > 0) return 'proposed';
  if (counts.blocked > 0 || counts.todo > 0) return 'todo';
  return 'active';
}
