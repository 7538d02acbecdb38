/**
 * Records as RFC 1035 §5 master-file text: used for zone digests (what changed), for the zone files
 * the differential test loads into NSD, and for debugging. The sidecar itself never serves from a
 * file.
 */
import type { Answer } from 'dns-packet';
import type { Zone } from './zones.ts';

const abs = (name: string): string => (name === '' ? '.' : `${name}.`);

/** The RDATA of a record in presentation format (the types the sidecar serves). */
export function rdataText(rr: Answer): string {
  switch (rr.type) {
    case 'A':
    case 'AAAA':
      return rr.data;
    case 'NS':
    case 'PTR':
    case 'CNAME':
      return abs(rr.data);
    case 'SOA': {
      const d = rr.data;
      return `${abs(d.mname)} ${abs(d.rname)} ${d.serial ?? 0} ${d.refresh ?? 0} ${d.retry ?? 0} ${d.expire ?? 0} ${d.minimum ?? 0}`;
    }
    default:
      throw new Error(`zonefile: record type ${rr.type} is not served by the sidecar`);
  }
}

/** One master-file line: absolute owner, TTL, class, type, RDATA. */
export function recordLine(rr: Answer): string {
  const ttl = 'ttl' in rr ? (rr.ttl ?? 0) : 0;
  return `${abs(rr.name)} ${ttl} IN ${rr.type} ${rdataText(rr)}`;
}

/** Every record of the zone, SOA first, in a stable order. */
export function zoneRecords(zone: Zone): Answer[] {
  const out: Answer[] = [zone.soa];
  const owners = [...zone.names.keys()].sort();
  for (const owner of owners) {
    const sets = zone.names.get(owner);
    if (!sets) continue;
    for (const type of [...sets.keys()].sort((a, b) => a - b)) {
      if (type === 6) continue; // the SOA is first
      out.push(...(sets.get(type) ?? []));
    }
  }
  return out;
}

/** The zone as a master file (absolute names, `$ORIGIN` for readers). */
export function renderZone(zone: Zone): string {
  const lines = [`$ORIGIN ${abs(zone.origin)}`, ...zoneRecords(zone).map(recordLine)];
  return `${lines.join('\n')}\n`;
}
