/**
 * The allocator (CROWBAR-MODEL §7.4): when a NodeRole of role `network-<name>` is bound, it gives
 * the node its addresses on that network and hands them to jigs; when the binding or the node
 * goes away, it releases them.
 *
 * An address is held by a NetworkAllocation named `<network>.<address>` (ipam/name.ts), created
 * with create-if-absent: 409 AlreadyExists means someone holds it, so no two nodes can ever hold
 * one address, whatever the number of replicas. The allocation is owned by the NodeRole (the
 * garbage collector deletes it with the binding) and carries a finalizer that only this
 * controller removes, once the binding or the node is gone, like Kubernetes' pvc-protection: an
 * allocation deleted by hand while its node still uses it stays held (Terminating) until then.
 *
 * The allocation's create is the commit point (ADR 0025): a healthy allocation costs that one
 * write. Every reader (Node addresses, the annealer's gating of network roles, the wall the
 * network noderole hands its children) takes a binding's address of a family by one rule
 * (plan.ts bindingAddresses): the one the NodeRole's wall names, else the earliest created. Two
 * replicas may still allocate for the same NodeRole at once and create two addresses for it;
 * only then does the allocator write the wall (`status.wall.crowbar.network.<name>`, with the
 * resourceVersion it read, so one writer wins, the annealer included), and once the wall names
 * the winner it releases the extra. The wall is otherwise written by the annealer, in the write
 * that records the network noderole's run (see {@link Allocator.readiness}).
 */
import {
  GROUP,
  PLURALS,
  VERSION,
  type Network,
  type NetworkAllocation,
  type Node,
  type NodeRole,
} from '../../../generated/crowbar.ts';
import type { Recorder } from '../../events.ts';
import type { AllocationChoice, Family, NetworkView, NodeAllocView } from '../../ipam/index.ts';
import { allocationName, decideAllocation, parseHeldAddress } from '../../ipam/index.ts';
import { setConditions } from '../../kube/condition.ts';
import { apiMessage, isConflict, isNotFound } from '../../kube/errors.ts';
import type { Logger } from '../../log.ts';
import type { Controller, Manager } from '../../manager.ts';
import { isBound } from '../annealer/view.ts';
import { ownedBy, type Ledger } from './ledger.ts';
import { NetworkController } from './network.ts';
import {
  addressEntry,
  ALLOCATION_FINALIZER,
  bindingAddresses,
  needsUla,
  networkOfRole,
  networkProblems,
  networkRoleName,
  networkWall,
  parseNetworkNodeRoleName,
  sameJson,
  wallAddresses,
  wallOf,
  type AddressEntry,
} from './plan.ts';

export const ALLOCATOR = 'ipam-allocator';
/** NodeRoles the allocator works on at once (creates in flight, per replica). */
export const ALLOCATOR_WORKERS = 16;
/** Condition on a network NodeRole: whether its node has its addresses on the network. */
export const ADDRESSED = 'Addressed';
const NETWORK_LABEL = 'crowbar.dev/network';
/** Re-check of a NodeRole that could not be given addresses (besides the events that fix it). */
const ERROR_RETRY_MS = 15_000;
/** Creates tried for one address family in one reconcile before backing off. */
const MAX_ATTEMPTS = 64;

export interface AllocatorOptions {
  mgr: Manager;
  ledger: Ledger;
  recorder: Recorder;
  fieldManager: string;
  log: Logger;
  workers?: number;
}

/** The network NodeRole an allocation is held for (its owner, else the name it would have). */
const ownerOf = (a: Readonly<NetworkAllocation>): string =>
  a.metadata.ownerReferences?.find((r) => r.kind === 'NodeRole')?.name ??
  `${networkRoleName(a.spec.network)}.${a.spec.node}`;

interface Failure {
  reason: string;
  message: string;
}

type Outcome = { requeueAfterMs: number } | undefined;

