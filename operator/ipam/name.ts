/**
 * Names of NetworkAllocation objects. An allocation is named after its network and its address,
 * so two writers that pick the same address create the same object name and the API server's
 * create-if-absent (409 AlreadyExists) lets exactly one of them win: a double allocation cannot
 * be written, whatever the number of operator replicas or restarts.
 */
import type { Ip } from './address.ts';
import { IpamError, expandIp, parseIp } from './address.ts';

/**
 * Network names the API server admits: the CRD's `^[a-z][-a-z0-9]{0,54}$` and, as for every
 * object name, a DNS subdomain (RFC 1123), so no trailing `-`.
 */
const NETWORK_NAME = /^[a-z]([-a-z0-9]{0,53}[a-z0-9])?$/;
const V4_PART = /^(0|[1-9][0-9]{0,2})(-(0|[1-9][0-9]{0,2})){3}$/;
const V6_PART = /^[0-9a-f]{4}(-[0-9a-f]{4}){7}$/;

/**
 * `<network>.<address>`, the address written in full with `.` and `:` turned into `-`:
 * `admin.192-168-124-81`, `admin.fd12-3456-789a-0001-7264-46a8-b448-01fa`.
 *
 * Injective: network names hold no `.`, so the first `.` splits the two parts; IPv4 parts are
 * four decimal numbers without leading zeros, IPv6 parts eight groups of exactly four lower-case
 * hex digits (never elided, so each address has one spelling) and the two shapes cannot be
 * confused. The result is a valid DNS subdomain (RFC 1123), at most 55 + 1 + 39 = 95 characters.
 */
export function allocationName(network: string, address: Ip | string): string {
  if (!NETWORK_NAME.test(network)) {
    throw new IpamError(`network name ${JSON.stringify(network)} is not a valid Network name`);
  }
  const ip = typeof address === 'string' ? parseIp(address) : address;
  return `${network}.${expandIp(ip).replace(/[.:]/g, '-')}`;
}

/** The network and address an allocation name encodes, or undefined for any other name. */
export function parseAllocationName(name: string): { network: string; ip: Ip } | undefined {
  const dot = name.indexOf('.');
  if (dot < 0) return undefined;
  const network = name.slice(0, dot);
  const part = name.slice(dot + 1);
  if (!NETWORK_NAME.test(network)) return undefined;
  if (V4_PART.test(part)) {
    try {
      return { network, ip: parseIp(part.replace(/-/g, '.')) };
    } catch {
      return undefined; // an octet above 255 passes the pattern
    }
  }
  if (V6_PART.test(part)) return { network, ip: parseIp(part.replace(/-/g, ':')) };
  return undefined;
}
