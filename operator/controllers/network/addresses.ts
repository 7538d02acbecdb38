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
import { ALLOCATOR_WORKERS, type AllocatorActivity } from './allocator.ts';
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

export const NODE_ADDRESSES = 'node-addresses';
/** The longest a Node's addresses wait for the allocator's burst to end (ADR 0029). */
export const MAX_DEFER_MS = 60_000;

/**
 * How long a Node's changed addresses wait before they are written, having waited `waitedMs`
 * already: 0 (write now) unless the allocator is busy, and never beyond {@link MAX_DEFER_MS}.
 */
export function addressWriteWait(allocatorBusy: boolean, waitedMs: number): number {
  return allocatorBusy && waitedMs < MAX_DEFER_MS ? MAX_DEFER_MS - waitedMs : 0;
}

/**
 * Writes each Node's status.addresses: one write per node, which its several networks share.
 * While the allocator is busy (a burst: a new network, a rack of new nodes), the writes wait for
 * it to finish, at most {@link MAX_DEFER_MS}: the API server then serves the creates, which are
 * the commit points, first, and each write follows its node's allocations instead of competing
 * with the next ones (ADR 0029). A lone allocation finds the allocator idle again at once.
 */
export function nodeAddressesController(
  mgr: Manager,
  ledger: Ledger,
  fieldManager: string,
  activity?: AllocatorActivity,
): Controller {
  /** Nodes whose write waits for the allocator, and since when (performance.now()). */
  const deferred = new Map<string, number>();
  activity?.onIdle(() => {
    for (const name of deferred.keys()) mgr.enqueue(NODE_ADDRESSES, name);
  });
  return {
    name: NODE_ADDRESSES,
    // As many as the allocator: a burst's deferred writes drain at the rate its creates went.
    workers: ALLOCATOR_WORKERS,
    watches: {
      Node: (n) => [n.metadata.name ?? ''],
      NetworkAllocation: (a) => [a.spec.node],
      NodeRole: (nr) => (networkOfRole(nr.spec.role) !== undefined ? [nr.spec.node] : []),
    },
    reconcile: async (name) => {
      const node = mgr.caches.Node.get(name);
      if (!node || node.metadata.deletionTimestamp) {
        deferred.delete(name);
        return undefined;
      }
      const addresses = nodeAddresses(committedAddresses(mgr, ledger, name));
      if (sameJson(node.status?.addresses ?? [], addresses)) {
        deferred.delete(name);
        return undefined;
      }
      const now = performance.now();
      const since = deferred.get(name) ?? now;
      const wait = addressWriteWait(activity?.busy() ?? false, now - since);
      if (wait > 0) {
        deferred.set(name, since);
        // Woken by onIdle; the requeue only bounds the wait.
        return { requeueAfterMs: wait };
      }
      deferred.delete(name);
      await mgr.client.mergePatchStatus('Node', name, { status: { addresses } }, fieldManager);
      return undefined;
    },
  };
}
