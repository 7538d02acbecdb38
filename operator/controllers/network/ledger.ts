/**
 * The operator's in-memory view of who holds which address: the NetworkAllocation informer's
 * objects, indexed per network (a {@link TakenIndex}, so a free address is a binary search away)
 * and per node, plus the addresses this process has reserved and is creating right now.
 *
 * The ledger only makes collisions rare; it never makes them impossible. The API server decides:
 * an allocation is the object named `<network>.<address>`, and a second create of that name fails
 * with 409 AlreadyExists, whatever this or another replica's ledger said.
 */
import type { NetworkAllocation } from '../../../generated/crowbar.ts';
import type { Family, Ip, TakenView } from '../../ipam/index.ts';
import { allocationName, parseHeldAddress, TakenIndex } from '../../ipam/index.ts';

interface Entry {
  readonly ip: Ip;
  readonly node: string;
  /** The object; undefined while this process is creating it (a reservation). */
  obj: NetworkAllocation | undefined;
}

class NetLedger {
  readonly index = new TakenIndex();
  readonly entries = new Map<string, Entry>();
}

function rv(o: Readonly<NetworkAllocation>): bigint {
  try {
    return BigInt(o.metadata.resourceVersion ?? '0');
  } catch {
    return 0n;
  }
}

/** True when the allocation is held for the NodeRole with this uid (not a previous binding's). */
export function ownedBy(a: Readonly<NetworkAllocation>, uid: string | undefined): boolean {
  return uid !== undefined && (a.metadata.ownerReferences ?? []).some((r) => r.uid === uid);
}

export class Ledger {
  readonly #nets = new Map<string, NetLedger>();
  /** node → network → allocation names. */
  readonly #byNode = new Map<string, Set<string>>();
  readonly #listeners: ((a: NetworkAllocation, gone: boolean) => void)[] = [];

  #net(network: string): NetLedger {
    let l = this.#nets.get(network);
    if (!l) {
      l = new NetLedger();
      this.#nets.set(network, l);
    }
    return l;
  }

  /** Called for every change the ledger takes in (after it took it in). */
  onChange(fn: (a: NetworkAllocation, gone: boolean) => void): void {
    this.#listeners.push(fn);
  }

  /** Records an object seen by the informer or returned by a write; older versions are ignored. */
  upsert(a: NetworkAllocation): void {
    const name = a.metadata.name ?? '';
    let ip: Ip;
    try {
      ip = parseHeldAddress(a.spec.address);
    } catch {
      return; // CEL admits only valid CIDRs; nothing to index otherwise
    }
    const l = this.#net(a.spec.network);
    const cur = l.entries.get(name);
    if (cur?.obj && cur.obj.metadata.uid === a.metadata.uid && rv(cur.obj) > rv(a)) return;
    if (cur && cur.node !== a.spec.node) l.index.remove(cur.ip);
    if (l.index.holder(ip) !== undefined && l.index.holder(ip) !== a.spec.node) l.index.remove(ip);
    l.index.add(ip, a.spec.node);
    l.entries.set(name, { ip, node: a.spec.node, obj: a });
    this.#nodeSet(a.spec.node).add(`${a.spec.network}/${name}`);
    for (const f of this.#listeners) f(a, false);
  }

  /** Forgets an object the informer saw deleted (a newer object of the same name is kept). */
  remove(a: NetworkAllocation): void {
    const name = a.metadata.name ?? '';
    const l = this.#nets.get(a.spec.network);
    const cur = l?.entries.get(name);
    if (!l || !cur) return;
    if (cur.obj === undefined || cur.obj.metadata.uid !== a.metadata.uid) return;
    l.entries.delete(name);
    l.index.remove(cur.ip);
    this.#byNode.get(cur.node)?.delete(`${a.spec.network}/${name}`);
    if (this.#byNode.get(cur.node)?.size === 0) this.#byNode.delete(cur.node);
    for (const f of this.#listeners) f(a, true);
  }

  /**
   * Reserves `ip` for `node` while this process creates its allocation; false when the ledger
   * already knows a holder. Synchronous, so two workers of one process never pick one address.
   */
  reserve(network: string, name: string, ip: Ip, node: string): boolean {
    const l = this.#net(network);
    if (l.index.holder(ip) !== undefined || l.entries.has(name)) return false;
    l.index.add(ip, node);
    l.entries.set(name, { ip, node, obj: undefined });
    return true;
  }

  /** Drops a reservation whose create failed (the object, if the informer saw one, stays). */
  unreserve(network: string, name: string): void {
    const l = this.#nets.get(network);
    const cur = l?.entries.get(name);
    if (!l || !cur || cur.obj !== undefined) return;
    l.entries.delete(name);
    l.index.remove(cur.ip);
  }

  /** Records that another node holds the address (learned from a 409 and a read). */
  heldElsewhere(a: NetworkAllocation): void {
    this.unreserve(a.spec.network, a.metadata.name ?? '');
    this.upsert(a);
  }

  /** The allocation object of that name, when known. */
  get(network: string, name: string): NetworkAllocation | undefined {
    return this.#nets.get(network)?.entries.get(name)?.obj;
  }

  /** Known allocation objects of a network. */
  allocations(network: string): NetworkAllocation[] {
    const out: NetworkAllocation[] = [];
    for (const e of this.#nets.get(network)?.entries.values() ?? []) if (e.obj) out.push(e.obj);
    return out;
  }

  /** Number of known allocation objects of a network. */
  count(network: string): number {
    let n = 0;
    for (const e of this.#nets.get(network)?.entries.values() ?? []) if (e.obj) n++;
    return n;
  }

  /** Taken values per family (objects and reservations), ascending. */
  sorted(network: string): Record<Family, readonly bigint[]> {
    const l = this.#nets.get(network);
    return { ipv4: l?.index.sorted('ipv4') ?? [], ipv6: l?.index.sorted('ipv6') ?? [] };
  }

  /** Known allocation objects held by a node, on every network. */
  ofNode(node: string): NetworkAllocation[] {
    const out: NetworkAllocation[] = [];
    for (const key of this.#byNode.get(node) ?? []) {
      const slash = key.indexOf('/');
      const obj = this.get(key.slice(0, slash), key.slice(slash + 1));
      if (obj) out.push(obj);
    }
    return out;
  }

  /**
   * The taken view for allocating to the NodeRole with `uid` on `node`: every known address is
   * taken, but the node "holds" only its reservations and the allocations owned by that NodeRole,
   * so an allocation left by a previous binding of the same name is never taken over.
   */
  viewFor(network: string, node: string, uid: string | undefined): TakenView {
    const l = this.#net(network);
    const mine = (ip: Ip): boolean => {
      const e = l.entries.get(allocationName(network, ip));
      return e !== undefined && (e.obj === undefined || ownedBy(e.obj, uid));
    };
    return {
      holder: (ip) => l.index.holder(ip),
      sorted: (family) => l.index.sorted(family),
      heldBy: (n, family) => (n === node ? l.index.heldBy(n, family).filter(mine) : []),
    };
  }

  #nodeSet(node: string): Set<string> {
    let s = this.#byNode.get(node);
    if (!s) {
      s = new Set();
      this.#byNode.set(node, s);
    }
    return s;
  }
}
