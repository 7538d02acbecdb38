/** IPv4 subnet membership, shared by the handlers and the backends (pure). */
import { ipToInt } from './codec.ts';

/** Parsed subnets: a sidecar serves one or a few, and every packet asks. Bounded. */
const subnets = new Map<string, { net: number; bits: number }>();

/** `a.b.c.d/n` as a network number and prefix length (cached). */
export function prefixOf(subnet: string): { net: number; bits: number } {
  let p = subnets.get(subnet);
  if (p === undefined) {
    const [a = '', b = '32'] = subnet.split('/');
    p = { net: ipToInt(a) >>> 0, bits: Number(b) };
    if (subnets.size >= 64) subnets.clear();
    subnets.set(subnet, p);
  }
  return p;
}

export function maskOf(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

export function inSubnet(address: string, subnet: string): boolean {
  const { net, bits } = prefixOf(subnet);
  const n = ipToInt(address);
  return !Number.isNaN(n) && (n & maskOf(bits)) >>> 0 === net;
}
