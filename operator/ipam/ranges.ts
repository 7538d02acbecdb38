/**
 * Range arithmetic shared by IPv4 and IPv6: CIDR blocks, inclusive address ranges, their sizes,
 * overlaps, and the free addresses of a range given the taken ones. Everything is BigInt, so a
 * /64 (2^64 addresses) costs the same as a /24: nothing here walks a range address by address.
 */
import type { Family, Ip } from './address.ts';
import { IpamError, familyBits, hostmask, ipOf, netmask, parseIp, formatIp } from './address.ts';

/** A CIDR block: the network address (host bits zero) and the prefix length. */
export interface Cidr {
  readonly family: Family;
  readonly network: bigint;
  readonly prefixLength: number;
}

/** An address with the prefix length of its subnet, e.g. `192.168.124.81/24` (host bits kept). */
export interface IpWithPrefix {
  readonly ip: Ip;
  readonly prefixLength: number;
}

/** An inclusive range of addresses of one family, `first <= last`. */
export interface IpRange {
  readonly family: Family;
  readonly first: bigint;
  readonly last: bigint;
}

/** Decimal prefix length without sign or leading zeros, as Go's net.ParseCIDR (and CEL) take it. */
const PREFIX_LENGTH = /^(0|[1-9][0-9]{0,2})$/;

/** Parses `address/length`, keeping host bits: the form addresses are recorded in. */
export function parseIpWithPrefix(text: string): IpWithPrefix {
  const slash = text.indexOf('/');
  const lengthText = slash < 0 ? '' : text.slice(slash + 1);
  if (!PREFIX_LENGTH.test(lengthText)) {
    throw new IpamError(
      `${JSON.stringify(text)} needs a prefix length, e.g. 192.168.124.81/24 or fd00::1/64`,
    );
  }
  const ip = parseIp(text.slice(0, slash));
  const prefixLength = Number(lengthText);
  if (prefixLength > familyBits(ip.family)) {
    throw new IpamError(
      `${JSON.stringify(text)}: an ${ip.family} prefix length is at most ${familyBits(ip.family)}`,
    );
  }
  return { ip, prefixLength };
}

/** Prints an address with its prefix length, e.g. `192.168.124.81/24`. */
export function formatIpWithPrefix(a: IpWithPrefix): string {
  return `${formatIp(a.ip)}/${a.prefixLength}`;
}

/**
 * Parses a CIDR block such as `192.168.124.0/24` or `fd00:1:2:3::/64`. Host bits must be zero:
 * `192.168.124.5/24` is refused, since a subnet names its network address.
 */
export function parseCidr(text: string): Cidr {
  const { ip, prefixLength } = parseIpWithPrefix(text);
  const network = ip.value & netmask(ip.family, prefixLength);
  if (network !== ip.value) {
    const fixed = formatCidr({ family: ip.family, network, prefixLength });
    throw new IpamError(
      `${JSON.stringify(text)} has host bits set: name the network address, e.g. ${fixed}`,
    );
  }
  return { family: ip.family, network, prefixLength };
}

