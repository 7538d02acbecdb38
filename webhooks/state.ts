/**
 * Where the webhook reads the cluster from: one informer per kind (a cache that may lag the API
 * server by a watch event or two) and, when the cache's answer matters, a fresh list.
 *
 * Why both: the cache answers most requests without a round trip, but a cache that has not yet
 * seen a write made a moment ago (a role created just before the noderole that binds it, a child
 * deleted just before its parent) would refuse a request that is fine. So a refusal computed
 * from the cache is checked again against fresh lists, which the API server serves from etcd
 * with a quorum read. Allowing from the cache can miss a write made concurrently with the
 * request; no validating webhook can close that race, and the operator's binder applies the same
 * bind-time rules again when it binds.
 */
import {
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
} from '@kubernetes/client-node';
import {
  GROUP,
  PLURALS,
  VERSION,
  type BootEnv,
  type Deployment,
  type Network,
  type NetworkAllocation,
  type Node,
  type NodeRole,
  type Role,
} from '../generated/crowbar.ts';
import type { Logger } from '../operator/log.ts';
import { CachedInformer } from '../operator/runtime/informer.ts';
import type { ClusterSnapshot } from './decide.ts';

/** The kinds the decisions read. */
export const WATCHED = [
  'Role',
  'NodeRole',
  'Node',
  'Deployment',
  'Network',
  'NetworkAllocation',
  'BootEnv',
] as const;
export type WatchedKind = (typeof WATCHED)[number];

/** A source of cluster snapshots for {@link decide}. */
export interface SnapshotSource {
  /** The cached view, or undefined while the caches have not synced. */
  cached(): ClusterSnapshot | undefined;
  /**
   * A snapshot with `kinds` (all when omitted) listed from the API server now and the others from
   * the cache (listed too while it has not synced). Concurrent callers share lists per kind (see
   * {@link Coalescer}).
   */
  fresh(kinds?: readonly WatchedKind[]): Promise<ClusterSnapshot>;
  /** Per kind: has its cache listed and is it watching? */
  synced(): Readonly<Record<WatchedKind, boolean>>;
}

/**
 * Shares one run of `fn` among callers without ever handing a caller a result that started
 * before it asked: a caller arriving while a run is in flight waits for the next run, which
 * starts when the current one ends and serves everyone who arrived meanwhile.
 */
export class Coalescer<T> {
  private readonly fn: () => Promise<T>;
  private current: Promise<T> | undefined;
  private next: Promise<T> | undefined;

  constructor(fn: () => Promise<T>) {
    this.fn = fn;
  }

  run(): Promise<T> {
    if (!this.current) {
      this.current = this.start();
      return this.current;
    }
    if (!this.next) {
      const after = this.current.then(
        () => undefined,
        () => undefined,
      );
      this.next = after.then(() => {
        this.next = undefined;
        this.current = this.start();
        return this.current;
      });
    }
    return this.next;
  }

  private start(): Promise<T> {
    const p = this.fn().finally(() => {
      if (this.current === p) this.current = undefined;
    });
    return p;
  }
}

type Objects = {
  Role: Role;
  NodeRole: NodeRole;
  Node: Node;
  Deployment: Deployment;
  Network: Network;
  NetworkAllocation: NetworkAllocation;
  BootEnv: BootEnv;
};

/** Informer caches over /apis/crowbar.dev/v1alpha1/<plural>, plus fresh lists on demand. */
export class InformerSource implements SnapshotSource {
  private readonly informers: { [K in WatchedKind]: CachedInformer<Objects[K]> };
  private readonly api: CustomObjectsApi;
  private readonly coalescers: { [K in WatchedKind]: Coalescer<readonly Objects[K][]> };
  private readonly onList: ((kind: WatchedKind) => void) | undefined;

