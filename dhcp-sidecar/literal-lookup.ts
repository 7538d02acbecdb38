/**
 * dgram resolves every send's destination through `lookup` (dns.lookup by default), which answers
 * an IP literal only on a later tick and costs about a tenth of a reply's CPU. A reply always goes
 * to a literal (the client's, giaddr, or broadcast), so this lookup hands it straight back.
 */
export function literalLookup(family: 4 | 6) {
  return (
    address: string,
    _options: unknown,
    cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
  ): void => {
    cb(null, address, family);
  };
}