/**
 * Whether a network noderole may run (its node holds its addresses on the network) and, when it
 * may, the data its wall hands down (`crowbar.network.<name>`).
 */
export type Readiness =
  | { ready: true; network: string; wall: Record<string, unknown> }
  | { ready: false; why: string; needsAction: boolean };

/**
 * Whether the allocator is in the middle of a burst, for the Node addresses it leaves to others
 * (ADR 0029): those writes wait until the creates, the commit points, are done.
 */
export interface AllocatorActivity {
  /** True while a reconcile is in flight. */
  busy(): boolean;
  /** Calls `fn` each time the last reconcile in flight ends. */
  onIdle(fn: () => void): void;
}

/** What the annealer asks the allocator about network noderoles (ADR 0025). */
export interface Addressing {
  /** See {@link Readiness}; from the caches, no API call. */
  readiness(nr: Readonly<NodeRole>): Readiness;
  /** Calls `fn` with the name of a network noderole whose addresses may have changed. */
  onChange(fn: (noderole: string) => void): void;
}

export class Allocator implements Addressing, AllocatorActivity {
  private readonly o: AllocatorOptions;
  private readonly log: Logger;
  /** Network NodeRole names per network and per node (kept from the NodeRole informer). */
  private readonly byNetwork = new Map<string, Set<string>>();
  private readonly byNode = new Map<string, Set<string>>();
  /** NodeRoles waiting for an address on a network (e.g. a full range), re-tried on releases. */
  private readonly waiting = new Map<string, Set<string>>();
  /** What allocation last read from each Network, to skip its status-only updates. */
  private readonly seen = new Map<string, string>();
  private readonly seenNodes = new Map<string, string>();
  private readonly listeners: ((noderole: string) => void)[] = [];
  /** Reconciles in flight, and who waits for them to end (see {@link AllocatorActivity}). */
  private inFlight = 0;
  private readonly idleListeners: (() => void)[] = [];

  constructor(o: AllocatorOptions) {
    this.o = o;
    this.log = o.log.child({ controller: ALLOCATOR });
    const track = (nr: NodeRole, gone: boolean): void => {
      const name = nr.metadata.name ?? '';
      const network = networkOfRole(nr.spec.role);
      if (network === undefined) return;
      for (const [map, key] of [
        [this.byNetwork, network],
        [this.byNode, nr.spec.node],
      ] as const) {
        let s = map.get(key);
        if (!s) map.set(key, (s = new Set()));
        if (gone) s.delete(name);
        else s.add(name);
        if (s.size === 0) map.delete(key);
      }
    };
    o.mgr.caches.NodeRole.on({
      onAdd: (nr) => {
        track(nr, false);
      },
      onUpdate: (nr) => {
        track(nr, false);
      },
      onDelete: (nr) => {
        track(nr, true);
      },
    });
    o.ledger.onChange((a) => {
      if (this.listeners.length === 0) return;
      const owner = ownerOf(a);
      for (const f of this.listeners) f(owner);
    });
    // A released address may be what a waiting NodeRole needs.
    o.ledger.onChange((a, gone) => {
      if (!gone) return;
      const waiting = this.waiting.get(a.spec.network);
      if (!waiting || !o.mgr.isLeader) return;
      for (const name of waiting) o.mgr.enqueue(ALLOCATOR, name);
    });
  }

  onChange(fn: (noderole: string) => void): void {
    this.listeners.push(fn);
  }

  busy(): boolean {
    return this.inFlight > 0;
  }

  onIdle(fn: () => void): void {
    this.idleListeners.push(fn);
  }

