/**
 * What the DHCP and HTTP servers need to know, behind one interface with two implementations:
 * the Kubernetes informer backend (kube-backend.ts) and a static backend for tests and the
 * benchmark (this file). Lookups are synchronous reads of in-memory indexes.
 */
import type { BootEnvSpec } from '../generated/crowbar.ts';
import { inPrefix6 } from './codec6.ts';
import { inSubnet } from './subnet.ts';

/** A known MAC: its node, its address on the served network and its desired boot environment. */
export interface Reservation {
  node: string;
  mac: string;
  /** IPv4 address without prefix length on the served network (none: the pool serves it). */
  address?: string;
  /** IPv6 address without prefix length on the network (its ipv6 NetworkAllocation), if any. */
  address6?: string;
  bootEnv: string;
  /** The Node's metadata.generation the boot environment was read from. */
  generation: number;
  /** False when the Node's spec.kernelVariants is `off` (absent: variants allowed). */
  kernelVariants?: boolean;
}

/** The served network as DHCP needs it (from a Network object plus sidecar flags). */
export interface NetworkConfig {
  name: string;
  /** e.g. 192.168.124.0/24 */
  subnet: string;
  router?: string;
  /** The discovery pool (the Network's `dhcp` range); no pool means reservations only. */
  pool?: { first: string; last: string };
  dns: readonly string[];
  ntp: readonly string[];
  domain?: string;
  search: readonly string[];
  routes: readonly { destination: string; router: string }[];
  mtu?: number;
  /** The network's IPv6 /64 (status.v6prefix, else spec.v6prefix unless auto), for DHCPv6. */
  v6prefix?: string;
  /** DHCPv6 option 23: IPv6 DNS servers. */
  dns6?: readonly string[];
  /**
   * The Network's spec.dhcp.mode: `full` (default) serves addresses and boot information,
   * `proxy` only boot information to PXE clients (another server hands out addresses), `off`
   * nothing.
   */
  mode?: 'full' | 'proxy' | 'off';
}

export interface Backend {
  /** True once the backend has a complete view (informers synced). */
  ready(): boolean;
  /**
   * The node that holds `mac`, with its address on `network` (default: the served network, the
   * one on this sidecar's own link).
   */
  reservation(mac: string, network?: string): Reservation | undefined;
  /**
   * The Network whose subnet holds `address` (a relay's giaddr or RFC 3527 link selection), for
   * clients behind DHCP relays; undefined when no Network has it.
   */
  networkFor(address: string): NetworkConfig | undefined;
  /**
   * The Network whose v6prefix holds `address` (a DHCPv6 relay's link-address), or undefined.
   */
  networkFor6(address: string): NetworkConfig | undefined;
  /** True when some node holds `address` (so the pool must not hand it out). */
  isReserved(address: string): boolean;
  network(): NetworkConfig | undefined;
  bootEnv(name: string): BootEnvSpec | undefined;
}

export interface StaticData {
  network: NetworkConfig;
  /** Networks reached through DHCP relays (giaddr selects one). */
  relayed?: readonly NetworkConfig[];
  /**
   * `address` and `address6` are on `network`; `addresses` and `addresses6` map relayed networks'
   * names to addresses.
   */
  reservations: readonly StaticReservation[];
  bootEnvs: Readonly<Record<string, BootEnvSpec>>;
}

export type StaticReservation = Reservation & {
  addresses?: Readonly<Record<string, string>>;
  addresses6?: Readonly<Record<string, string>>;
};

/** A fixed backend from plain data (tests, the benchmark, air-gapped use from a JSON file). */
export class StaticBackend implements Backend {
  private readonly byMac = new Map<string, StaticReservation>();
  private readonly addrs = new Set<string>();
  private readonly data: StaticData;

  constructor(data: StaticData) {
    this.data = data;
    for (const r of data.reservations) {
      this.byMac.set(r.mac.toLowerCase(), r);
      if (r.address !== undefined) this.addrs.add(r.address);
      for (const a of Object.values(r.addresses ?? {})) this.addrs.add(a);
    }
  }

  ready(): boolean {
    return true;
  }

  reservation(mac: string, network?: string): Reservation | undefined {
    const r = this.byMac.get(mac);
    if (r === undefined || network === undefined || network === this.data.network.name) return r;
    const address = r.addresses?.[network];
    const address6 = r.addresses6?.[network];
    return {
      node: r.node,
      mac: r.mac,
      bootEnv: r.bootEnv,
      generation: r.generation,
      ...(r.kernelVariants !== undefined ? { kernelVariants: r.kernelVariants } : {}),
      ...(address !== undefined ? { address } : {}),
      ...(address6 !== undefined ? { address6 } : {}),
    };
  }

  networkFor6(address: string): NetworkConfig | undefined {
    for (const n of [this.data.network, ...(this.data.relayed ?? [])])
      if (n.mode !== 'off' && n.v6prefix !== undefined && inPrefix6(address, n.v6prefix)) return n;
    return undefined;
  }

  networkFor(address: string): NetworkConfig | undefined {
    for (const n of [this.data.network, ...(this.data.relayed ?? [])])
      if (n.mode !== 'off' && inSubnet(address, n.subnet)) return n;
    return undefined;
  }

  isReserved(address: string): boolean {
    return this.addrs.has(address);
  }

  network(): NetworkConfig {
    return this.data.network;
  }

  bootEnv(name: string): BootEnvSpec | undefined {
    return this.data.bootEnvs[name];
  }
}

/** The two boot environments that exist from the start. */
export const DEFAULT_BOOTENVS: Readonly<Record<string, BootEnvSpec>> = {
  local: { local: true, description: 'Boot from local disk: no network boot options.' },
  sledgehammer: {
    local: false,
    description: 'The discovery image: registers the machine and reports its hardware.',
    kernel: 'sledgehammer/vmlinuz',
    initrds: ['sledgehammer/initrd.gz'],
    // Debian's cloud kernel for virtio NICs: it unpacks itself several times faster (ADR 0032).
    variants: [{ name: 'virtio', nicVendors: ['1af4'], kernel: 'sledgehammer/vmlinuz-virt' }],
    kernelArgs:
      'initrd={{initrd}} console=ttyS0,115200 quiet edd=off crowbar.mac={{mac}} crowbar.variant={{variant}} crowbar.server={{server}} crowbar.http={{http}}',
  },
};
