/**
 * The addresses taken on one network and who holds them, kept sorted per family so that free
 * addresses are found by binary search (ranges.ts) rather than by walking the range.
 */
import type { Family, Ip } from './address.ts';
import { IpamError, formatIp, parseIp } from './address.ts';
import { lowerBound, parseIpWithPrefix } from './ranges.ts';

/** An address held by a node, as recorded: `address` may carry a prefix length. */
export interface Holding {
  readonly address: string;
  readonly node: string;
}

/** An address as recorded, with or without prefix length (`192.168.124.81/24`, `fd00::1`). */
export function parseHeldAddress(text: string): Ip {
  return text.includes('/') ? parseIpWithPrefix(text).ip : parseIp(text);
}

/** Read-only view of the taken addresses, the form the pure allocation decision takes. */
export interface TakenView {
  /** The node holding the address, or undefined when it is free. */
  holder(ip: Ip): string | undefined;
  /** Taken values of the family, ascending and distinct. */
  sorted(family: Family): readonly bigint[];
  /** Addresses of the family the node holds, ascending. */
  heldBy(node: string, family: Family): Ip[];
}

/** Mutable index of taken addresses: address → holder, plus a sorted array per family. */
export class TakenIndex implements TakenView {
  readonly #holders: Record<Family, Map<bigint, string>> = { ipv4: new Map(), ipv6: new Map() };
  readonly #sorted: Record<Family, bigint[]> = { ipv4: [], ipv6: [] };
  /**
   * Per node, what it holds: every allocation asks what its node holds already, and walking the
   * whole sorted array for it made a burst of N allocations cost N^2 lookups.
   */
  readonly #byNode: Record<Family, Map<string, Set<bigint>>> = { ipv4: new Map(), ipv6: new Map() };

  /** Builds an index from recorded holdings; the same address held by two nodes is refused. */
  static from(holdings: Iterable<Holding>): TakenIndex {
    const index = new TakenIndex();
    for (const h of holdings) index.add(parseHeldAddress(h.address), h.node);
    return index;
  }

  holder(ip: Ip): string | undefined {
    return this.#holders[ip.family].get(ip.value);
  }

  sorted(family: Family): readonly bigint[] {
    return this.#sorted[family];
  }

  heldBy(node: string, family: Family): Ip[] {
    const held = this.#byNode[family].get(node);
    if (!held) return [];
    return [...held]
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .map((value) => ({ family, value }));
  }

  /** Number of taken addresses of both families. */
  get size(): number {
    return this.#holders.ipv4.size + this.#holders.ipv6.size;
  }

  /** Records that `node` holds `ip`. Idempotent for the same node; refused for another node. */
  add(ip: Ip, node: string): void {
    const held = this.holder(ip);
    if (held === node) return;
    if (held !== undefined) {
      throw new IpamError(`${formatIp(ip)} is held by ${held}, not ${node}`);
    }
    this.#holders[ip.family].set(ip.value, node);
    const mine = this.#byNode[ip.family].get(node);
    if (mine) mine.add(ip.value);
    else this.#byNode[ip.family].set(node, new Set([ip.value]));
    const sorted = this.#sorted[ip.family];
    sorted.splice(lowerBound(sorted, ip.value), 0, ip.value);
  }

  /** Forgets the address (released); a no-op when it is free. */
  remove(ip: Ip): void {
    const node = this.#holders[ip.family].get(ip.value);
    if (node === undefined) return;
    this.#holders[ip.family].delete(ip.value);
    const mine = this.#byNode[ip.family].get(node);
    mine?.delete(ip.value);
    if (mine?.size === 0) this.#byNode[ip.family].delete(node);
    const sorted = this.#sorted[ip.family];
    sorted.splice(lowerBound(sorted, ip.value), 1);
  }
}