  /** `onList` is told of every fresh list (the webhook counts them per kind). */
  constructor(kc: KubeConfig, log: Logger, onList?: (kind: WatchedKind) => void) {
    this.api = kc.makeApiClient(CustomObjectsApi);
    this.onList = onList;
    const mk = <K extends WatchedKind>(kind: K): CachedInformer<Objects[K]> =>
      new CachedInformer<Objects[K]>(
        kc,
        kind,
        `/apis/${GROUP}/${VERSION}/${PLURALS[kind]}`,
        () => this.list(kind),
        log,
      );
    this.informers = {
      Role: mk('Role'),
      NodeRole: mk('NodeRole'),
      Node: mk('Node'),
      Deployment: mk('Deployment'),
      Network: mk('Network'),
      NetworkAllocation: mk('NetworkAllocation'),
      BootEnv: mk('BootEnv'),
    };
    const co = <K extends WatchedKind>(kind: K): Coalescer<readonly Objects[K][]> =>
      new Coalescer(async () => {
        this.onList?.(kind);
        return (await this.list(kind)).items;
      });
    this.coalescers = {
      Role: co('Role'),
      NodeRole: co('NodeRole'),
      Node: co('Node'),
      Deployment: co('Deployment'),
      Network: co('Network'),
      NetworkAllocation: co('NetworkAllocation'),
      BootEnv: co('BootEnv'),
    };
  }

  private async list<K extends WatchedKind>(kind: K): Promise<KubernetesListObject<Objects[K]>> {
    return (await this.api.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURALS[kind],
    })) as KubernetesListObject<Objects[K]>;
  }

  /** Starts every informer; resolves once all have listed (they keep retrying until then). */
  async start(): Promise<void> {
    await Promise.all(WATCHED.map((k) => this.informers[k].start()));
    await Promise.all(WATCHED.map((k) => this.informers[k].waitForSync()));
  }

  async stop(): Promise<void> {
    await Promise.all(WATCHED.map((k) => this.informers[k].stop()));
  }

  synced(): Record<WatchedKind, boolean> {
    return {
      Role: this.informers.Role.hasSynced,
      NodeRole: this.informers.NodeRole.hasSynced,
      Node: this.informers.Node.hasSynced,
      Deployment: this.informers.Deployment.hasSynced,
      Network: this.informers.Network.hasSynced,
      NetworkAllocation: this.informers.NetworkAllocation.hasSynced,
      BootEnv: this.informers.BootEnv.hasSynced,
    };
  }

  cached(): ClusterSnapshot | undefined {
    if (!WATCHED.every((k) => this.informers[k].hasSynced)) return undefined;
    // Cached objects are read-only; decide() never mutates what it is given.
    return {
      roles: this.informers.Role.list(),
      noderoles: this.informers.NodeRole.list(),
      nodes: this.informers.Node.list(),
      deployments: this.informers.Deployment.list(),
      networks: this.informers.Network.list(),
      networkallocations: this.informers.NetworkAllocation.list(),
      bootenvs: this.informers.BootEnv.list(),
    };
  }

  async fresh(kinds: readonly WatchedKind[] = WATCHED): Promise<ClusterSnapshot> {
    const read = <K extends WatchedKind>(kind: K): Promise<readonly Objects[K][]> =>
      kinds.includes(kind) || !this.informers[kind].hasSynced
        ? this.coalescers[kind].run()
        : Promise.resolve(this.informers[kind].list() as readonly Objects[K][]);
    const [roles, noderoles, nodes, deployments, networks, networkallocations, bootenvs] =
      await Promise.all([
        read('Role'),
        read('NodeRole'),
        read('Node'),
        read('Deployment'),
        read('Network'),
        read('NetworkAllocation'),
        read('BootEnv'),
      ]);
    return { roles, noderoles, nodes, deployments, networks, networkallocations, bootenvs };
  }
}

/** A fixed snapshot (tests): cached and fresh are the same unless `fresh` is given. */
export function staticSource(
  cached: ClusterSnapshot | undefined,
  fresh: (kinds?: readonly WatchedKind[]) => Promise<ClusterSnapshot> = () =>
    cached ? Promise.resolve(cached) : Promise.reject(new Error('no snapshot')),
): SnapshotSource {
  const synced = cached !== undefined;
  return {
    cached: () => cached,
    fresh,
    synced: () =>
      Object.fromEntries(WATCHED.map((k) => [k, synced])) as Record<WatchedKind, boolean>,
  };
}
