/**
 * Wires informers, controllers, leader election and the health server. Only the Lease holder
 * reconciles; standbys keep their caches warm so a takeover is immediate.
 */
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { GROUP, PLURALS, VERSION, type CrowbarKind } from '../generated/crowbar.ts';
import { CrowbarClient, type Obj } from './kube/client.ts';
import { thinNodeRole } from './kube/thin.ts';
import { deadline, LIST_REQUEST_MS } from './kube/timeout.ts';
import type { OperatorConfig } from './config.ts';
import type { Logger } from './log.ts';
import { makeMetrics, type Metrics } from './metrics.ts';
import { startHealthServer } from './runtime/health.ts';
import { kubeMetricsAuth, startSecureMetricsServer } from './runtime/secure-metrics.ts';
import { CachedInformer } from './runtime/informer.ts';
import { LeaderElector } from './runtime/leader.ts';
import { runWorkers, WorkQueue, type ReconcileResult } from './runtime/workqueue.ts';

export const KINDS: readonly CrowbarKind[] = [
  'Node',
  'Role',
  'NodeRole',
  'Network',
  'NetworkAllocation',
  'Deployment',
];

export type Caches = { [K in CrowbarKind]: CachedInformer<Obj<K>> };

/** A controller: which events map to which of its keys, and how to reconcile a key. */
export interface Controller {
  name: string;
  workers?: number;
  /**
   * Coalescing window: events enqueue keys this many ms later, so a burst of changes (e.g. the
   * annealer moving hundreds of noderoles) costs one reconcile per key, not one per event.
   */
  coalesceMs?: number;
  /** A coalescing window per watched kind, in place of coalesceMs for that kind's events. */
  coalesceMsByKind?: Partial<Record<CrowbarKind, number>>;
  /** For each kind it watches: the keys an event on `obj` should enqueue. */
  watches: Partial<{ [K in CrowbarKind]: (obj: Readonly<Obj<K>>) => string[] }>;
  reconcile(key: string): Promise<ReconcileResult | undefined>;
  /** Called once when this instance starts leading, before workers start. */
  onStartedLeading?(): Promise<void>;
}

export interface ManagerDeps {
  kc: KubeConfig;
  config: OperatorConfig;
  log: Logger;
}

export class Manager {
  readonly client: CrowbarClient;
  readonly caches: Caches;
  readonly metrics: Metrics;
  private readonly controllers: { c: Controller; q: WorkQueue }[] = [];
  private elector: LeaderElector | undefined;
  private health: Server | undefined;
  private workerRuns: Promise<void>[] = [];
  private leading = false;
  readonly deps: ManagerDeps;
  healthPort = 0;
  private secureMetrics: HttpsServer | undefined;
  /** The HTTPS metrics port with --metrics-addr; 0 otherwise. */
  metricsPort = 0;

