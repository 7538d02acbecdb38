/**
 * The network barclamp's controllers (CROWBAR-MODEL §7): the Network controller (role, /64,
 * status), the allocator (addresses for bound `network-<name>` noderoles) and Node addresses.
 * They share one ledger of allocations, fed by the NetworkAllocation informer.
 */
import type { Recorder } from '../../events.ts';
import type { Logger } from '../../log.ts';
import type { Controller, Manager } from '../../manager.ts';
import { nodeAddressesController } from './addresses.ts';
import { allocationStatusController } from './allocation-status.ts';
import { Allocator, type Addressing } from './allocator.ts';
import { Ledger } from './ledger.ts';
import { NetworkController } from './network.ts';

/** Field manager of the network controllers' writes. */
export const NETWORK_FIELD_MANAGER = 'crowbar-network';

/**
 * The controllers, and the allocator's answer on network noderoles for the annealer (ADR 0025).
 */
export function networkControllers(o: {
  mgr: Manager;
  recorder: Recorder;
  log: Logger;
  fieldManager?: string;
}): { controllers: Controller[]; addressing: Addressing } {
  const fieldManager = o.fieldManager ?? NETWORK_FIELD_MANAGER;
  const ledger = new Ledger();
  o.mgr.caches.NetworkAllocation.on({
    onAdd: (a) => {
      ledger.upsert(a);
    },
    onUpdate: (a) => {
      ledger.upsert(a);
    },
    onDelete: (a) => {
      ledger.remove(a);
    },
  });
  const allocator = new Allocator({
    mgr: o.mgr,
    ledger,
    recorder: o.recorder,
    fieldManager,
    log: o.log,
  });
  const controllers = [
    new NetworkController({
      mgr: o.mgr,
      ledger,
      recorder: o.recorder,
      fieldManager,
      log: o.log,
    }).controller(),
    allocator.controller(),
    nodeAddressesController(o.mgr, ledger, fieldManager, allocator),
    allocationStatusController(o.mgr, fieldManager),
  ];
  return { controllers, addressing: allocator };
}
