/**
 * What IPAM reads from a Network: its parsed ranges, the range a node is given an address from
 * (CROWBAR-MODEL §7.4) and the prefix length its addresses carry.
 */
import type { NetworkSpec } from '../../generated/crowbar.ts';
import type { Family } from './address.ts';
import type { Cidr, IpRange } from './ranges.ts';
import { countTakenIn, parseCidr, parseRange, rangeSize } from './ranges.ts';
import { V6_AUTO, parsePrefix64, v6HostRange } from './v6.ts';

/** The IPv4 range nodes are given addresses from (§7.4). */
export const HOST_RANGE = 'host';
/** The IPv4 range admin nodes are given addresses from when the network has one (§7.4). */
export const ADMIN_RANGE = 'admin';
/** The IPv6 range nodes are given addresses from; derived from the /64 when not defined (§7.5). */
export const HOST_V6_RANGE = 'host-v6';

/**
 * A network as IPAM sees it: its name, its spec, and its IPv6 /64 once resolved (a literal
 * `spec.v6prefix`, or the `auto` prefix the operator recorded in `status.v6prefix`).
 */
export interface NetworkView {
  readonly name: string;
  readonly spec: NetworkSpec;
  readonly v6prefix?: string | undefined;
}

/** A named range of a network, parsed, with the prefix length of the subnet it lies in. */
export interface ResolvedRange {
  readonly name: string;
  readonly range: IpRange;
  readonly prefixLength: number;
  /** Index in spec.ranges; undefined for the IPv6 host range derived from the /64. */
  readonly index?: number | undefined;
}

/** The /64 of a network: a literal spec.v6prefix, else the resolved one passed in (from status). */
export function resolvedV6Prefix(spec: NetworkSpec, statusPrefix?: string): string | undefined {
  if (spec.v6prefix !== undefined && spec.v6prefix !== V6_AUTO) return spec.v6prefix;
  return wantsAutoPrefix(spec) ? statusPrefix : undefined;
}

/**
 * True when the network should get an `auto` prefix: it asks for one, or it is an admin network
 * with no v6prefix (the seed: "the admin network will automatically create an RFC4193 IPv6
 * network if it is not passed a v6prefix").
 */
export function wantsAutoPrefix(spec: NetworkSpec): boolean {
  return spec.v6prefix === V6_AUTO || (spec.v6prefix === undefined && spec.category === 'admin');
}

/** The subnet as a block, or undefined when absent or unparsable (CEL reports that). */
export function subnetOf(spec: NetworkSpec): Cidr | undefined {
  if (spec.subnet === undefined) return undefined;
  try {
    return parseCidr(spec.subnet);
  } catch {
    return undefined;
  }
}

/** The resolved /64 as a block, or undefined. */
export function v6PrefixOf(network: NetworkView): Cidr | undefined {
  const p = resolvedV6Prefix(network.spec, network.v6prefix);
  if (p === undefined) return undefined;
  try {
    return parsePrefix64(p);
  } catch {
    return undefined;
  }
}

/** Prefix length that addresses of the family carry on this network (/32, /128 when unknown). */
export function prefixLengthOf(network: NetworkView, family: Family): number {
  if (family === 'ipv4') return subnetOf(network.spec)?.prefixLength ?? 32;
  return v6PrefixOf(network)?.prefixLength ?? 128;
}

/** The ranges of spec.ranges that parse, with their index; bad ones are validate.ts's business. */
export function specRanges(network: NetworkView): ResolvedRange[] {
  const out: ResolvedRange[] = [];
  (network.spec.ranges ?? []).forEach((r, index) => {
    try {
      const range = parseRange(r.first, r.last);
      out.push({ name: r.name, range, prefixLength: prefixLengthOf(network, range.family), index });
    } catch {
      // Refused by validateNetwork with a message naming the field.
    }
  });
  return out;
}

/**
 * The named range of the family, or undefined. For IPv6 `host-v6`, a network that has a /64 but
 * defines no such range gets the range derived from the /64 ({@link v6HostRange}), as Crowbar
 * creates one automatically (§7.5).
 */
export function findRange(
  network: NetworkView,
  family: Family,
  name: string,
): ResolvedRange | undefined {
  const found = specRanges(network).find((r) => r.name === name && r.range.family === family);
  if (found !== undefined || family !== 'ipv6' || name !== HOST_V6_RANGE) return found;
  const prefix = resolvedV6Prefix(network.spec, network.v6prefix);
  if (prefix === undefined) return undefined;
  try {
    return { name, range: v6HostRange(prefix), prefixLength: 64 };
  } catch {
    return undefined;
  }
}

/**
 * The range a node is given an address of the family from (§7.4): IPv6 `host-v6`; IPv4 `admin`
 * for an admin node when the network has such a range, else `host`.
 */
export function defaultRangeName(network: NetworkView, family: Family, adminNode: boolean): string {
  if (family === 'ipv6') return HOST_V6_RANGE;
  if (adminNode && findRange(network, 'ipv4', ADMIN_RANGE) !== undefined) return ADMIN_RANGE;
  return HOST_RANGE;
}

/** One entry of Network status.usage. */
export interface RangeUsage {
  readonly range: string;
  readonly allocated: number;
  readonly size: number;
}

/**
 * Usage of each range for Network status.usage: how many of `taken` (ascending, distinct, per
 * family) fall in it, and its size. A /64's size does not fit the status field's int64, so sizes
 * are capped at Number.MAX_SAFE_INTEGER (2^53 - 1), which reads as "practically unlimited".
 */
export function rangeUsage(
  network: NetworkView,
  taken: Readonly<Record<Family, readonly bigint[]>>,
): RangeUsage[] {
  const ranges = specRanges(network);
  const v6 = findRange(network, 'ipv6', HOST_V6_RANGE);
  if (v6 !== undefined && v6.index === undefined) ranges.push(v6);
  return ranges.map((r) => {
    const size = rangeSize(r.range);
    return {
      range: r.name,
      allocated: countTakenIn(r.range, taken[r.range.family]),
      size: size > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(size),
    };
  });
}