/** Prints a CIDR block, e.g. `192.168.124.0/24`. */
export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, value: c.network })}/${c.prefixLength}`;
}

/** The block an address-with-prefix lies in, e.g. `192.168.124.81/24` → `192.168.124.0/24`. */
export function cidrOf(a: IpWithPrefix): Cidr {
  const network = a.ip.value & netmask(a.ip.family, a.prefixLength);
  return { family: a.ip.family, network, prefixLength: a.prefixLength };
}

/** Every address of the block, network and broadcast included. */
export function cidrRange(c: Cidr): IpRange {
  return {
    family: c.family,
    first: c.network,
    last: c.network | hostmask(c.family, c.prefixLength),
  };
}

/**
 * The addresses of the block a host may hold.
 * - IPv4: not the network and broadcast addresses (RFC 1122 §3.2.1.3), except on a /31, where
 *   both addresses are hosts (RFC 3021 §2.2.1), and a /32, which is the one host.
 * - IPv6: not the Subnet-Router anycast address, the all-zero interface ID (RFC 4291 §2.6.1),
 *   except on a /127, where both addresses are hosts (RFC 6164 §5), and a /128.
 */
export function cidrHostRange(c: Cidr): IpRange {
  const all = cidrRange(c);
  const bits = familyBits(c.family);
  if (c.prefixLength >= bits - 1) return all;
  if (c.family === 'ipv4') return { ...all, first: all.first + 1n, last: all.last - 1n };
  return { ...all, first: all.first + 1n };
}

/** True when the address is of the block's family and inside it. */
export function cidrContains(c: Cidr, ip: Ip): boolean {
  return rangeContains(cidrRange(c), ip);
}

/** True when two blocks of one family share an address (one then contains the other). */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return rangesOverlap(cidrRange(a), cidrRange(b));
}

/**
 * Builds the inclusive range `first`–`last` from two bare addresses. Refuses mixed families and
 * a first address after the last, saying which.
 */
export function parseRange(first: string, last: string): IpRange {
  const a = parseIp(first);
  const b = parseIp(last);
  if (a.family !== b.family) {
    throw new IpamError(
      `range ${first}-${last} mixes ${a.family} and ${b.family}: give two ${a.family} addresses`,
    );
  }
  if (a.value > b.value) {
    throw new IpamError(`range ${first}-${last} starts after it ends: swap first and last`);
  }
  return { family: a.family, first: a.value, last: b.value };
}

/** Prints a range as `first-last`, e.g. `192.168.124.81-192.168.124.254`. */
export function formatRange(r: IpRange): string {
  return `${formatIp({ family: r.family, value: r.first })}-${formatIp({ family: r.family, value: r.last })}`;
}

/** Number of addresses in the range (both ends included). */
export function rangeSize(r: IpRange): bigint {
  return r.last - r.first + 1n;
}

/** True when the address is of the range's family and inside it. */
export function rangeContains(r: IpRange, ip: Ip): boolean {
  return ip.family === r.family && ip.value >= r.first && ip.value <= r.last;
}

/** True when two ranges of one family share at least one address. */
export function rangesOverlap(a: IpRange, b: IpRange): boolean {
  return a.family === b.family && a.first <= b.last && b.first <= a.last;
}

/** True when `inner` lies entirely inside `outer`. */
export function rangeWithin(inner: IpRange, outer: IpRange): boolean {
  return inner.family === outer.family && inner.first >= outer.first && inner.last <= outer.last;
}

/** The `n`th address of the range, counting the first as 0. */
export function nthAddress(r: IpRange, n: bigint): Ip {
  if (n < 0n || n >= rangeSize(r)) {
    throw new IpamError(`index ${n} is outside ${formatRange(r)} (${rangeSize(r)} addresses)`);
  }
  return ipOf(r.family, r.first + n);
}

/** The position of the address in the range (first = 0), or undefined when it is not in it. */
export function indexOfAddress(r: IpRange, ip: Ip): bigint | undefined {
  return rangeContains(r, ip) ? ip.value - r.first : undefined;
}

/** Index of the first element of the ascending array that is `>= v` (length when none is). */
export function lowerBound(sorted: readonly bigint[], v: bigint): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] ?? v) < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** How many of the ascending, distinct `taken` values lie in the range. */
export function countTakenIn(r: IpRange, taken: readonly bigint[]): number {
  return lowerBound(taken, r.last + 1n) - lowerBound(taken, r.first);
}

/**
 * The lowest free value in `[from, to]`, or undefined. `taken` is ascending and distinct.
 *
 * O(log n): in a sorted distinct array, `taken[j] - j` never decreases, and a run of taken
 * values starting at `from` is exactly the indices where it stays equal to `from - i`. A binary
 * search for the end of that run finds the first hole without visiting the run.
 */
export function nextFree(from: bigint, to: bigint, taken: readonly bigint[]): bigint | undefined {
  if (from > to) return undefined;
  const i = lowerBound(taken, from);
  if (taken[i] !== from) return from;
  const key = from - BigInt(i);
  let lo = i;
  let hi = taken.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((taken[mid] ?? 0n) - BigInt(mid) > key) hi = mid;
    else lo = mid + 1;
  }
  const free = from + BigInt(lo - i);
  return free <= to ? free : undefined;
}

/**
 * The free addresses of the range in ascending order, starting at `start` (default: the first
 * address) and wrapping around to the first address once past the last. `taken` is ascending and
 * distinct; values outside the range are ignored. Each step costs O(log |taken|), so iterating a
 * few addresses of a nearly full /64 is as cheap as of an empty /24.
 */
export function* freeAddresses(
  r: IpRange,
  taken: readonly bigint[],
  start: bigint = r.first,
): Generator<bigint, void, undefined> {
  const from = start < r.first || start > r.last ? r.first : start;
  for (const [lo, hi] of [
    [from, r.last],
    [r.first, from - 1n],
  ] as const) {
    for (let v = nextFree(lo, hi, taken); v !== undefined; v = nextFree(v + 1n, hi, taken)) {
      yield v;
    }
  }
}

/** The first free address of the range at or after `start` (wrapping), or undefined when full. */
export function firstFree(
  r: IpRange,
  taken: readonly bigint[],
  start: bigint = r.first,
): bigint | undefined {
  for (const v of freeAddresses(r, taken, start)) return v;
  return undefined;
}

/** Sorts and de-duplicates values into the form {@link freeAddresses} takes. */
export function sortedDistinct(values: Iterable<bigint>): bigint[] {
  const out = [...new Set(values)];
  out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return out;
}
