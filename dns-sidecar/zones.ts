/**
 * The zone model: a pure function from the cluster's Networks and NetworkAllocations (plus the
 * sidecar's configuration) to the zones it is authoritative for. Forward zones are configured
 * (the cluster domain); reverse zones follow every Network's IPv4 subnet and IPv6 /64.
 *
 * Owner names (CROWBAR-MODEL.md §9, 2015: only admin and unmanaged allocations name the node
 * itself): an allocation on an admin or unmanaged network gives the node's FQDN an A or AAAA; one
 * on any other network gives `<host>.<network>.<domain>` (n1.bmc.lab.crowbar.dev). Every
 * allocation gets a PTR to the name it is published under, so forward and reverse agree.
 *
 * Aliases (a Node's spec.aliases) are CNAMEs to the node's FQDN in the forward zone they fall in.
 * RFC 1034 §3.6.2 / RFC 2181 §10.1: a CNAME owner holds no other data, so an alias that names an
 * owner with records (a node's own name, a name server, the apex) is left out, and of two nodes
 * claiming one alias the first by name keeps it (the admission webhook refuses both cases; this
 * covers what slips past it, e.g. two creates at once).
 */
import { createHash } from 'node:crypto';
import type { SoaAnswer, StringAnswer } from 'dns-packet';
import {
  addressValue,
  canon,
  canonicalAddress,
  isAtOrBelow,
  parent,
  ptrOwner,
  reverseZoneV6,
  reverseZonesV4,
  stripPrefix,
  type ReverseZone,
} from './names.ts';
import { recordLine } from './zonefile.ts';

/** RR type codes the model uses (RFC 1035 §3.2.2, RFC 3596). */
export const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, AAAA: 28 } as const;

/** The sidecar's own part of the zones: the domain, its name servers, SOA timers, TTLs. */
export interface DnsConfig {
  /** Forward zones (the cluster domain), canonical. */
  forwardZones: string[];
  /** The name servers listed as NS in every zone; addresses become A/AAAA when in a forward zone. */
  nameservers: { name: string; addresses: string[] }[];
  /** The SOA RNAME (the mailbox with '@' written as '.'). */
  hostmaster: string;
  /** TTL of every record, the SOA included. */
  ttl: number;
  /** SOA timers (CROWBAR-MODEL.md §9 defaults: 1 d, 2 h, 4 w, negative cache 300 s). */
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

export const DEFAULT_TIMERS = {
  ttl: 300,
  refresh: 86_400,
  retry: 7_200,
  expire: 2_419_200,
  minimum: 300,
};

export interface NetworkIn {
  name: string;
  category: string;
  /** IPv4 subnet, e.g. 192.168.124.0/24. */
  subnet?: string | undefined;
  /** The resolved IPv6 /64 (status.v6prefix, or spec.v6prefix when it is a prefix). */
  v6prefix?: string | undefined;
}

export interface AllocationIn {
  network: string;
  node: string;
  /** The address, with or without the network's prefix length. */
  address: string;
  family: 'ipv4' | 'ipv6';
}

/** A Node with DNS aliases (spec.aliases): each is served as a CNAME to the node's name. */
export interface NodeIn {
  name: string;
  aliases: string[];
}

/** The records the sidecar serves. */
export type Rec = StringAnswer | SoaAnswer;

/** Record sets of one owner name by type; an empty map is an empty non-terminal. */
export type Node = Map<number, Rec[]>;

/** One zone as served: its records by owner, its SOA (with the serial) and a content digest. */
export interface Zone {
  origin: string;
  soa: SoaAnswer;
  names: Map<string, Node>;
  /** sha256 over the records other than the SOA serial; equal digests mean equal content. */
  digest: string;
  /** Number of records, the SOA included. */
  records: number;
}

/** A zone before its serial is chosen. */
export type ZoneContent = Omit<Zone, 'soa'> & { soaWithoutSerial: SoaAnswer };

/** The name an allocation is published under (see the file comment). */
export function forwardName(alloc: AllocationIn, net: NetworkIn): string {
  const fqdn = canon(alloc.node);
  if (net.category === 'admin' || net.category === 'unmanaged') return fqdn;
  const dot = fqdn.indexOf('.');
  return dot < 0
    ? `${fqdn}.${net.name}`
    : `${fqdn.slice(0, dot)}.${net.name}.${fqdn.slice(dot + 1)}`;
}

function isPrefix(v: string | undefined): v is string {
  return v !== undefined && v.includes('/');
}

/** The reverse zones of a network: its IPv4 subnet's and its IPv6 /64's. */
export function networkReverseZones(net: NetworkIn): ReverseZone[] {
  const zones: ReverseZone[] = [];
  try {
    if (isPrefix(net.subnet)) zones.push(...reverseZonesV4(net.subnet));
  } catch {
    // A subnet the API server accepted but ip-address cannot read: no reverse zone for it.
  }
  try {
    if (isPrefix(net.v6prefix)) {
      const z = reverseZoneV6(net.v6prefix);
      if (z) zones.push(z);
    }
  } catch {
    // As above.
  }
  return zones;
}

class Builder {
  readonly zones = new Map<string, { names: Map<string, Node>; reverse?: ReverseZone }>();
  private readonly forwardOrigins: string[];
  private readonly reverse: ReverseZone[] = [];
  private readonly ttl: number;

