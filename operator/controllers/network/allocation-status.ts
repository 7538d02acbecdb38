/**
 * NetworkAllocation status: a `Held` condition saying why an address is going away while its
 * node still uses it (an allocation deleted by hand stays Terminating until its binding or node is
 * gone), with `observedGeneration`. A live allocation gets no status write (ADR 0025): its create
 * is the one write an allocation costs, and what a Held=True would say is in the object already
 * (spec.node, spec.network, the owning NodeRole). Coalesced and off the allocation path.
 */
import type { NetworkAllocation } from '../../../generated/crowbar.ts';
import { conditionsCurrent, setConditions, type ConditionUpdate } from '../../kube/condition.ts';
import { isConflict, isNotFound } from '../../kube/errors.ts';
import type { Controller, Manager } from '../../manager.ts';

/** The Held condition of an allocation, from the allocation alone. */
export function heldCondition(a: Readonly<NetworkAllocation>): ConditionUpdate {
  const owner = a.metadata.ownerReferences?.find((o) => o.kind === 'NodeRole')?.name;
  if (a.metadata.deletionTimestamp)
    return {
      type: 'Held',
      status: 'False',
      reason: 'Releasing',
      message: `released: kept until node ${a.spec.node} no longer uses it (its binding or the node is gone)`,
    };
  return {
    type: 'Held',
    status: 'True',
    reason: 'Allocated',
    message: `${a.spec.address} on network ${a.spec.network} is held for node ${a.spec.node}${owner ? ` by ${owner}` : ''}`,
  };
}

export function allocationStatusController(mgr: Manager, fieldManager: string): Controller {
  return {
    name: 'allocation-status',
    workers: 1,
    coalesceMs: 1000,
    watches: { NetworkAllocation: (a) => [a.metadata.name ?? ''] },
    reconcile: async (name) => {
      const a = mgr.caches.NetworkAllocation.get(name);
      if (!a) return undefined;
      const held = heldCondition(a);
      if (held.status === 'True' && !a.status?.conditions?.some((c) => c.type === 'Held'))
        return undefined;
      const generation = a.metadata.generation;
      if (
        a.status?.observedGeneration === generation &&
        conditionsCurrent(a.status?.conditions, [held])
      )
        return undefined;
      try {
        await mgr.client.mergePatchStatus(
          'NetworkAllocation',
          name,
          {
            metadata: { resourceVersion: a.metadata.resourceVersion },
            status: {
              ...(generation !== undefined ? { observedGeneration: generation } : {}),
              conditions: setConditions(a.status?.conditions, [held], new Date(), generation),
            },
          },
          fieldManager,
        );
      } catch (e) {
        if (isNotFound(e)) return undefined;
        if (isConflict(e)) return { requeueAfterMs: 200 };
        throw e;
      }
      return undefined;
    },
  };
}
