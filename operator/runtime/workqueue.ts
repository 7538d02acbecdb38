/**
 * A controller workqueue with controller-runtime's guarantees: keys are de-duplicated, a key is
 * never handed to two workers at once (a key added while in flight is re-queued when it is done),
 * per-key exponential backoff on failure, delayed adds, and terminal errors that are recorded
 * but not retried.
 */

/** An error that retrying cannot fix (bad input); the reconciler records it and moves on. */
export class TerminalError extends Error {
  override name = 'TerminalError';
}

export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export interface QueueHooks {
  onDepth?(depth: number): void;
  onRetry?(): void;
}

export class WorkQueue<K = string> {
  private readonly queue: K[] = [];
  private readonly dirty = new Set<K>();
  private readonly processing = new Set<K>();
  private readonly failures = new Map<K, number>();
  private readonly timers = new Map<K, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: ((k: K | undefined) => void)[] = [];
  private shuttingDown = false;
  private readonly backoff: Backoff;
  private readonly hooks: QueueHooks;

  constructor(backoff: Backoff = { baseMs: 5, maxMs: 60_000 }, hooks: QueueHooks = {}) {
    this.backoff = backoff;
    this.hooks = hooks;
  }

  /** Queues `key` unless it is already waiting; a key in flight is queued again once done. */
  add(key: K): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const w = this.waiters.shift();
    if (w) {
      this.dirty.delete(key);
      this.processing.add(key);
      w(key);
    } else {
      this.queue.push(key);
      this.hooks.onDepth?.(this.queue.length);
    }
  }

  /** Queues `key` after `ms`; an earlier pending delayed add for the key wins. */
  addAfter(key: K, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const cur = this.timers.get(key);
    if (cur && cur.at <= at) return;
    if (cur) clearTimeout(cur.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Queues `key` after its exponential backoff delay (base * 2^failures, capped). */
  addRateLimited(key: K): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = Math.min(this.backoff.maxMs, this.backoff.baseMs * 2 ** n);
    this.hooks.onRetry?.();
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears the key's failure count (after a success or a terminal error). */
  forget(key: K): void {
    this.failures.delete(key);
  }

  failuresOf(key: K): number {
    return this.failures.get(key) ?? 0;
  }

  /** Next key to work on, or undefined once the queue is shut down. Call done(key) afterwards. */
  get(): Promise<K | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      this.hooks.onDepth?.(this.queue.length);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: K): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  get length(): number {
    return this.queue.length;
  }

  get inFlight(): number {
    return this.processing.size;
  }

  shutDown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}

export interface ReconcileResult {
  /** Reconcile again after this many milliseconds (level-triggered follow-up). */
  requeueAfterMs?: number;
}

export type Reconciler<K> = (key: K) => Promise<ReconcileResult | undefined>;

export interface WorkerHooks<K> {
  onResult?(key: K, outcome: 'success' | 'error' | 'terminal', ms: number, err?: unknown): void;
}

/**
 * Runs `workers` loops that pull keys and reconcile them. Returns when the queue shuts down and
 * every worker has finished its current key.
 */
export async function runWorkers<K>(
  queue: WorkQueue<K>,
  workers: number,
  reconcile: Reconciler<K>,
  hooks: WorkerHooks<K> = {},
): Promise<void> {
  const loop = async (): Promise<void> => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      const t0 = performance.now();
      try {
        const res = await reconcile(key);
        queue.forget(key);
        if (res?.requeueAfterMs !== undefined) queue.addAfter(key, res.requeueAfterMs);
        hooks.onResult?.(key, 'success', performance.now() - t0);
      } catch (err) {
        if (err instanceof TerminalError) {
          queue.forget(key);
          hooks.onResult?.(key, 'terminal', performance.now() - t0, err);
        } else {
          queue.addRateLimited(key);
          hooks.onResult?.(key, 'error', performance.now() - t0, err);
        }
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, loop));
}