  constructor(cfg: DnsConfig, networks: readonly NetworkIn[]) {
    this.ttl = cfg.ttl;
    this.forwardOrigins = [...new Set(cfg.forwardZones.map(canon))];
    for (const o of this.forwardOrigins) this.zones.set(o, { names: new Map() });
    for (const net of networks) {
      for (const z of networkReverseZones(net)) {
        if (this.zones.has(z.origin)) continue;
        this.zones.set(z.origin, { names: new Map(), reverse: z });
        this.reverse.push(z);
      }
    }
  }

  /** The longest zone origin `name` falls in, among all zones. */
  zoneOf(name: string): string | undefined {
    for (let n: string | undefined = name; n !== undefined; n = parent(n)) {
      if (this.zones.has(n)) return n;
    }
    return undefined;
  }

  add(owner: string, rr: Rec, typeCode: number): void {
    const origin = this.zoneOf(owner);
    if (origin === undefined) return;
    const names = this.zones.get(origin)?.names;
    if (!names) return;
    let node = names.get(owner);
    if (!node) names.set(owner, (node = new Map<number, Rec[]>()));
    const set = node.get(typeCode) ?? [];
    const line = recordLine(rr);
    if (set.some((r) => recordLine(r) === line)) return;
    set.push(rr);
    node.set(typeCode, set);
  }

  address(owner: string, address: string, family: 4 | 6): void {
    const data = canonicalAddress(address, family);
    if (family === 4) this.add(owner, { name: owner, type: 'A', ttl: this.ttl, data }, T.A);
    else this.add(owner, { name: owner, type: 'AAAA', ttl: this.ttl, data }, T.AAAA);
  }

  forwardZones(): string[] {
    return this.forwardOrigins;
  }

  /** A CNAME at `owner` to `target`, when `owner` is in a forward zone and holds nothing yet. */
  alias(owner: string, target: string, forward: ReadonlySet<string>): void {
    const origin = this.zoneOf(owner);
    if (origin === undefined || !forward.has(origin) || owner === origin || owner === target)
      return;
    const names = this.zones.get(origin)?.names;
    if (!names) return;
    const node = names.get(owner);
    if (node && [...node.values()].some((set) => set.length > 0)) return;
    const rr: StringAnswer = { name: owner, type: 'CNAME', ttl: this.ttl, data: target };
    if (node) node.set(T.CNAME, [rr]);
    else names.set(owner, new Map([[T.CNAME, [rr]]]));
  }

  /** The smallest reverse zone covering the address. */
  reverseZoneFor(address: string, family: 4 | 6): ReverseZone | undefined {
    const v = addressValue(address, family);
    let best: ReverseZone | undefined;
    for (const z of this.reverse) {
      if (z.family !== family || v < z.first || v > z.last) continue;
      if (!best || z.last - z.first < best.last - best.first) best = z;
    }
    return best;
  }

