/**
 * Domain names as the zone model keeps them: lower case, no trailing dot, the root as ''. Reverse
 * names for IPv4 (in-addr.arpa, RFC 1035 §3.5) and IPv6 (ip6.arpa nibbles, RFC 3596 §2.5), and the
 * reverse zones a network's prefix is served in.
 */
import { Address4, Address6 } from 'ip-address';

/** Lower case without the trailing dot; '.' and '' are the root (''). */
export function canon(name: string): string {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return n.toLowerCase();
}

/** True when `name` is `zone` or below it (both canonical). */
export function isAtOrBelow(name: string, zone: string): boolean {
  if (zone === '') return true;
  return name === zone || name.endsWith(`.${zone}`);
}

/** The parent of a canonical name ('' for a single label; undefined for the root). */
export function parent(name: string): string | undefined {
  if (name === '') return undefined;
  const dot = name.indexOf('.');
  return dot < 0 ? '' : name.slice(dot + 1);
}

/** `name` with `origin` joined (canonical), for names written relative to a zone. */
export function join(label: string, origin: string): string {
  return origin === '' ? label : `${label}.${origin}`;
}

/** The address part of `a.b.c.d/len` or `x::y/len`. */
export function stripPrefix(cidr: string): string {
  const slash = cidr.indexOf('/');
  return slash < 0 ? cidr : cidr.slice(0, slash);
}

/** 192.0.2.1 -> 1.2.0.192.in-addr.arpa */
export function reverseV4(address: string): string {
  const a = new Address4(address);
  return `${a.toArray().reverse().join('.')}.in-addr.arpa`;
}

/** 2001:db8::1 -> the 32 nibbles of the address, least significant first, under ip6.arpa. */
export function reverseV6(address: string): string {
  return canon(new Address6(address).reverseForm());
}

/** A reverse zone a network is served in; `classless` marks an RFC 2317 zone. */
export interface ReverseZone {
  origin: string;
  family: 4 | 6;
  /** First and last address the zone covers (IPv4 as 32-bit numbers; IPv6 as bigint). */
  first: bigint;
  last: bigint;
  classless: boolean;
}

/** At most this many octet-boundary zones for one IPv4 network (a /8 split into /16 zones is 256). */
const MAX_V4_ZONES = 256;

/**
 * The reverse zones of an IPv4 subnet. On octet boundaries (/8, /16, /24) the zone is the
 * subnet's own reverse name; a prefix between boundaries is split into the zones of the next
 * boundary down (a /20 is sixteen /24 zones). A prefix longer than /24 gets an RFC 2317 classless
 * zone `<first octet>-<length>.c.b.a.in-addr.arpa` whose owner names are `<last octet>.<zone>`;
 * the owner of the enclosing /24 delegates to it with CNAMEs (RFC 2317 §4).
 */
export function reverseZonesV4(subnet: string): ReverseZone[] {
  const net = new Address4(subnet);
  const len = net.subnetMask;
  const start = net.startAddress().bigInt();
  const end = net.endAddress().bigInt();
  if (len > 24) {
    const o = net.startAddress().toArray();
    return [
      {
        origin: `${o[3] ?? 0}-${len}.${o[2] ?? 0}.${o[1] ?? 0}.${o[0] ?? 0}.in-addr.arpa`,
        family: 4,
        first: start,
        last: end,
        classless: true,
      },
    ];
  }
  const zoneLen = len === 0 ? 8 : Math.ceil(len / 8) * 8;
  const count = 2 ** (zoneLen - len);
  if (count > MAX_V4_ZONES) return [];
  const size = 2n ** BigInt(32 - zoneLen);
  const zones: ReverseZone[] = [];
  for (let i = 0; i < count; i++) {
    const first = start + BigInt(i) * size;
    const octets = [
      Number((first >> 24n) & 255n),
      Number((first >> 16n) & 255n),
      Number((first >> 8n) & 255n),
      Number(first & 255n),
    ].slice(0, zoneLen / 8);
    zones.push({
      origin: `${octets.reverse().join('.')}.in-addr.arpa`,
      family: 4,
      first,
      last: first + size - 1n,
      classless: false,
    });
  }
  return zones.filter((z) => z.last <= end);
}

/** The ip6.arpa nibble zone of an IPv6 prefix (the network's /64: sixteen nibbles). */
export function reverseZoneV6(prefix: string): ReverseZone | undefined {
  const net = new Address6(prefix);
  const len = net.subnetMask;
  if (len % 4 !== 0 || len === 0) return undefined;
  const nibbles = net
    .startAddress()
    .canonicalForm()
    .replaceAll(':', '')
    .slice(0, len / 4);
  return {
    origin: `${nibbles.split('').reverse().join('.')}.ip6.arpa`,
    family: 6,
    first: net.startAddress().bigInt(),
    last: net.endAddress().bigInt(),
    classless: false,
  };
}

/** The numeric value of an address (IPv4 as a 32-bit number, IPv6 as 128 bits). */
export function addressValue(address: string, family: 4 | 6): bigint {
  return family === 4 ? new Address4(address).bigInt() : new Address6(address).bigInt();
}

/**
 * The PTR owner name of `address` inside `zone`: the plain reverse name, or for an RFC 2317
 * classless zone `<last octet>.<zone>`.
 */
export function ptrOwner(address: string, zone: ReverseZone): string {
  if (zone.family === 6) return reverseV6(address);
  if (!zone.classless) return reverseV4(address);
  const last = new Address4(address).toArray()[3] ?? 0;
  return `${last}.${zone.origin}`;
}

/** The canonical form of an address: dotted quad, or the RFC 5952 compressed IPv6 text. */
export function canonicalAddress(address: string, family: 4 | 6): string {
  return family === 4 ? new Address4(address).correctForm() : new Address6(address).correctForm();
}
