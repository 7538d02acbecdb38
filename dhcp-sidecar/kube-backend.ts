/**
 * The Kubernetes backend: Nodes, NetworkAllocations, Networks and BootEnvs read through informers
 * into in-memory indexes (MAC -> node, node -> address on the served network, reserved
 * addresses), and the acknowledgement the provisioning flow waits on: when the sidecar can serve
 * a Node's desired boot environment it records, once per change, which one and for which Node
 * generation on the Node's status (status.bootEnv.{applied, generation, by}).
 *
 * The informer wrapper is a small copy of operator/runtime/informer.ts: sidecars import nothing
 * from operator/.
 */
import {
  CustomObjectsApi,
  PatchStrategy,
  makeInformer,
  setHeaderOptions,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type ObjectCache,
} from '@kubernetes/client-node';
import {
  GROUP,
  PLURALS,
  VERSION,
  type BootEnv,
  type BootEnvSpec,
  type CrowbarKind,
  type Network,
  type NetworkAllocation,
  type Node,
} from '../generated/crowbar.ts';
import type { Backend, NetworkConfig, Reservation } from './backend.ts';
import { DEFAULT_BOOTENVS } from './backend.ts';
import { inPrefix6, normalizeIp6 } from './codec6.ts';
import { inSubnet } from './subnet.ts';
import type { Logger, Metrics } from './metrics.ts';

/** The field manager of the sidecar's status writes. */
export const FIELD_MANAGER = 'crowbar-dhcp-sidecar';

class Cache<T extends KubernetesObject> {
  private readonly inner: Informer<T> & ObjectCache<T>;
  private synced = false;
  private stopped = false;
  private restarts = 0;
  private timer: NodeJS.Timeout | undefined;
  private waiters: (() => void)[] = [];
  private errors = 0;
  private readonly log: Logger;

  constructor(kc: KubeConfig, kind: CrowbarKind, log: Logger) {
    const api = kc.makeApiClient(CustomObjectsApi);
    this.log = log.child({ informer: kind });
    this.inner = makeInformer<T>(
      kc,
      `/apis/${GROUP}/${VERSION}/${PLURALS[kind]}`,
      () =>
        api.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: PLURALS[kind],
        }) as never,
    );
    this.inner.on('error', (err: unknown) => {
      this.synced = false;
      this.errors++;
      if (this.stopped) return;
      const delay = Math.min(30_000, 200 * 2 ** Math.min(this.restarts++, 8));
      this.log.warn({ err, delayMs: delay }, 'watch failed; restarting');
      this.timer = setTimeout(() => {
        this.start().catch((e: unknown) => {
          this.log.error({ err: e }, 'informer restart failed');
        });
      }, delay);
    });
  }

  on(fn: (o: T, deleted: boolean) => void): void {
    this.inner.on('add', (o) => {
      fn(o, false);
    });
    this.inner.on('update', (o) => {
      fn(o, false);
    });
    this.inner.on('delete', (o) => {
      fn(o, true);
    });
  }

  async start(): Promise<void> {
    this.stopped = false;
    const before = this.errors;
    await this.inner.start();
    if (this.errors !== before) return;
    this.synced = true;
    this.restarts = 0;
    for (const w of this.waiters.splice(0)) w();
  }

  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  get(name: string): Readonly<T> | undefined {
    return this.inner.get(name);
  }

  list(): readonly Readonly<T>[] {
    return this.inner.list();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.inner.stop();
  }
}

export interface KubeBackendOptions {
  kc: KubeConfig;
  /** The Network this sidecar serves (its name). */
  network: string;
  /** Who acknowledges (status.bootEnv.by), e.g. the pod name. */
  id: string;
  discoveryBootEnv: string;
  dns: readonly string[];
  ntp: readonly string[];
  domain?: string;
  search: readonly string[];
  routes: readonly { destination: string; router: string }[];
  mtu?: number;
  /** DHCPv6 option 23 (IPv6 DNS servers). */
  dns6?: readonly string[];
  /** Write status.bootEnv acknowledgements (off for read-only replicas). */
  acknowledge: boolean;
  log: Logger;
  metrics: Metrics;
}

function nameOf(o: KubernetesObject): string {
  return o.metadata?.name ?? '';
}