  controller(): Controller {
    const { ledger } = this.o;
    return {
      name: ALLOCATOR,
      workers: this.o.workers ?? ALLOCATOR_WORKERS,
      watches: {
        NodeRole: (nr) =>
          networkOfRole(nr.spec.role) !== undefined ? [nr.metadata.name ?? ''] : [],
        // Releases: an allocation deleted, being deleted, or whose binding is gone; and a second
        // allocation of one family for one binding (another replica raced this one), which the
        // wall must settle. A new live allocation needs nothing else: its binding is being
        // reconciled, here or by another replica.
        NetworkAllocation: (a) => {
          const owner = ownerOf(a);
          const nr = this.o.mgr.caches.NodeRole.get(owner);
          const gone = !this.o.mgr.caches.NetworkAllocation.get(a.metadata.name ?? '');
          if (gone || a.metadata.deletionTimestamp || !nr || !ownedBy(a, nr.metadata.uid))
            return [owner];
          const twins = ledger
            .ofNode(a.spec.node)
            .filter(
              (x) =>
                x.spec.network === a.spec.network &&
                x.spec.family === a.spec.family &&
                ownedBy(x, nr.metadata.uid),
            );
          return twins.length > 1 ? [owner] : [];
        },
        // Only what allocation reads: spec, resolved /64, validity (not the counts in status).
        Network: (n) => {
          const name = n.metadata.name ?? '';
          const valid = n.status?.conditions?.find((c) => c.type === 'Valid');
          const sig = `${n.metadata.uid ?? ''}|${n.metadata.generation ?? 0}|${n.status?.v6prefix ?? ''}|${valid?.status ?? ''}|${valid?.message ?? ''}`;
          if (!this.o.mgr.caches.Network.get(name))
            this.seen.delete(name); // deleted
          else if (this.seen.get(name) === sig) return [];
          else this.seen.set(name, sig);
          return [...(this.byNetwork.get(name) ?? [])];
        },
        // Hints (spec) and deletion matter; status updates (addresses, aliveness) do not.
        Node: (n) => {
          const name = n.metadata.name ?? '';
          const sig = `${n.metadata.uid ?? ''}|${n.metadata.generation ?? 0}|${n.metadata.deletionTimestamp ? 'deleting' : ''}`;
          if (!this.o.mgr.caches.Node.get(name)) this.seenNodes.delete(name);
          else if (this.seenNodes.get(name) === sig) return [];
          else this.seenNodes.set(name, sig);
          return [
            ...new Set([...(this.byNode.get(name) ?? []), ...ledger.ofNode(name).map(ownerOf)]),
          ];
        },
      },
      reconcile: async (key) => {
        this.inFlight++;
        try {
          return await this.reconcile(key);
        } finally {
          if (--this.inFlight === 0) for (const f of this.idleListeners) f();
        }
      },
    };
  }

  private async reconcile(name: string): Promise<Outcome> {
    const parsed = parseNetworkNodeRoleName(name);
    if (!parsed) return undefined;
    const { network, node } = parsed;
    const { mgr, ledger } = this.o;
    const nr = mgr.caches.NodeRole.get(name);
    const net = mgr.caches.Network.get(network);
    const nodeObj = mgr.caches.Node.get(node);
    const held = ledger.ofNode(node).filter((a) => a.spec.network === network);
    const live =
      nr !== undefined &&
      !nr.metadata.deletionTimestamp &&
      nr.spec.role === networkRoleName(network) &&
      nr.spec.node === node &&
      nodeObj !== undefined &&
      !nodeObj.metadata.deletionTimestamp &&
      net !== undefined;
    // Released only once the binding or the node is gone (or the network itself).
    const stale = held.filter((a) => !live || !ownedBy(a, nr.metadata.uid));
    await Promise.all(stale.map((a) => this.release(a)));
    if (!live || !isBound(nr)) {
      this.waiting.get(network)?.delete(name);
      return undefined;
    }
    if (needsUla(net.spec) && net.status?.v6prefix === undefined) {
      return { requeueAfterMs: 1000 }; // the network controller has not resolved the /64 yet
    }
    let cur: Readonly<NodeRole> = nr;
    for (let attempt = 0; attempt < 8; attempt++) {
      const res = await this.allocate(cur, net, nodeObj);
      if (res.kind === 'done') return res.outcome;
      const fresh = await mgr.client.get('NodeRole', name);
      if (!fresh || !isBound(fresh)) return undefined;
      cur = fresh;
    }
    throw new Error(`noderole ${name} keeps changing; will retry`);
  }