  ptr(address: string, family: 4 | 6, target: string): void {
    const z = this.reverseZoneFor(address, family);
    if (!z) return;
    const owner = ptrOwner(address, z);
    if (!isAtOrBelow(owner, z.origin)) return;
    const names = this.zones.get(z.origin)?.names;
    if (!names) return;
    let node = names.get(owner);
    if (!node) names.set(owner, (node = new Map<number, Rec[]>()));
    const set = node.get(T.PTR) ?? [];
    if (!set.some((r) => r.type === 'PTR' && r.data === target)) {
      set.push({ name: owner, type: 'PTR', ttl: this.ttl, data: target });
    }
    node.set(T.PTR, set);
  }
}

/**
 * Builds every zone's content (without serials) from the configuration and the cluster's
 * Networks and NetworkAllocations. Pure: the same input gives the same zones and digests.
 */
export function buildZones(
  cfg: DnsConfig,
  networks: readonly NetworkIn[],
  allocations: readonly AllocationIn[],
  nodes: readonly NodeIn[] = [],
): ZoneContent[] {
  const b = new Builder(cfg, networks);
  const nets = new Map(networks.map((n) => [n.name, n]));
  const nsNames = cfg.nameservers.map((ns) => canon(ns.name));

  for (const ns of cfg.nameservers) {
    for (const a of ns.addresses) {
      b.address(canon(ns.name), a, a.includes(':') ? 6 : 4);
    }
  }
  for (const alloc of allocations) {
    const net = nets.get(alloc.network);
    if (!net) continue; // not served until its Network is known
    const family = alloc.family === 'ipv6' ? 6 : 4;
    const address = stripPrefix(alloc.address);
    let name: string;
    try {
      name = forwardName(alloc, net);
      canonicalAddress(address, family);
    } catch {
      continue; // an address ip-address cannot read is left out rather than failing the zone
    }
    b.address(name, address, family);
    b.ptr(address, family, name);
  }
  const forward = new Set(b.forwardZones());
  for (const n of [...nodes].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))) {
    const target = canon(n.name);
    for (const alias of n.aliases) b.alias(canon(alias), target, forward);
  }

  const out: ZoneContent[] = [];
  for (const [origin, { names }] of b.zones) {
    let apex = names.get(origin);
    if (!apex) names.set(origin, (apex = new Map<number, Rec[]>()));
    apex.set(
      T.NS,
      nsNames.map((data) => ({ name: origin, type: 'NS' as const, ttl: cfg.ttl, data })),
    );
    // Empty non-terminals: every ancestor of an owner up to the apex exists (RFC 8020).
    for (const owner of [...names.keys()]) {
      for (let p = parent(owner); p !== undefined && isAtOrBelow(p, origin); p = parent(p)) {
        if (names.has(p)) break;
        names.set(p, new Map<number, Rec[]>());
        if (p === origin) break;
      }
    }
    const soaWithoutSerial: SoaAnswer = {
      name: origin,
      type: 'SOA',
      ttl: cfg.ttl,
      data: {
        mname: nsNames[0] ?? origin,
        rname: canon(cfg.hostmaster),
        serial: 0,
        refresh: cfg.refresh,
        retry: cfg.retry,
        expire: cfg.expire,
        minimum: cfg.minimum,
      },
    };
    const lines: string[] = [recordLine(soaWithoutSerial)];
    let records = 1;
    for (const [owner, node] of names) {
      for (const set of node.values()) {
        for (const rr of set) {
          lines.push(`${owner} ${recordLine(rr)}`);
          records++;
        }
      }
    }
    lines.sort();
    const digest = createHash('sha256').update(lines.join('\n')).digest('hex');
    out.push({ origin, names, digest, records, soaWithoutSerial });
  }
  return out;
}

/** The served zone: the content with its SOA (serial filled in) placed at the apex. */
export function withSerial(content: ZoneContent, serial: number): Zone {
  const soa: SoaAnswer = {
    ...content.soaWithoutSerial,
    data: { ...content.soaWithoutSerial.data, serial },
  };
  content.names.get(content.origin)?.set(T.SOA, [soa]);
  return {
    origin: content.origin,
    names: content.names,
    digest: content.digest,
    records: content.records,
    soa,
  };
}
