/**
 * The Kubernetes backend: one client-node informer (ListWatch) per kind, Networks,
 * NetworkAllocations and Nodes (for their DNS aliases), read-only caches, restart with backoff after watch errors, and a ready flag
 * that is false until both caches have listed and while a watch is down. The pattern follows
 * operator/runtime/informer.ts (not imported: the sidecar is its own deployable).
 */
import {
  CustomObjectsApi,
  makeInformer,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  type ObjectCache,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import {
  GROUP,
  PLURALS,
  VERSION,
  type Network,
  type NetworkAllocation,
  type Node,
} from '../../generated/crowbar.ts';
import { allocationIn, networkIn, nodeIn, type Backend, type Snapshot } from './backend.ts';

class Watched<T extends KubernetesObject> {
  private readonly inner: Informer<T> & ObjectCache<T>;
  private restarts = 0;
  private errors = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  synced = false;
  private readonly onChange: () => void;

  constructor(kc: KubeConfig, plural: string, log: Logger, onChange: () => void) {
    this.onChange = onChange;
    const api = kc.makeApiClient(CustomObjectsApi);
    const path = `/apis/${GROUP}/${VERSION}/${plural}`;
    this.inner = makeInformer<T>(
      kc,
      path,
      () => api.listClusterCustomObject({ group: GROUP, version: VERSION, plural }) as never,
    );
    for (const ev of ['add', 'update', 'delete'] as const) this.inner.on(ev, onChange);
    this.inner.on('error', (err: unknown) => {
      this.synced = false;
      this.errors++;
      if (this.stopped) return;
      const delay = Math.min(30_000, 200 * 2 ** Math.min(this.restarts++, 8));
      log.warn({ err, kind: plural, delayMs: delay }, 'watch failed; restarting');
      this.timer = setTimeout(() => {
        this.start().catch((e: unknown) => {
          log.error({ err: e, kind: plural }, 'informer restart failed');
        });
      }, delay);
    });
  }

  /** Lists and watches; client-node reports a failed list through the error event. */
  async start(): Promise<void> {
    this.stopped = false;
    const before = this.errors;
    await this.inner.start();
    if (this.errors !== before) return;
    this.synced = true;
    this.restarts = 0;
    // A (re)list of an empty collection fires no event: rebuild anyway, so readiness follows.
    this.onChange();
  }

  list(): readonly T[] {
    return this.inner.list();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.inner.stop();
  }
}

export class KubeBackend implements Backend {
  private readonly kc: KubeConfig;
  private readonly log: Logger;
  private networks: Watched<Network> | undefined;
  private allocations: Watched<NetworkAllocation> | undefined;
  private nodes: Watched<Node> | undefined;

  constructor(kc: KubeConfig, log: Logger) {
    this.kc = kc;
    this.log = log.child({ backend: 'kube' });
  }

  async start(onChange: () => void): Promise<void> {
    this.networks = new Watched<Network>(this.kc, PLURALS.Network, this.log, onChange);
    this.allocations = new Watched<NetworkAllocation>(
      this.kc,
      PLURALS.NetworkAllocation,
      this.log,
      onChange,
    );
    this.nodes = new Watched<Node>(this.kc, PLURALS.Node, this.log, onChange);
    await Promise.all([this.networks.start(), this.allocations.start(), this.nodes.start()]);
  }

  ready(): boolean {
    return (
      (this.networks?.synced ?? false) &&
      (this.allocations?.synced ?? false) &&
      (this.nodes?.synced ?? false)
    );
  }

  snapshot(): Snapshot {
    return {
      networks: (this.networks?.list() ?? []).map(networkIn),
      allocations: (this.allocations?.list() ?? []).flatMap((a) => allocationIn(a) ?? []),
      nodes: (this.nodes?.list() ?? []).flatMap((n) => nodeIn(n) ?? []),
    };
  }

  async stop(): Promise<void> {
    await Promise.all([this.networks?.stop(), this.allocations?.stop(), this.nodes?.stop()]);
  }
}