  /** One pass for a bound, live NodeRole; `conflict` means re-read it and pass again. */
  private async allocate(
    nr: Readonly<NodeRole>,
    net: Readonly<Network>,
    node: Readonly<Node>,
  ): Promise<{ kind: 'done'; outcome: Outcome } | { kind: 'conflict' }> {
    const name = nr.metadata.name ?? '';
    const network = net.metadata.name ?? '';
    const nodeName = node.metadata.name ?? '';
    const view = NetworkController.view(net);
    const failures: Failure[] = [];
    const ownedNow = (): NetworkAllocation[] =>
      this.o.ledger
        .ofNode(nodeName)
        .filter((a) => a.spec.network === network && ownedBy(a, nr.metadata.uid));

    const committed = wallAddresses(nr, network);
    /** Families where something failed keep what they hold: nothing of theirs is released. */
    const failedFamilies = new Set<Family>();
    const problems = this.networkProblems(view, net, ownedNow());
    if (problems.length > 0) {
      failures.push({
        reason: 'NetworkInvalid',
        message: `network ${network} is not valid, so no address is allocated on it: ${problems.join('; ')}`,
      });
      failedFamilies.add('ipv4').add('ipv6');
    } else {
      const nodeView = this.nodeView(node, net);
      for (const family of ['ipv4', 'ipv6'] as const) {
        const got = await this.allocateFamily(nr, view, nodeView, family, committed);
        if (got !== undefined && 'reason' in got) {
          failures.push(got);
          failedFamilies.add(family);
        }
      }
    }
    // The addresses every reader takes for this binding (ADR 0025), and a racing replica's extras.
    const { chosen, extras } = bindingAddresses(ownedNow(), committed);
    const releasable = extras.filter((a) => !failedFamilies.has(a.spec.family));

    const wrote = await this.commit(
      nr,
      view,
      chosen.map(addressEntry),
      failures,
      releasable.length > 0,
    );
    if (wrote === 'conflict') return { kind: 'conflict' };

    // The wall now names this binding's addresses: the extras go.
    await Promise.all(releasable.map((a) => this.release(a)));

    const waiting = this.waiting.get(network) ?? new Set<string>();
    if (failures.length > 0) {
      waiting.add(name);
      this.waiting.set(network, waiting);
      return { kind: 'done', outcome: { requeueAfterMs: ERROR_RETRY_MS } };
    }
    waiting.delete(name);
    return { kind: 'done', outcome: undefined };
  }

