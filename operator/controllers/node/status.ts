/**
 * Node status.state (§1.1 derived Node#state), `observedGeneration` and the `Ready` condition
 * (`kubectl wait --for=condition=Ready cbnode/...`), written when they change.
 */
import type { Node } from '../../../generated/crowbar.ts';
import { nodeState } from '../../annealer/deployment-status.ts';
import { toNodeRoleView } from '../../annealer/world.ts';
import { conditionsCurrent, setConditions, type ConditionUpdate } from '../../kube/condition.ts';
import { isConflict, isNotFound } from '../../kube/errors.ts';
import type { Controller, Manager } from '../../manager.ts';
import type { NodeRoleView } from '../annealer/view.ts';

type NodeState = ReturnType<typeof nodeState>;

/** Ready: the node is alive (or a phantom) and every noderole on it is active. */
export function nodeReady(node: Readonly<Node>, state: NodeState, count: number): ConditionUpdate {
  const alive = node.spec.system === true || node.status?.alive === true;
  if (!alive)
    return { type: 'Ready', status: 'False', reason: 'NotAlive', message: 'the node is not alive' };
  if (node.spec.available !== true && node.spec.system !== true)
    return {
      type: 'Ready',
      status: 'False',
      reason: 'NotAvailable',
      message: 'the node is not available (spec.available is false): nothing runs on it',
    };
  const [status, reason, message] = {
    active: ['True', 'AllActive', `all ${count} noderole(s) active`],
    error: ['False', 'NodeRoleError', 'a noderole is in error; see kubectl get nr'],
    transition: ['False', 'Annealing', 'a noderole is running'],
    todo: ['False', 'Annealing', 'noderoles are waiting to run'],
    proposed: ['False', 'Proposed', 'noderoles are proposed; commit them to run'],
  }[state] as [ConditionUpdate['status'], string, string];
  return { type: 'Ready', status, reason, message };
}

/** How long a node must stay `todo` or `transition`, coming from the other, before that is written. */
export const ANNEALING_HOLD_MS = 1000;

/** The two states of a node whose noderoles are annealing: Ready is False (Annealing) in both. */
const ANNEALING: ReadonlySet<NodeState | undefined> = new Set(['todo', 'transition']);

/**
 * Whether to write a node's derived state now, or look again after `waitMs`. A change between
 * `todo` and `transition` is written once the node has stayed in the new one for `holdMs`; every
 * other change at once. Between a parent's end and its child's start (~100 ms) a node in a chain
 * of runs is `todo` (ADR 0031: 0.2-0.5 extra Node writes per noderole, each then undone), and in
 * (cohort, name) order a node waits for the whole fleet's cohort between two runs of a second or
 * less: written both ways, that was two Node writes per noderole, as many as the run writes
 * themselves, on the API server those wait for. Ready reads False either way; `todo` and
 * `transition` differ only in its message, and a run that lasts is shown after the hold.
 */
export function annealingHold(
  written: NodeState | undefined,
  next: NodeState,
  since: number | undefined,
  now: number,
  holdMs = ANNEALING_HOLD_MS,
): { write: true } | { write: false; waitMs: number } {
  if (written === next || !ANNEALING.has(written) || !ANNEALING.has(next)) return { write: true };
  const from = since ?? now;
  return now - from >= holdMs ? { write: true } : { write: false, waitMs: from + holdMs - now };
}

export function nodeStatusController(
  mgr: Manager,
  view: NodeRoleView,
  fieldManager: string,
): Controller {
  // When each node was first seen in the annealing state it has not been written in (todo after
  // transition, or the other way); one entry per node at most, dropped once written or back.
  const since = new Map<string, { state: NodeState; at: number }>();
  return {
    name: 'node-status',
    coalesceMs: 500,
    watches: {
      Node: (n) => [n.metadata.name ?? ''],
      NodeRole: (nr) => [nr.spec.node],
    },
    reconcile: async (name) => {
      const node = mgr.caches.Node.get(name);
      if (!node) {
        since.delete(name);
        return undefined;
      }
      const mine = view.by('node', name);
      const state = nodeState(mine.map(toNodeRoleView));
      const written = node.status?.state;
      const seen = since.get(name);
      const first = seen?.state === state ? seen.at : undefined;
      const now = Date.now();
      const hold = annealingHold(written, state, first, now);
      if (hold.write) since.delete(name);
      else if (first === undefined) since.set(name, { state, at: now });
      // Held, the node shows the annealing state it was written in; anything else (Ready after
      // its aliveness, observedGeneration) is still written at once.
      const shown = hold.write || written === undefined ? state : written;
      const later = hold.write ? undefined : { requeueAfterMs: hold.waitMs };
      const ready = nodeReady(node, shown, mine.length);
      const generation = node.metadata.generation;
      if (
        written === shown &&
        node.status?.observedGeneration === generation &&
        conditionsCurrent(node.status?.conditions, [ready])
      )
        return later;
      try {
        await mgr.client.mergePatchStatus(
          'Node',
          name,
          {
            // Conditions are one list shared with the aliveness controller: write over what was read.
            metadata: { resourceVersion: node.metadata.resourceVersion },
            status: {
              state: shown,
              ...(generation !== undefined ? { observedGeneration: generation } : {}),
              conditions: setConditions(node.status?.conditions, [ready], new Date(), generation),
            },
          },
          fieldManager,
        );
      } catch (e) {
        // Another controller wrote the Node since the cache was read: decide again on fresh state.
        if (isConflict(e)) return { requeueAfterMs: 50 };
        if (isNotFound(e)) return undefined;
        throw e;
      }
      return later;
    },
  };
}
