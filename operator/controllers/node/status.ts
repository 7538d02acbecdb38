/** Node status.state (§1.1 derived Node#state), written when it changes. */
import { nodeState } from '../../annealer/deployment-status.ts';
import { toNodeRoleView } from '../../annealer/world.ts';
import type { Controller, Manager } from '../../manager.ts';
import type { NodeRoleView } from '../annealer/view.ts';

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
      const state = nodeState(view.by('node', name).map(toNodeRoleView));
      if (node.status?.state === state) return undefined;
      await mgr.client.mergePatchStatus('Node', name, { status: { state } }, fieldManager);
      return undefined;
    },
  };
}