  /**
   * Whether a network noderole may run: its node holds, on the network, every address §7.4 gives
   * it (each family's decision finds it held or wants none), as the allocator's caches show it,
   * and its Node's status.addresses lists them.
   * Asked by the annealer for todo network noderoles whose wall does not name their addresses
   * yet; the wall it returns goes into the write that records the run (ADR 0025), so the healthy
   * path writes nothing here.
   */
  readiness(nr: Readonly<NodeRole>): Readiness {
    const network = networkOfRole(nr.spec.role) ?? '';
    const cond = nr.status?.conditions?.find((c) => c.type === ADDRESSED);
    if (cond?.status === 'False')
      return {
        ready: false,
        why: `its addresses on network ${network} could not be allocated: ${cond.message}`,
        needsAction: true,
      };
    // One message for "not allocated" and "allocated, not listed yet": a todo noderole's message
    // says why it waits, and a second wording would cost it a second write.
    const waiting: Readiness = {
      ready: false,
      why: `its node does not list its addresses on network ${network} yet`,
      needsAction: false,
    };
    const { mgr, ledger } = this.o;
    const net = mgr.caches.Network.get(network);
    const node = mgr.caches.Node.get(nr.spec.node);
    if (!net || !node || node.metadata.deletionTimestamp || nr.metadata.deletionTimestamp)
      return waiting;
    if (needsUla(net.spec) && net.status?.v6prefix === undefined) return waiting;
    const view = NetworkController.view(net);
    const owned = ledger
      .ofNode(nr.spec.node)
      .filter((a) => a.spec.network === network && ownedBy(a, nr.metadata.uid));
    if (this.networkProblems(view, net, owned).length > 0) return waiting;
    const nodeView = this.nodeView(node, net);
    for (const family of ['ipv4', 'ipv6'] as const) {
      const d = decideAllocation({
        network: view,
        node: nodeView,
        family,
        taken: ledger.viewFor(network, nodeView.name, nr.metadata.uid),
      });
      if (d.kind === 'none') continue;
      // 'existing' is also this process's reservation while its create is in flight.
      if (d.kind !== 'existing' || !ledger.get(network, d.name)) return waiting;
    }
    const { chosen } = bindingAddresses(owned, wallAddresses(nr, network));
    // Its children (a script reaching the node over SSH, a Job's runner) read the node's addresses
    // from the Node: they run after it, so it waits for the Node to list them.
    const listed = new Set(
      (node.status?.addresses ?? []).filter((x) => x.network === network).map((x) => x.address),
    );
    if (!chosen.every((a) => listed.has(a.spec.address))) return waiting;
    return { ready: true, network, wall: networkWall(view, chosen.map(addressEntry)) };
  }

  /**
   * What stops allocation on the network: its own ranges and router, overlaps in its group, a
   * subnet, /64 or range changed under the addresses this binding holds (judged here, from the
   * ledger, by the same rules as the network controller's), and, from the network controller's
   * Valid condition, one changed under other nodes' addresses.
   *
   * The binding's own addresses are judged here rather than left to the Valid condition: that
   * condition is written after the spec change, and a pass in between would otherwise see a
   * "valid" network, allocate in the new subnet and release the address the node holds: moving
   * it, which is what the rule forbids (issue 8, bug 4).
   */
  private networkProblems(
    view: NetworkView,
    net: Readonly<Network>,
    owned: readonly Readonly<NetworkAllocation>[],
  ): string[] {
    const others = this.o.mgr.caches.Network.list()
      .filter((n) => n.metadata.name !== view.name)
      .map((n) => NetworkController.view(n));
    const problems = networkProblems(view, others, owned).map((p) => p.message);
    const valid = net.status?.conditions?.find((c) => c.type === 'Valid');
    if (problems.length === 0 && valid?.status === 'False') problems.push(valid.message);
    return problems;
  }

  /** The node as §7.4 sees it, with its address on the admin network of the same group. */
  private nodeView(node: Readonly<Node>, net: Readonly<Network>): NodeAllocView {
    const group = net.spec.group ?? 'default';
    const admin = this.o.ledger.ofNode(node.metadata.name ?? '').find((a) => {
      if (a.spec.family !== 'ipv4' || a.spec.network === net.metadata.name) return false;
      const other = this.o.mgr.caches.Network.get(a.spec.network);
      return other?.spec.category === 'admin' && (other.spec.group ?? 'default') === group;
    });
    return {
      name: node.metadata.name ?? '',
      admin: node.spec.admin,
      hints: node.spec.hints,
      adminAddress: admin?.spec.address,
    };
  }