export class KubeBackend implements Backend {
  private readonly o: KubeBackendOptions;
  private readonly nodes: Cache<Node>;
  private readonly allocs: Cache<NetworkAllocation>;
  private readonly networks: Cache<Network>;
  private readonly bootEnvs: Cache<BootEnv>;
  private readonly api: CustomObjectsApi;
  private readonly macToNode = new Map<string, string>();
  private readonly nodeMacs = new Map<string, readonly string[]>();
  /** Allocation name -> (network, node, address) for every IPv4 allocation. */
  private readonly allocByName = new Map<
    string,
    { network: string; node: string; address: string; family: 'ipv4' | 'ipv6' }
  >();
  /** Network -> node -> IPv4 address (the served network and those reached through relays). */
  private readonly nodeAddrs = new Map<string, Map<string, string>>();
  /** The same for IPv6 allocations (DHCPv6 IA_NA addresses). */
  private readonly nodeAddrs6 = new Map<string, Map<string, string>>();
  private readonly reserved = new Map<string, string>();
  /** Every Network with an IPv4 subnet, as DHCP serves it. */
  private readonly nets = new Map<string, NetworkConfig>();
  private net: NetworkConfig | undefined;
  private readonly queue = new Set<string>();
  private readonly written = new Map<string, string>();
  private draining = false;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(o: KubeBackendOptions) {
    this.o = o;
    this.api = o.kc.makeApiClient(CustomObjectsApi);
    this.nodes = new Cache<Node>(o.kc, 'Node', o.log);
    this.allocs = new Cache<NetworkAllocation>(o.kc, 'NetworkAllocation', o.log);
    this.networks = new Cache<Network>(o.kc, 'Network', o.log);
    this.bootEnvs = new Cache<BootEnv>(o.kc, 'BootEnv', o.log);
    this.nodes.on((n, deleted) => {
      this.indexNode(n, deleted);
    });
    this.allocs.on((a, deleted) => {
      this.indexAlloc(a, deleted);
    });
    this.networks.on((n, deleted) => {
      const c = deleted ? undefined : this.toConfig(n);
      if (c) this.nets.set(nameOf(n), c);
      else this.nets.delete(nameOf(n));
      if (nameOf(n) === o.network) this.net = c;
    });
    this.bootEnvs.on((b) => {
      // A boot environment appearing or changing may let nodes waiting on it be acknowledged.
      for (const n of this.nodes.list())
        if ((n.spec.bootEnv ?? o.discoveryBootEnv) === nameOf(b)) this.enqueue(nameOf(n));
    });
  }

  async start(): Promise<void> {
    const all = [this.networks, this.bootEnvs, this.allocs, this.nodes];
    await Promise.all(all.map((c) => c.start()));
    await Promise.all(all.map((c) => c.waitForSync()));
    for (const n of this.nodes.list()) this.enqueue(nameOf(n));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await Promise.all([this.nodes, this.allocs, this.networks, this.bootEnvs].map((c) => c.stop()));
  }

