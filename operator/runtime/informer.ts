/**
 * One informer per kind over client-node's ListWatch: a read-only cache, handlers that only
 * enqueue keys, restarts with backoff after watch errors, and a synced flag for /readyz.
 */
import {
  ListWatch,
  Watch,
  type KubernetesObject,
  type ListPromise,
  type KubeConfig,
  type Informer,
  type ObjectCache,
} from '@kubernetes/client-node';
import type { Logger } from '../log.ts';

/** The server ends each watch after this many seconds, jittered up to twice it (as client-go). */
export const WATCH_TIMEOUT_S = 300;

/**
 * client-node's Watch with client-go's bounds: the API server ends every watch after 5 to 10
 * minutes (`timeoutSeconds`, jittered so that replicas do not reconnect in step) and sends
 * bookmarks, so a reconnect resumes from a recent resourceVersion instead of relisting after a
 * 410. A connection that dies silently is caught by Watch's own inactivity timer (30 s without a
 * byte aborts the request; ListWatch then reconnects from the last resourceVersion).
 */
class BoundedWatch extends Watch {
  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const timeoutSeconds = WATCH_TIMEOUT_S + Math.floor(Math.random() * WATCH_TIMEOUT_S);
    return super.watch(
      path,
      { ...queryParams, timeoutSeconds, allowWatchBookmarks: true },
      callback,
      done,
    );
  }
}

export interface Handlers<T> {
  onAdd?(obj: T): void;
  onUpdate?(obj: T): void;
  onDelete?(obj: T): void;
}

export class CachedInformer<T extends KubernetesObject> {
  private readonly inner: Informer<T> & ObjectCache<T>;
  private synced = false;
  private stopped = false;
  private restarts = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private lastEvent = Date.now();
  private errors = 0;
  private syncWaiters: (() => void)[] = [];
  readonly kind: string;
  private readonly log: Logger;

  /**
   * @param transform Thins each object before it is cached and handed to handlers (as client-go's
   *   SetTransform): drop what no reader of the cache needs, so it costs no memory.
   */
  constructor(
    kc: KubeConfig,
    kind: string,
    path: string,
    list: ListPromise<T>,
    log: Logger,
    transform?: (o: T) => void,
  ) {
    this.kind = kind;
    this.log = log.child({ informer: kind });
    this.inner = new ListWatch<T>(path, new BoundedWatch(kc), list, false);
    this.inner.on('error', (err: unknown) => {
      this.synced = false;
      this.errors++;
      if (this.stopped) return;
      const delay = Math.min(30_000, 200 * 2 ** Math.min(this.restarts++, 8));
      this.log.warn({ err, delayMs: delay }, 'watch failed; restarting');
      this.restartTimer = setTimeout(() => {
        this.start().catch((e: unknown) => {
          this.log.error({ err: e }, 'informer restart failed');
        });
      }, delay);
    });
    this.inner.on('connect', () => {
      this.lastEvent = Date.now();
    });
    // Registered first, so it runs before any other handler: managedFields (a few hundred bytes
    // per field manager, on every object) are never read here, and dropping them from the cached
    // object is the informer's own business (client-go's informers offer the same transform).
    const strip = (o: T): void => {
      delete o.metadata?.managedFields;
      transform?.(o);
    };
    this.inner.on('add', strip);
    this.inner.on('update', strip);
  }

  on(h: Handlers<T>): void {
    const touch = () => (this.lastEvent = Date.now());
    if (h.onAdd)
      this.inner.on('add', (o) => {
        touch();
        h.onAdd?.(o);
      });
    if (h.onUpdate)
      this.inner.on('update', (o) => {
        touch();
        h.onUpdate?.(o);
      });
    if (h.onDelete)
      this.inner.on('delete', (o) => {
        touch();
        h.onDelete?.(o);
      });
  }

  /**
   * Lists (filling the cache and firing add handlers) and starts watching. client-node reports a
   * failed list through the error callback, not by rejecting, so success is judged by that.
   */
  async start(): Promise<void> {
    this.stopped = false;
    const errorsBefore = this.errors;
    await this.inner.start();
    if (this.errors !== errorsBefore) return; // the error handler schedules the next attempt
    this.synced = true;
    this.restarts = 0;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  /** Resolves once the cache has listed successfully (retrying with backoff until then). */
  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((r) => this.syncWaiters.push(r));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.synced = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.inner.stop();
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  get msSinceLastEvent(): number {
    return Date.now() - this.lastEvent;
  }

  /** Cached object (read-only: never mutate what the cache returns). */
  get(name: string): Readonly<T> | undefined {
    return this.inner.get(name);
  }

  list(): readonly Readonly<T>[] {
    return this.inner.list();
  }
}
