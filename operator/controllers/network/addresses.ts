/**
 * Node status.addresses (issue 5 "What the rest of the system reads"): the node's addresses on
 * every network, v4 and v6 with prefix length and family, as its network noderoles hold them.
 */
import type { NetworkAllocation } from '../../../generated/crowbar.ts';
import type { Controller, Manager } from '../../manager.ts';
import { ownedBy, type Ledger } from './ledger.ts';
import {
  networkOfRole,
  networkNodeRoleName,
  nodeAddresses,
  sameJson,
  wallAddresses,
} from './plan.ts';

export function nodeAddressesController(
  mgr: Manager,
  ledger: Ledger,
  fieldManager: string,
): Controller {
  /** Held for the node's live binding and recorded in its wall (not a replica's extra). */
  const committed = (a: Readonly<NetworkAllocation>): boolean => {
    const nr = mgr.caches.NodeRole.get(networkNodeRoleName(a.spec.network, a.spec.node));
    return (
      nr !== undefined &&
      ownedBy(a, nr.metadata.uid) &&
      wallAddresses(nr, a.spec.network).includes(a.spec.address)
    );
  };
  return {
    name: 'node-addresses',
    workers: 4,
    watches: {
      Node: (n) => [n.metadata.name ?? ''],
      NetworkAllocation: (a) => [a.spec.node],
      NodeRole: (nr) => (networkOfRole(nr.spec.role) !== undefined ? [nr.spec.node] : []),
    },
    reconcile: async (name) => {
      const node = mgr.caches.Node.get(name);
      if (!node || node.metadata.deletionTimestamp) return undefined;
      const addresses = nodeAddresses(ledger.ofNode(name).filter(committed));
      if (sameJson(node.status?.addresses ?? [], addresses)) return undefined;
      await mgr.client.mergePatchStatus('Node', name, { status: { addresses } }, fieldManager);
      return undefined;
    },
  };
}
