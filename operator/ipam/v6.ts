/**
 * IPv6 the Crowbar way (CROWBAR-MODEL §7.5; the seed's "The Network Barclamp"): a network's /64 is
 * either given or `auto`, an RFC 4193 unique local prefix built from a random 40-bit global ID
 * (one per cluster) and a 16-bit subnet ID (one per network); a node's interface ID is the last
 * 64 bits of the md5 of its lower-cased FQDN, so its address maps back to its name.
 *
 * Pure: the random bytes are injected, the global ID and subnet IDs are stored by the caller.
 */
import { createHash } from 'node:crypto';
import type { Ip } from './address.ts';
import { IpamError, formatIp } from './address.ts';
import type { Cidr, IpRange } from './ranges.ts';
import { formatCidr, parseCidr } from './ranges.ts';

/** The `v6prefix` value that asks for an RFC 4193 prefix derived from the cluster's global ID. */
export const V6_AUTO = 'auto';

/** A global ID as stored: 40 bits as ten lower-case hex digits (RFC 4193 §3.1 "Global ID"). */
const GLOBAL_ID = /^[0-9a-f]{10}$/;

/** Largest subnet ID: RFC 4193 §3.1 gives the subnet ID 16 bits. */
export const MAX_SUBNET_ID = 0xffff;

/**
 * The interface ID of a node's IPv6 addresses: the last 64 bits of md5 of its lower-cased FQDN
 * (§7.5: Crowbar's `v6_hostpart`, `d[16..31]` of the hex digest). Lower-casing makes it follow the
 * name, which DNS compares without case.
 *
 * md5 is used for compatibility with Crowbar's addressing, not for security: the ID only has to
 * spread names over 2^64 values.
 */
export function interfaceId(fqdn: string): bigint {
  const digest = createHash('md5').update(fqdn.toLowerCase(), 'utf8').digest('hex');
  return BigInt(`0x${digest.slice(16)}`);
}

/**
 * Draws a new 40-bit global ID from the injected source of random bytes (RFC 4193 §3.2.2 suggests
 * a hash of time and an EUI-64; §3.2 only requires that it be random: use a CSPRNG such as
 * `node:crypto.randomBytes`). Returned as ten lower-case hex digits, the form to store.
 */
export function randomGlobalId(randomBytes: (n: number) => Uint8Array): string {
  const bytes = randomBytes(5);
  if (bytes.length !== 5) throw new IpamError('randomGlobalId needs 5 random bytes');
  return Buffer.from(bytes).toString('hex');
}

/** True when `text` is a global ID as {@link randomGlobalId} makes them. */
export function isGlobalId(text: string): boolean {
  return GLOBAL_ID.test(text);
}

/**
 * The `auto` prefix of a network: `fdGG:GGGG:GGGG:SSSS::/64` for global ID `GGGGGGGGGG` and
 * subnet ID `SSSS` (RFC 4193 §3.1: 7-bit prefix fc00::/7, L bit, 40-bit global ID, 16-bit subnet
 * ID, 64-bit interface ID).
 *
 * Where this differs from Crowbar: Crowbar prepends `0xfc`, i.e. uses fc00::/8, the half of
 * fc00::/7 with L = 0. RFC 4193 §3.1 says L = 1 means locally assigned and leaves L = 0 "to be
 * defined in the future"; locally chosen random prefixes must therefore be in fd00::/8. We use
 * `fd`, so the prefix is a valid unique local address and will not clash with whatever L = 0
 * comes to mean. Crowbar also used the network's database ID as the subnet ID; here the caller
 * assigns one with {@link nextSubnetId} and keeps it in the Network's status.
 *
 * Returned in RFC 5952 form, e.g. `fd12:3456:789a:1::/64`.
 */
export function autoPrefix(globalId: string, subnetId: number): string {
  if (!isGlobalId(globalId)) {
    throw new IpamError(
      `global ID ${JSON.stringify(globalId)} must be 40 bits as ten lower-case hex digits, e.g. 123456789a`,
    );
  }
  if (!Number.isInteger(subnetId) || subnetId < 0 || subnetId > MAX_SUBNET_ID) {
    throw new IpamError(`subnet ID ${subnetId} must be an integer from 0 to 65535 (16 bits)`);
  }
  // RFC 4193 §3.1: bits 0-7 = 0xfd (prefix fc00::/7 plus L = 1), 8-47 global ID, 48-63 subnet ID.
  const top64 = (0xfdn << 56n) | (BigInt(`0x${globalId}`) << 16n) | BigInt(subnetId);
  return formatCidr({ family: 'ipv6', network: top64 << 64n, prefixLength: 64 });
}

/**
 * The lowest subnet ID from 1 up that no other network holds. IDs start at 1 as Crowbar's
 * database IDs did; once assigned an ID is kept in the network's status and never recomputed,
 * so deleting a network does not move another network's prefix.
 */
export function nextSubnetId(taken: Iterable<number>): number {
  const used = new Set(taken);
  for (let id = 1; id <= MAX_SUBNET_ID; id++) if (!used.has(id)) return id;
  throw new IpamError(
    'all 65535 RFC 4193 subnet IDs are in use: give a network a literal v6prefix',
  );
}

/** Parses a /64 prefix (e.g. `fd12:3456:789a:1::/64`), refusing any other length or family. */
export function parsePrefix64(prefix: string): Cidr {
  const c = parseCidr(prefix);
  if (c.family !== 'ipv6' || c.prefixLength !== 64) {
    throw new IpamError(
      `v6 prefix ${JSON.stringify(prefix)} must be an IPv6 /64 such as fd12:3456:789a:1::/64`,
    );
  }
  return c;
}

/** The node's address in the /64: the prefix followed by {@link interfaceId}. */
export function nodeV6Ip(prefix64: string, fqdn: string): Ip {
  return { family: 'ipv6', value: parsePrefix64(prefix64).network | interfaceId(fqdn) };
}

/**
 * The node's address in the /64 (§7.5: `<v6prefix>:<hostpart>`), RFC 5952 form. For example
 * node1.example.com in fd00::/64 is fd00::7264:46a8:b448:1fa.
 */
export function nodeV6Address(prefix64: string, fqdn: string): string {
  return formatIp(nodeV6Ip(prefix64, fqdn));
}

/**
 * The range nodes are given addresses from in a /64 when the network defines no IPv6 range
 * (Crowbar's automatic `host-v6` range). It starts at `::1`: the all-zero interface ID is the
 * Subnet-Router anycast address (RFC 4291 §2.6.1). It ends below the top 128 interface IDs,
 * which RFC 2526 §2 reserves for subnet anycast addresses in /64 subnets (Crowbar ends one below
 * the all-ones ID and so includes 127 of them).
 */
export function v6HostRange(prefix64: string): IpRange {
  const { network } = parsePrefix64(prefix64);
  return { family: 'ipv6', first: network + 1n, last: network + 0xffff_ffff_ffff_ff7fn };
}
