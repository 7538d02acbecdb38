/**
 * Node status.addresses (issue 5 "What the rest of the system reads"): the node's addresses on
 * every network, v4 and v6 with prefix length and family, as its network noderoles hold them.
 *
 * An address counts from its allocation's create (ADR 0025): per binding and family, the
 * allocation {@link bindingAddresses} picks, the rule every reader applies, so a replica's extra
 * (two replicas racing for one binding) is never listed once the wall names the winner.
 */
import type { NetworkAllocation } from '../../../generated/crowbar.ts';
import type { Controller, Manager } from '../../manager.ts';
import { ownedBy, type Ledger } from './ledger.ts';
import {
  bindingAddresses,
  networkOfRole,
  networkNodeRoleName,
  nodeAddresses,
  sameJson,
  wallAddresses,
} from './plan.ts';

/** The node's addresses: per live binding, the allocations its rule picks. */
export function committedAddresses(
  mgr: Manager,
  ledger: Ledger,
  node: string,
): Readonly<NetworkAllocation>[] {
  const byNetwork = new Map<string, NetworkAllocation[]>();
  for (const a of ledger.ofNode(node)) {
    const list = byNetwork.get(a.spec.network);
    if (list) list.push(a);
    else byNetwork.set(a.spec.network, [a]);
  }
  const out: Readonly<NetworkAllocation>[] = [];
  for (const [network, allocs] of byNetwork) {
    const nr = mgr.caches.NodeRole.get(networkNodeRoleName(network, node));
    if (!nr) continue;
    const owned = allocs.filter((a) => ownedBy(a, nr.metadata.uid));
    out.push(...bindingAddresses(owned, wallAddresses(nr, network)).chosen);
  }
  return out;
}

export function nodeAddressesController(
  mgr: Manager,
  ledger: Ledger,
  fieldManager: string,
): Controller {
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
      const addresses = nodeAddresses(committedAddresses(mgr, ledger, name));
      if (sameJson(node.status?.addresses ?? [], addresses)) return undefined;
      await mgr.client.mergePatchStatus('Node', name, { status: { addresses } }, fieldManager);
      return undefined;
    },
  };
}
