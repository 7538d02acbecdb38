/** Shared fixtures for the sidecar's unit tests: a small cluster and helpers to query it. */
import dnsPacket, { type Packet } from 'dns-packet';
import { decodeMessage, type Message } from './codec.ts';
import { handleMessage, type Transport } from './handler.ts';
import type { ZoneSet } from './resolver.ts';
import { serialFor } from './serial.ts';
import {
  DEFAULT_TIMERS,
  buildZones,
  withSerial,
  type AllocationIn,
  type DnsConfig,
  type NetworkIn,
  type NodeIn,
  type Zone,
} from './zones.ts';

export const CONFIG: DnsConfig = {
  forwardZones: ['lab.crowbar.dev'],
  nameservers: [{ name: 'ns1.lab.crowbar.dev', addresses: ['192.168.124.2', 'fd00:1:2:3::2'] }],
  hostmaster: 'hostmaster.lab.crowbar.dev',
  ...DEFAULT_TIMERS,
};

export const NETWORKS: NetworkIn[] = [
  { name: 'admin', category: 'admin', subnet: '192.168.124.0/24', v6prefix: 'fd00:1:2:3::/64' },
  { name: 'bmc', category: 'bmc', subnet: '10.9.8.64/26' },
  { name: 'storage', category: 'general', subnet: '172.16.0.0/22' },
];

export const ALLOCATIONS: AllocationIn[] = [
  { network: 'admin', node: 'node1.lab.crowbar.dev', address: '192.168.124.81/24', family: 'ipv4' },
  { network: 'admin', node: 'node1.lab.crowbar.dev', address: 'fd00:1:2:3::51/64', family: 'ipv6' },
  {
    network: 'admin',
    node: 'node2.rack1.lab.crowbar.dev',
    address: '192.168.124.82/24',
    family: 'ipv4',
  },
  { network: 'bmc', node: 'node1.lab.crowbar.dev', address: '10.9.8.70/26', family: 'ipv4' },
  { network: 'storage', node: 'node1.lab.crowbar.dev', address: '172.16.2.9/22', family: 'ipv4' },
];

export function zoneSet(
  networks: NetworkIn[] = NETWORKS,
  allocations: AllocationIn[] = ALLOCATIONS,
  serial = 1000,
  nodes: NodeIn[] = [],
): Map<string, Zone> {
  const zones = new Map<string, Zone>();
  for (const c of buildZones(CONFIG, networks, allocations, nodes)) {
    zones.set(c.origin, withSerial(c, serialFor(undefined, c.digest, 0) + serial));
  }
  return zones;
}

export interface Asked {
  raw: Buffer[];
  msg: Message;
  all: Message[];
}

/** Sends `packet` through the handler as `transport` from `remote` and decodes the reply. */
export function ask(
  zones: ZoneSet,
  packet: Packet,
  transport: Transport = 'udp',
  remote = '127.0.0.1',
  allowed: (r: string) => boolean = () => false,
): Asked | undefined {
  const buf = dnsPacket.encode({ type: 'query', id: 4242, ...packet });
  const h = handleMessage(buf, { zones, transport, remote, transferAllowed: allowed });
  if (h.responses.length === 0) return undefined;
  const all = h.responses.map((b) => decodeMessage(b));
  const msg = all[0];
  return msg && { raw: h.responses, msg, all };
}

export function q(name: string, type: string, extra: Partial<Packet> = {}): Packet {
  return { questions: [{ name, type: type as 'A' }], ...extra };
}

export function edns(size = 1232, flags = 0): Packet['additionals'] {
  return [
    {
      name: '.',
      type: 'OPT',
      udpPayloadSize: size,
      extendedRcode: 0,
      ednsVersion: 0,
      flags,
      flag_do: false,
      options: [],
    },
  ];
}