  /** Creates the boot environments that exist from the start (local, sledgehammer) if absent. */
  async ensureDefaultBootEnvs(): Promise<void> {
    for (const [name, spec] of Object.entries(DEFAULT_BOOTENVS)) {
      try {
        await this.api.createClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: PLURALS.BootEnv,
          body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'BootEnv', metadata: { name }, spec },
          fieldManager: FIELD_MANAGER,
        });
        this.o.log.info({ bootEnv: name }, 'default boot environment created');
      } catch (e) {
        if ((e as { code?: number }).code !== 409) throw e;
      }
    }
  }

  ready(): boolean {
    return (
      this.nodes.hasSynced &&
      this.allocs.hasSynced &&
      this.networks.hasSynced &&
      this.bootEnvs.hasSynced
    );
  }

  reservation(mac: string, network = this.o.network): Reservation | undefined {
    const name = this.macToNode.get(mac);
    if (name === undefined) return undefined;
    const n = this.nodes.get(name);
    if (!n) return undefined;
    const address = this.nodeAddrs.get(network)?.get(name);
    const address6 = this.nodeAddrs6.get(network)?.get(name);
    return {
      node: name,
      mac,
      ...(address !== undefined ? { address } : {}),
      ...(address6 !== undefined ? { address6 } : {}),
      bootEnv: n.spec.bootEnv ?? this.o.discoveryBootEnv,
      generation: n.metadata.generation ?? 0,
      ...(n.spec.kernelVariants === 'off' ? { kernelVariants: false } : {}),
    };
  }

  isReserved(address: string): boolean {
    return this.reserved.has(address);
  }

  network(): NetworkConfig | undefined {
    return this.net;
  }

  networkFor(address: string): NetworkConfig | undefined {
    if (this.net && inSubnet(address, this.net.subnet)) return this.net;
    for (const n of this.nets.values())
      if (n.mode !== 'off' && inSubnet(address, n.subnet)) return n;
    return undefined;
  }

  networkFor6(address: string): NetworkConfig | undefined {
    const v6 = (n: NetworkConfig | undefined) =>
      n?.v6prefix !== undefined && n.mode !== 'off' && inPrefix6(address, n.v6prefix);
    if (v6(this.net)) return this.net;
    for (const n of this.nets.values()) if (v6(n)) return n;
    return undefined;
  }

  bootEnv(name: string): BootEnvSpec | undefined {
    return this.bootEnvs.get(name)?.spec;
  }

  private toConfig(n: Network): NetworkConfig | undefined {
    const s = n.spec;
    if (!s.subnet) return undefined;
    const dhcp = s.ranges?.find((r) => r.name === 'dhcp');
    const v6prefix = n.status?.v6prefix ?? (s.v6prefix !== 'auto' ? s.v6prefix : undefined);
    return {
      name: nameOf(n),
      subnet: s.subnet,
      ...(s.router ? { router: s.router.address } : {}),
      ...(dhcp ? { pool: { first: dhcp.first, last: dhcp.last } } : {}),
      dns: this.o.dns,
      ntp: this.o.ntp,
      ...(this.o.domain ? { domain: this.o.domain } : {}),
      search: this.o.search,
      routes: this.o.routes,
      ...(this.o.mtu !== undefined ? { mtu: this.o.mtu } : {}),
      ...(s.dhcp?.mode !== undefined ? { mode: s.dhcp.mode } : {}),
      ...(v6prefix !== undefined ? { v6prefix } : {}),
      ...(this.o.dns6 && this.o.dns6.length > 0 ? { dns6: this.o.dns6 } : {}),
    };
  }

  private indexNode(n: Node, deleted: boolean): void {
    const name = nameOf(n);
    for (const m of this.nodeMacs.get(name) ?? [])
      if (this.macToNode.get(m) === name) this.macToNode.delete(m);
    this.nodeMacs.delete(name);
    if (deleted) {
      this.written.delete(name);
      return;
    }
    const macs = (n.spec.macs ?? []).map((m) => m.toLowerCase());
    this.nodeMacs.set(name, macs);
    for (const m of macs) this.macToNode.set(m, name);
    this.enqueue(name);
  }

  private indexAlloc(a: NetworkAllocation, deleted: boolean): void {
    const name = nameOf(a);
    const prev = this.allocByName.get(name);
    if (prev) {
      this.allocByName.delete(name);
      const byNode = (prev.family === 'ipv4' ? this.nodeAddrs : this.nodeAddrs6).get(prev.network);
      if (byNode?.get(prev.node) === prev.address) byNode.delete(prev.node);
      if (this.reserved.get(prev.address) === prev.node) this.reserved.delete(prev.address);
    }
    if (deleted) return;
    const family = a.spec.family;
    const raw = a.spec.address.split('/')[0] ?? '';
    const address = family === 'ipv6' ? (normalizeIp6(raw) ?? raw) : raw;
    const network = a.spec.network;
    this.allocByName.set(name, { network, node: a.spec.node, address, family });
    const all = family === 'ipv4' ? this.nodeAddrs : this.nodeAddrs6;
    let byNode = all.get(network);
    if (!byNode) all.set(network, (byNode = new Map<string, string>()));
    byNode.set(a.spec.node, address);
    if (family === 'ipv4') this.reserved.set(address, a.spec.node);
    if (network === this.o.network) this.enqueue(a.spec.node);
  }

  // ---- acknowledgement ------------------------------------------------------------------------

  private enqueue(name: string): void {
    if (!this.o.acknowledge || this.stopped) return;
    this.queue.add(name);
    if (!this.draining) void this.drain();
  }

  /** The (bootEnv, generation) this sidecar should record for a node, or undefined for none. */
  private wanted(name: string): { applied: string; generation: number } | undefined {
    const n = this.nodes.get(name);
    if (!n || (n.spec.macs ?? []).length === 0) return undefined;
    // One sidecar per provisioning network: the one holding the node's reservation answers for
    // it; nodes without any reservation here are served (and acknowledged) from the pool.
    const here =
      this.nodeAddrs.get(this.o.network)?.has(name) === true ||
      this.nodeAddrs6.get(this.o.network)?.has(name) === true;
    if (!here && !this.net?.pool) return undefined;
    const applied = n.spec.bootEnv ?? this.o.discoveryBootEnv;
    if (!this.bootEnvs.get(applied)) return undefined; // cannot serve it: no acknowledgement
    return { applied, generation: n.metadata.generation ?? 0 };
  }

  private async drain(): Promise<void> {
    this.draining = true;
    let failed = false;
    try {
      while (this.queue.size > 0 && !this.stopped) {
        const name = this.queue.values().next().value as string;
        this.queue.delete(name);
        const w = this.wanted(name);
        if (!w) continue;
        const key = `${w.applied}@${w.generation}`;
        const st = this.nodes.get(name)?.status?.bootEnv;
        if (st?.applied === w.applied && st.generation === w.generation) {
          this.written.set(name, key);
          continue;
        }
        if (this.written.get(name) === key) continue;
        try {
          await this.api.patchClusterCustomObjectStatus(
            {
              group: GROUP,
              version: VERSION,
              plural: PLURALS.Node,
              name,
              body: {
                apiVersion: `${GROUP}/${VERSION}`,
                kind: 'Node',
                metadata: { name },
                status: { bootEnv: { ...w, by: this.o.id } },
              },
              fieldManager: FIELD_MANAGER,
              force: true,
            },
            setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
          );
          this.written.set(name, key);
          this.o.metrics.acks.inc({ outcome: 'written' });
          this.o.log.info({ node: name, ...w }, 'boot environment acknowledged');
        } catch (e) {
          if ((e as { code?: number }).code === 404) continue;
          this.o.metrics.acks.inc({ outcome: 'error' });
          this.o.log.warn({ err: e, node: name }, 'acknowledgement failed; retrying');
          this.queue.add(name);
          failed = true;
          break;
        }
      }
    } finally {
      this.draining = false;
    }
    if (failed && !this.stopped) {
      this.retryTimer = setTimeout(() => {
        void this.drain();
      }, 1000);
    }
  }
}
