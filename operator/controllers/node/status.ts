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

/** How long a node that was `transition` must stay `todo` before that is written. */
export const TODO_HOLD_MS = 1000;

/**
 * Whether to write a node's derived state now, or look again after `waitMs`. Between a parent's
 * end and its child's start (~100 ms) a node in a chain of runs is `todo`, and the 500 ms
 * coalescing sampled that often enough for 0.2-0.5 extra Node writes per noderole, each of them
 * then undone, on the API server the run writes wait for (ADR 0031). So `transition` -> `todo`
 * is written once the node has stayed `todo` for `holdMs`; every other change at once (Ready
 * reads False either way; `todo` and `transition` differ only in its message).
 */
export function todoHold(
  written: NodeState | undefined,
  next: NodeState,
  todoSince: number | undefined,
  now: number,
  holdMs = TODO_HOLD_MS,
): { write: true } | { write: false; waitMs: number } {
  if (written !== 'transition' || next !== 'todo') return { write: true };
  const since = todoSince ?? now;
  return now - since >= holdMs ? { write: true } : { write: false, waitMs: since + holdMs - now };
}

export function nodeStatusController(
  mgr: Manager,
  view: NodeRoleView,
  fieldManager: string,
): Controller {
  // When each node was first seen todo after transition; one entry per node at most, dropped as
  // soon as its state is written or changes.
  const todoSince = new Map<string, number>();
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
        todoSince.delete(name);
        return undefined;
      }
      const mine = view.by('node', name);
      const state = nodeState(mine.map(toNodeRoleView));
      const ready = nodeReady(node, state, mine.length);
      const generation = node.metadata.generation;
      if (
        node.status?.state === state &&
        node.status.observedGeneration === generation &&
        conditionsCurrent(node.status.conditions, [ready])
      ) {
        todoSince.delete(name);
        return undefined;
      }
      const now = Date.now();
      const hold = todoHold(node.status?.state, state, todoSince.get(name), now);
      if (!hold.write) {
        if (!todoSince.has(name)) todoSince.set(name, now);
        return { requeueAfterMs: hold.waitMs };
      }
      todoSince.delete(name);
      try {
        await mgr.client.mergePatchStatus(
          'Node',
          name,
          {
            // Conditions are one list shared with the aliveness controller: write over what was read.
            metadata: { resourceVersion: node.metadata.resourceVersion },
            status: {
              state,
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
      return undefined;
    },
  };
}
