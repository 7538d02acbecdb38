/**
 * Validation of `kubectl crowbar init` answers, as the CRDs would judge them (crds/nodes and
 * crds/networks): each function returns an error message that says what to fix, or undefined.
 */
import { Address4, Address6 } from 'ip-address';

/** crds/nodes.crowbar.dev.yaml: metadata.name is an FQDN of at least three labels. */
const FQDN = /^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.]){2,}[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const NETWORK_NAME = /^[a-z][-a-z0-9]{0,54}$/;
const RANGE_NAME = /^[a-z][-a-z0-9]*$/;

export function checkFqdn(s: string): string | undefined {
  return FQDN.test(s) && s.length <= 253
    ? undefined
    : `${JSON.stringify(s)} is not an FQDN with at least three labels, e.g. admin.lab.example.com (lower case letters, digits and '-')`;
}

export function checkMac(s: string): string | undefined {
  return MAC.test(s)
    ? undefined
    : `${JSON.stringify(s)} is not a MAC address in lower case with colons, e.g. 52:54:00:12:34:56`;
}

export function checkNetworkName(s: string): string | undefined {
  return NETWORK_NAME.test(s)
    ? undefined
    : `${JSON.stringify(s)} is not a network name: a lower case letter, then letters, digits or '-' (at most 55)`;
}

/** crds/networks: spec.subnet is an IPv4 CIDR (the network address itself). */
export function checkSubnet(s: string): string | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(s);
  if (!m || !Address4.isValid(s))
    return `${JSON.stringify(s)} is not an IPv4 CIDR such as 192.168.124.0/24`;
  const a = new Address4(s);
  if (a.startAddress().address !== m[1])
    return `${s} is not a network address: did you mean ${a.startAddress().address}/${m[2] ?? ''}?`;
  return undefined;
}

/** spec.v6prefix: `auto` or an IPv6 /64 network. */
export function checkV6prefix(s: string): string | undefined {
  if (s === 'auto') return undefined;
  const bad = `${JSON.stringify(s)} must be auto or an IPv6 /64 network such as fd12:3456:789a:1::/64`;
  if (!Address6.isValid(s) || !s.endsWith('/64')) return bad;
  const a = new Address6(s);
  return a.startAddress().bigInt() === a.bigInt() ? undefined : bad;
}

function inSubnet(ip: string, subnet: string): boolean {
  return (
    Address4.isValid(ip) && !ip.includes('/') && new Address4(ip).isInSubnet(new Address4(subnet))
  );
}

/** An address inside the subnet (the router). */
export function checkAddressIn(ip: string, subnet: string): string | undefined {
  return inSubnet(ip, subnet)
    ? undefined
    : `${JSON.stringify(ip)} is not an IPv4 address inside ${subnet}`;
}

export interface Range {
  name: string;
  first: string;
  last: string;
}

/** `name=first-last`, e.g. `host=192.168.124.81-192.168.124.160`. */
export function parseRange(s: string): Range | string {
  const m = /^([^=]+)=([^-]+)-(.+)$/.exec(s.trim());
  if (!m)
    return `${JSON.stringify(s)} is not a range: write name=first-last, e.g. host=192.168.124.81-192.168.124.160`;
  return { name: m[1] ?? '', first: m[2] ?? '', last: m[3] ?? '' };
}

/** A range: named as the CRD wants, both ends inside the subnet, first <= last. */
export function checkRange(r: Range, subnet: string): string | undefined {
  if (!RANGE_NAME.test(r.name))
    return `range name ${JSON.stringify(r.name)} must be a lower case letter, then letters, digits or '-'`;
  for (const ip of [r.first, r.last])
    if (!inSubnet(ip, subnet))
      return `range ${r.name}: ${ip} is not an IPv4 address inside ${subnet}`;
  if (new Address4(r.first).bigInt() > new Address4(r.last).bigInt())
    return `range ${r.name}: ${r.first} comes after ${r.last}`;
  return undefined;
}

/** Ranges of one network must not overlap. */
export function checkRangesDisjoint(ranges: readonly Range[]): string | undefined {
  const spans = ranges
    .map((r) => ({ r, a: new Address4(r.first).bigInt(), b: new Address4(r.last).bigInt() }))
    .sort((x, y) => (x.a < y.a ? -1 : x.a > y.a ? 1 : 0));
  for (let i = 1; i < spans.length; i++) {
    const prev = spans[i - 1];
    const cur = spans[i];
    if (prev && cur && cur.a <= prev.b) return `ranges ${prev.r.name} and ${cur.r.name} overlap`;
  }
  const names = new Set<string>();
  for (const r of ranges) {
    if (names.has(r.name)) return `range ${r.name} is given twice`;
    names.add(r.name);
  }
  return undefined;
}
