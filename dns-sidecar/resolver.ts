/**
 * The pure resolver: a question and the zones in, the sections and rcode of the answer out. It is
 * authoritative only: names outside its zones are REFUSED (never recursion, never an open
 * resolver), and negative answers follow RFC 2308 exactly.
 */
import type { Answer } from 'dns-packet';
import { canon, parent } from './names.ts';
import { T, type Zone } from './zones.ts';

/** RFC 1035 §4.1.1 and RFC 6895 rcodes the sidecar sends. */
export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

/** Question types and classes with special handling. */
export const QTYPE = { IXFR: 251, AXFR: 252, ANY: 255 } as const;
export const QCLASS = { IN: 1, CH: 3, ANY: 255 } as const;

/** The zones being served, looked up by origin. */
export type ZoneSet = ReadonlyMap<string, Zone>;

export interface Question {
  /** The name as it arrived (case preserved, RFC 4343 / 0x20). */
  name: string;
  type: number;
  class: number;
}

export interface Resolution {
  rcode: number;
  /** Authoritative answer (AA): set for every answer from one of our zones. */
  aa: boolean;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
  /** The zone that answered, for metrics and logs. */
  zone?: string;
}

/** The zone a canonical name falls in (longest origin match), or undefined. */
export function findZone(zones: ZoneSet, name: string): Zone | undefined {
  for (let n: string | undefined = name; n !== undefined; n = parent(n)) {
    const z = zones.get(n);
    if (z) return z;
  }
  return undefined;
}

/** RFC 2308 §3: the SOA in a negative answer has TTL min(SOA TTL, SOA MINIMUM). */
function negativeSoa(zone: Zone): Answer {
  const ttl = Math.min(zone.soa.ttl ?? 0, zone.soa.data.minimum ?? 0);
  return { ...zone.soa, ttl };
}

/** The records of one set with the owner name spelled as the question spelled it. */
function spelled(records: readonly Answer[], name: string): Answer[] {
  return records.map((r) => ({ ...r, name }));
}

function refused(): Resolution {
  return { rcode: RCODE.REFUSED, aa: false, answers: [], authorities: [], additionals: [] };
}

/** A and AAAA records of the NS targets that lie in the same zone. */
function nsAddresses(zones: ZoneSet, zone: Zone, ns: readonly Answer[]): Answer[] {
  const out: Answer[] = [];
  for (const rr of ns) {
    if (rr.type !== 'NS') continue;
    const target = canon(rr.data);
    if (findZone(zones, target) !== zone) continue;
    const node = zone.names.get(target);
    if (!node) continue;
    out.push(...(node.get(T.A) ?? []), ...(node.get(T.AAAA) ?? []));
  }
  return out;
}

/** CNAME chains are followed at most this far (RFC 1034 §3.6.2 asks servers to stop loops). */
const MAX_CHAIN = 8;

/**
 * Answers one question of opcode QUERY from the zones. Zone transfers (AXFR, IXFR) are handled by
 * the server before this is called.
 *
 * RFC 1034 §4.3.2 step 3.b: at a name holding a CNAME, a question for another type gets the CNAME
 * and the answer goes on at its target, while the target lies in one of our zones (never
 * recursion); the rcode and the negative answer's SOA are those of the last name (RFC 6604 §2).
 */
export function resolve(zones: ZoneSet, q: Question): Resolution {
  if (q.class !== QCLASS.IN && q.class !== QCLASS.ANY) return refused();
  let name = canon(q.name);
  let zone = findZone(zones, name);
  if (!zone) return refused();
  // A QCLASS ANY answer is not authoritative: the server cannot vouch for every class (RFC 6895
  // §3.2; NSD and BIND clear AA the same way).
  const aa = q.class !== QCLASS.ANY;
  const first = zone.origin;
  const chain: Answer[] = [];
  // The first owner is spelled as the question spelled it (0x20); targets as the zone has them.
  let spelling = q.name.endsWith('.') ? q.name.slice(0, -1) : q.name;
  for (let hop = 0; ; hop++) {
    const node = zone.names.get(name);
    const base = { aa, zone: first, additionals: [] as Answer[] };
    if (!node) {
      // RFC 2308 §2.1: name error, SOA in the authority section.
      return {
        ...base,
        rcode: RCODE.NXDOMAIN,
        answers: chain,
        authorities: [negativeSoa(zone)],
      };
    }
    const cname = node.get(T.CNAME);
    if (cname?.[0] && q.type !== T.CNAME && q.type !== QTYPE.ANY) {
      chain.push(...spelled(cname, spelling));
      const target = canon(cname[0].data as string);
      const next = findZone(zones, target);
      // Out of our zones, or a chain too long: the answer ends with the CNAME (RFC 1034 §4.3.2:
      // the resolver goes on from there).
      if (!next || hop + 1 >= MAX_CHAIN || chain.some((rr) => canon(rr.name) === target)) {
        return { ...base, rcode: RCODE.NOERROR, answers: chain, authorities: [] };
      }
      name = target;
      spelling = target;
      zone = next;
      continue;
    }
    let set: readonly Answer[] | undefined;
    if (q.type === QTYPE.ANY) {
      // RFC 8482 §4.2: answer ANY with one RRset rather than all (the lowest type present).
      const types = [...node.keys()].filter((t) => (node.get(t)?.length ?? 0) > 0);
      const lowest = types.length ? Math.min(...types) : undefined;
      set = lowest === undefined ? undefined : node.get(lowest);
    } else {
      set = node.get(q.type);
    }
    if (!set || set.length === 0) {
      // RFC 2308 §2.2: no data (also for empty non-terminals, RFC 8020), SOA in authority.
      return {
        ...base,
        rcode: RCODE.NOERROR,
        answers: chain,
        authorities: [negativeSoa(zone)],
      };
    }
    const answers = [...chain, ...spelled(set, spelling)];
    // Minimal responses (as NSD's `minimal-responses: yes`): the only additional data is the
    // addresses of NS targets inside the answering zone (RFC 1035 §3.3.11, §4.3.2 step 6).
    const additionals = set[0]?.type === 'NS' ? nsAddresses(zones, zone, set) : [];
    return { ...base, rcode: RCODE.NOERROR, answers, authorities: [], additionals };
  }
}
