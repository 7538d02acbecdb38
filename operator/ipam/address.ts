/**
 * Single IP addresses as plain values: a family and a BigInt. Parsing and printing go through the
 * `ip-address` package; arithmetic is done on the BigInt so that v4 and v6 share one code path.
 */
import { Address4, Address6 } from 'ip-address';

/** Address family, spelled as the CRDs spell it (Node status, NetworkAllocation). */
export type Family = 'ipv4' | 'ipv6';

/** One address: its family and its value as an unsigned integer of 32 or 128 bits. */
export interface Ip {
  readonly family: Family;
  readonly value: bigint;
}

/** Thrown for input that is not an address, a CIDR or a range; the message says what to fix. */
export class IpamError extends Error {
  override name = 'IpamError';
}

/** Width of an address of the family, in bits. */
export function familyBits(family: Family): 32 | 128 {
  return family === 'ipv4' ? 32 : 128;
}

/** The largest value an address of the family can hold (all ones). */
export function maxValue(family: Family): bigint {
  return (1n << BigInt(familyBits(family))) - 1n;
}

/** True for text with a colon: IPv6 literals always have one, IPv4 ones never do. */
function looksV6(text: string): boolean {
  return text.includes(':');
}

/**
 * Parses a bare address (no prefix length, no zone), e.g. `192.168.124.81` or `fd00::1`.
 * Rejects what the CRDs' CEL `isIP()` rejects: leading zeros in IPv4 octets, zones (`%eth0`).
 */
export function parseIp(text: string): Ip {
  if (text.includes('/')) {
    throw new IpamError(`${JSON.stringify(text)} has a prefix length: give a bare address`);
  }
  if (text.includes('%')) {
    throw new IpamError(`${JSON.stringify(text)} has a zone: give an address without %zone`);
  }
  try {
    return looksV6(text)
      ? { family: 'ipv6', value: new Address6(text).bigInt() }
      : { family: 'ipv4', value: new Address4(text).bigInt() };
  } catch (cause) {
    throw new IpamError(
      `${JSON.stringify(text)} is not an IPv4 or IPv6 address, e.g. 192.168.124.81 or fd00::1`,
      { cause },
    );
  }
}

/** True when `text` is a bare IPv4 or IPv6 address as {@link parseIp} accepts it. */
export function isIp(text: string): boolean {
  try {
    parseIp(text);
    return true;
  } catch {
    return false;
  }
}

/** Builds an address from a family and value, checking that the value fits the family. */
export function ipOf(family: Family, value: bigint): Ip {
  if (value < 0n || value > maxValue(family)) {
    throw new IpamError(`${value} does not fit in an ${family} address`);
  }
  return { family, value };
}

/** The address in its usual text form: dotted quad, or RFC 5952 §4 compressed IPv6. */
export function formatIp(ip: Ip): string {
  return ip.family === 'ipv4'
    ? Address4.fromBigInt(ip.value).correctForm()
    : Address6.fromBigInt(ip.value).correctForm();
}

/**
 * The address with nothing elided: IPv4 as the dotted quad, IPv6 as eight groups of four hex
 * digits. Two different addresses never share an expanded form, which makes it a safe key.
 */
export function expandIp(ip: Ip): string {
  return ip.family === 'ipv4'
    ? Address4.fromBigInt(ip.value).correctForm()
    : Address6.fromBigInt(ip.value).canonicalForm();
}

/** Same family and value. */
export function ipEquals(a: Ip, b: Ip): boolean {
  return a.family === b.family && a.value === b.value;
}

/** Mask with the top `prefixLength` bits set, for the family. */
export function netmask(family: Family, prefixLength: number): bigint {
  const bits = BigInt(familyBits(family));
  return maxValue(family) ^ ((1n << (bits - BigInt(prefixLength))) - 1n);
}

/** Mask with the low (host) bits set: the complement of {@link netmask}. */
export function hostmask(family: Family, prefixLength: number): bigint {
  return maxValue(family) ^ netmask(family, prefixLength);
}