  /**
   * The node's allocation of one family: the one its wall already names when it still holds it,
   * else §7.4's decision, created with create-if-absent and decided again after each address
   * someone else turned out to hold.
   */
  private async allocateFamily(
    nr: Readonly<NodeRole>,
    view: NetworkView,
    nodeView: NodeAllocView,
    family: Family,
    committed: readonly string[],
  ): Promise<NetworkAllocation | Failure | undefined> {
    const { ledger } = this.o;
    const network = view.name;
    const uid = nr.metadata.uid;
    for (const address of committed) {
      let ip;
      try {
        ip = parseHeldAddress(address);
      } catch {
        continue;
      }
      if (ip.family !== family) continue;
      const name = allocationName(network, ip);
      let a = ledger.get(network, name);
      // The informer may not have shown this replica the winner's allocation yet: ask.
      if (a === undefined) {
        a = await this.o.mgr.client.get('NetworkAllocation', name);
        if (a) ledger.upsert(a);
      }
      if (a && a.spec.node === nodeView.name && ownedBy(a, uid)) return a;
    }
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const d = decideAllocation({
        network: view,
        node: nodeView,
        family,
        taken: ledger.viewFor(network, nodeView.name, uid),
      });
      if (d.kind === 'none') return undefined;
      if (d.kind === 'error') return { reason: d.reason, message: d.message };
      if (d.kind === 'existing') {
        const a = ledger.get(network, d.name);
        if (a) return a;
        continue; // a reservation of this very reconcile cannot exist; re-decide
      }
      const got = await this.createAllocation(nr, view, nodeView.name, d);
      if (got) return got;
    }
    throw new Error(
      `network ${network}: ${MAX_ATTEMPTS} addresses were taken by others while allocating to ${nodeView.name}; will retry`,
    );
  }

  /** Creates the allocation; undefined when another node turned out to hold the address. */
  private async createAllocation(
    nr: Readonly<NodeRole>,
    view: NetworkView,
    node: string,
    d: AllocationChoice,
  ): Promise<NetworkAllocation | undefined> {
    const { mgr, ledger } = this.o;
    const network = view.name;
    if (!ledger.reserve(network, d.name, d.ip, node)) return undefined;
    try {
      const a = await mgr.client.create(
        'NetworkAllocation',
        {
          metadata: {
            name: d.name,
            labels: { [NETWORK_LABEL]: network },
            finalizers: [ALLOCATION_FINALIZER],
            ownerReferences: [
              {
                apiVersion: nr.apiVersion,
                kind: 'NodeRole',
                name: nr.metadata.name ?? '',
                uid: nr.metadata.uid ?? '',
              },
            ],
          },
          spec: { network, node, address: d.address, family: d.family, range: d.range },
        },
        this.o.fieldManager,
      );
      ledger.upsert(a);
      return a;
    } catch (e) {
      if (!isConflict(e)) {
        ledger.unreserve(network, d.name);
        throw new Error(
          `could not allocate ${d.address} on network ${network} to ${node}: ${apiMessage(e)}`,
          {
            cause: e,
          },
        );
      }
    }
    // 409: the name, i.e. the address, is taken. Ours (another replica allocated it for this
    // same binding) or someone else's.
    const existing = await mgr.client.get('NetworkAllocation', d.name);
    if (!existing) {
      ledger.unreserve(network, d.name); // released meanwhile; decide again
      return undefined;
    }
    if (existing.spec.node === node && ownedBy(existing, nr.metadata.uid)) {
      ledger.upsert(existing);
      return existing;
    }
    ledger.heldElsewhere(existing);
    return undefined;
  }

  /**
   * Writes what the allocation's create does not say (ADR 0025), with the resourceVersion it read
   * as precondition: the wall, when it already names addresses (they changed, e.g. the network's
   * router), when the noderole is active without them, or when a racing replica left an extra
   * (the wall settles which one stays); and, when something failed, the message, the Addressed
   * condition and an Event (Addressed=True only replaces a False). A healthy first allocation
   * writes nothing.
   */
  private async commit(
    nr: Readonly<NodeRole>,
    view: NetworkView,
    entries: readonly AddressEntry[],
    failures: readonly Failure[],
    extras: boolean,
  ): Promise<'ok' | 'conflict'> {
    const name = nr.metadata.name ?? '';
    const network = view.name;
    const wall = networkWall(view, entries);
    const current = wallOf(nr, network);
    const prevCond = nr.status?.conditions?.find((c) => c.type === ADDRESSED);
    const failed = failures.length > 0;
    const message = failed
      ? failures.map((f) => f.message).join('; ')
      : `addresses on network ${network}: ${entries.map((e) => e.address).join(', ') || 'none'}`;
    const update = {
      type: ADDRESSED,
      status: failed ? ('False' as const) : ('True' as const),
      reason: failed ? (failures[0]?.reason ?? 'Failed') : 'Allocated',
      message,
    };
    const wallNeeded =
      (current !== undefined || nr.status?.state === 'active' || extras) &&
      !sameJson(current ?? null, wall);
    // status.message is the annealer's: it quotes this condition while it holds the noderole.
    const condNeeded = failed
      ? prevCond?.message !== message || prevCond.status !== 'False'
      : prevCond?.status === 'False';
    if (!wallNeeded && !condNeeded) return 'ok';
    const status: Record<string, unknown> = {};
    if (wallNeeded) status['wall'] = { crowbar: { network: { [network]: wall } } };
    if (condNeeded) {
      status['conditions'] = setConditions(
        nr.status?.conditions,
        [update],
        new Date(),
        nr.metadata.generation,
      );
    }
    try {
      await this.o.mgr.client.mergePatchStatus(
        'NodeRole',
        name,
        { metadata: { resourceVersion: nr.metadata.resourceVersion }, status },
        this.o.fieldManager,
      );
    } catch (e) {
      if (isConflict(e)) return 'conflict';
      if (isNotFound(e)) return 'ok';
      throw new Error(`could not record the addresses of ${name}: ${apiMessage(e)}`, { cause: e });
    }
    const target = { kind: 'NodeRole', name, uid: nr.metadata.uid };
    if (failed && prevCond?.message !== message) {
      this.o.recorder.warning(target, update.reason, message);
      this.log.warn({ noderole: name, reason: update.reason, message }, 'could not allocate');
    } else if (!failed && prevCond?.status === 'False') {
      this.o.recorder.normal(target, 'Allocated', message);
    }
    return 'ok';
  }

  /** Releases an address: drops the finalizer (the binding or node is gone) and deletes it. */
  private async release(a: Readonly<NetworkAllocation>): Promise<void> {
    const { mgr } = this.o;
    const name = a.metadata.name ?? '';
    const uid = a.metadata.uid;
    let cur: Readonly<NetworkAllocation> | undefined = a;
    for (let attempt = 0; attempt < 8; attempt++) {
      if (!cur || cur.metadata.uid !== uid) return;
      const finalizers = cur.metadata.finalizers ?? [];
      if (!finalizers.includes(ALLOCATION_FINALIZER)) break;
      try {
        await mgr.client.mergePatch(
          'NetworkAllocation',
          name,
          {
            metadata: {
              resourceVersion: cur.metadata.resourceVersion,
              finalizers: finalizers.filter((f) => f !== ALLOCATION_FINALIZER),
            },
          },
          this.o.fieldManager,
        );
        break;
      } catch (e) {
        if (isNotFound(e)) return;
        if (!isConflict(e)) throw e;
        cur = await mgr.client.get('NetworkAllocation', name);
      }
    }
    if (!cur || cur.metadata.uid !== uid || cur.metadata.deletionTimestamp) return;
    try {
      // The uid precondition: never delete a newer allocation of the same address.
      await mgr.client.api.deleteClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURALS.NetworkAllocation,
        name,
        body: { preconditions: { uid: uid ?? '' } },
      });
    } catch (e) {
      if (isNotFound(e) || isConflict(e)) return;
      throw e;
    }
    this.log.debug({ allocation: name, node: a.spec.node }, 'released address');
  }
}
