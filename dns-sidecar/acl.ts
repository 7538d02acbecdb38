/** Address lists (zone transfer ACL): CIDRs or single addresses, IPv4-mapped IPv6 read as IPv4. */
import { Address4, Address6 } from 'ip-address';

export type Acl = (remote: string) => boolean;

/** An ACL that allows the listed prefixes; an empty list allows nobody. Throws on a bad entry. */
export function makeAcl(entries: readonly string[]): Acl {
  const v4: Address4[] = [];
  const v6: Address6[] = [];
  for (const e of entries) {
    if (e.includes(':')) v6.push(new Address6(e.includes('/') ? e : `${e}/128`));
    else v4.push(new Address4(e.includes('/') ? e : `${e}/32`));
  }
  return (remote: string): boolean => {
    try {
      let r = remote;
      if (r.toLowerCase().startsWith('::ffff:') && r.includes('.')) r = r.slice(7);
      if (r.includes(':')) {
        const a = new Address6(r);
        return v6.some((n) => a.isInSubnet(n));
      }
      const a = new Address4(r);
      return v4.some((n) => a.isInSubnet(n));
    } catch {
      return false;
    }
  };
}
