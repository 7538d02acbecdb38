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

export function nodeStatusController(
  mgr: Manager,
  view: NodeRoleView,
  fieldManager: string,
): Controller {
  return {
    name: 'node-status',
    coalesceMs: 500,
    watches: {
      Node: (n) => [n.metadata.name ?? ''],
      NodeRole: (nr) => [nr.spec.node],
    },
    reconcile: async (name) => {
      const node = mgr.caches.Node.get(name);
      if (!node) return undefined;
      const mine = view.by('node', name);
      const state = nodeState(mine.map(toNodeRoleView));
      const ready = nodeReady(node, state, mine.length);
      const generation = node.metadata.generation;
      if (
        node.status?.state === state &&
        node.status.observedGeneration === generation &&
        conditionsCurrent(node.status.conditions, [ready])
      )
        return undefined;
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