  constructor(deps: ManagerDeps) {
    this.deps = deps;
    this.client = new CrowbarClient(deps.kc);
    this.metrics = makeMetrics();
    const api = deps.kc.makeApiClient(CustomObjectsApi);
    const mk = <K extends CrowbarKind>(kind: K, transform?: (o: Obj<K>) => void) =>
      new CachedInformer<Obj<K>>(
        deps.kc,
        kind,
        `/apis/${GROUP}/${VERSION}/${PLURALS[kind]}`,
        () =>
          api.listClusterCustomObject(
            { group: GROUP, version: VERSION, plural: PLURALS[kind] },
            deadline(LIST_REQUEST_MS),
          ) as never,
        deps.log,
        transform,
      );
    this.caches = {
      Node: mk('Node'),
      Role: mk('Role'),
      NodeRole: mk('NodeRole', thinNodeRole),
      Network: mk('Network'),
      NetworkAllocation: mk('NetworkAllocation'),
      Deployment: mk('Deployment'),
      // Not in KINDS, so never started: BootEnvs are read by the DHCP/boot sidecar.
      BootEnv: mk('BootEnv'),
    };
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * Whether this process may act as the leader at this moment: it leads and (with leader
   * election) its lease was renewed within the renew deadline. A run or SSH session starts only
   * when this holds, so a leader cut off from the API server starts nothing once a standby could
   * have taken over.
   */
  holdsLease(): boolean {
    if (!this.leading) return false;
    return this.elector ? this.elector.holdsLease() : true;
  }

  get synced(): boolean {
    return KINDS.every((k) => this.caches[k].hasSynced);
  }

  add(c: Controller): void {
    const q = new WorkQueue<string>(
      { baseMs: 50, maxMs: 120_000 },
      {
        onDepth: (d) => {
          this.metrics.queueDepth.set({ controller: c.name }, d);
        },
        onRetry: () => {
          this.metrics.queueRetries.inc({ controller: c.name });
        },
      },
    );
    this.controllers.push({ c, q });
    for (const kind of KINDS) {
      const keysOf = c.watches[kind] as ((o: unknown) => string[]) | undefined;
      if (!keysOf) continue;
      const after = c.coalesceMsByKind?.[kind] ?? c.coalesceMs ?? 0;
      const enqueue = (o: unknown): void => {
        for (const k of keysOf(o)) q.addAfter(k, after);
      };
      this.caches[kind].on({ onAdd: enqueue, onUpdate: enqueue, onDelete: enqueue });
    }
  }

  /** Enqueues a key on a controller by name (for cross-controller nudges). */
  enqueue(controller: string, key: string, afterMs = 0): void {
    const entry = this.controllers.find((x) => x.c.name === controller);
    if (!entry) throw new Error(`no controller named ${controller}`);
    entry.q.addAfter(key, afterMs);
  }

  async start(): Promise<void> {
    const { config, log } = this.deps;
    const h = await startHealthServer(
      config.healthHost,
      config.healthPort,
      config.metrics === undefined ? this.metrics.registry : undefined,
      () =>
        KINDS.map((k) => ({ name: `informer ${k} synced`, ok: () => this.caches[k].hasSynced })),
    );
    this.health = h.server;
    this.healthPort = h.port;
    log.info({ port: h.port }, 'health server listening');
    if (config.metrics !== undefined) {
      const m = await startSecureMetricsServer({
        ...config.metrics,
        registry: this.metrics.registry,
        auth: kubeMetricsAuth(this.deps.kc),
        log,
      });
      this.secureMetrics = m.server;
      this.metricsPort = m.port;
      log.info(
        { port: m.port },
        'metrics server listening (TLS, TokenReview + SubjectAccessReview)',
      );
    }
    await Promise.all(
      KINDS.map(async (k) => {
        await this.caches[k].start();
        await this.caches[k].waitForSync();
        this.metrics.cacheSynced.set({ kind: k }, 1);
      }),
    );
    log.info('caches synced');
    if (!config.leaderElection) {
      await this.startLeading();
      return;
    }
    this.elector = new LeaderElector(
      this.deps.kc,
      {
        namespace: config.leaseNamespace,
        name: config.leaseName,
        identity: config.identity,
        leaseDurationMs: config.leaseDurationMs,
        renewDeadlineMs: config.renewDeadlineMs,
        retryPeriodMs: config.retryPeriodMs,
      },
      {
        onStartedLeading: () => {
          void this.startLeading().catch((err: unknown) => {
            log.fatal({ err }, 'could not start leading');
            process.exit(1);
          });
        },
        onStoppedLeading: () => {
          // Like controller-runtime: a deposed leader exits so no stale worker keeps writing.
          if (!this.leading) return;
          log.error('lost the leader lease; exiting so a fresh instance takes over');
          process.exit(1);
        },
      },
      log,
    );
    this.elector.start();
  }

  private async startLeading(): Promise<void> {
    this.leading = true;
    this.metrics.leader.set(1);
    // The leader's one-time set-up (the system deployment, built-in Roles and BootEnvs) is
    // idempotent: a transient refusal (429, 500, a cut connection) is retried with backoff, bounded,
    // instead of exiting the new leader on its first failed request.
    for (const { c } of this.controllers) {
      for (let attempt = 0; c.onStartedLeading; attempt++) {
        try {
          await c.onStartedLeading();
          break;
        } catch (err) {
          if (attempt >= 7) throw err;
          this.deps.log.warn(
            { err, controller: c.name, attempt },
            'leader set-up failed; retrying',
          );
          await new Promise((r) => setTimeout(r, Math.min(4000, 250 * 2 ** attempt)));
        }
      }
    }
    for (const { c, q } of this.controllers) {
      // Level-triggered: start from everything in the cache, not only from new events.
      for (const kind of KINDS) {
        const keysOf = c.watches[kind] as ((o: unknown) => string[]) | undefined;
        if (keysOf) for (const o of this.caches[kind].list()) for (const k of keysOf(o)) q.add(k);
      }
      const log = this.deps.log.child({ controller: c.name });
      this.workerRuns.push(
        runWorkers(q, c.workers ?? this.deps.config.workers, (key) => c.reconcile(key), {
          onResult: (key, outcome, ms, err) => {
            this.metrics.reconciles.inc({ controller: c.name, outcome });
            this.metrics.reconcileSeconds.observe({ controller: c.name }, ms / 1000);
            if (outcome === 'error') log.warn({ key, err }, 'reconcile failed; will retry');
            if (outcome === 'terminal') log.error({ key, err }, 'reconcile failed; not retrying');
          },
        }),
      );
    }
  }

  async stop(): Promise<void> {
    for (const { q } of this.controllers) q.shutDown();
    await Promise.all(this.workerRuns);
    await this.elector?.stop();
    await Promise.all(KINDS.map((k) => this.caches[k].stop()));
    const metrics = this.secureMetrics;
    if (metrics)
      await new Promise<void>((r) =>
        metrics.close(() => {
          r();
        }),
      );
    const health = this.health;
    if (health)
      await new Promise<void>((r) =>
        health.close(() => {
          r();
        }),
      );
    this.metrics.leader.set(0);
  }
}
