/**
 * How the annealer's status writes reach the API server.
 *
 * - Per noderole, in order: each write reads the resourceVersion its predecessor produced, so a
 *   noderole's writes never race each other, while writes to different noderoles (and the next
 *   pass) do not wait for each other.
 * - Through one gate: at most `concurrency` requests in flight, higher priority first, so that a
 *   burst (a commit of thousands) does not stand between a parent's end and its child's start.
 * - Replaceable: a plain state write that has not been sent yet is dropped when a newer decision
 *   for the same noderole is made (the newer one was decided with it applied).
 */
import PQueue from 'p-queue';

/** Run starts and ends, and anything a person waits on. */
export const URGENT = 1;
/** State changes decided by settling (commit, ripple). */
export const ROUTINE = 0;

/** How one request waits its turn at the gate. */
export interface Slot {
  readonly priority: number;
  /** Aborted when a newer decision replaces the write before it is sent. */
  readonly signal?: AbortSignal | undefined;
  /** Called as the request is sent (from then on it cannot be replaced). */
  readonly onSend?: (() => void) | undefined;
}

export class WriteQueue {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly gate: PQueue;
  private readonly unsent = new Map<string, AbortController>();
  private readonly onError: (err: unknown, key: string) => void;

  constructor(concurrency: number, onError: (err: unknown, key: string) => void) {
    this.gate = new PQueue({ concurrency });
    this.onError = onError;
  }

  /** Runs `task` after every earlier task of `key`; a failure goes to onError, not to the next. */
  after(key: string, task: () => Promise<unknown>): void {
    const prev = this.chains.get(key) ?? Promise.resolve();
    const next = prev
      .then(task)
      .catch((err: unknown) => {
        this.onError(err, key);
      })
      .finally(() => {
        if (this.chains.get(key) === next) this.chains.delete(key);
      });
    this.chains.set(key, next);
  }

  /**
   * Sends one request through the gate. A request whose slot is aborted before it is sent is
   * never sent; its promise rejects with the abort reason.
   */
  send<T>(request: () => Promise<T>, slot: Slot): Promise<T> {
    return this.gate.add(
      () => {
        slot.onSend?.();
        return request();
      },
      { priority: slot.priority, ...(slot.signal ? { signal: slot.signal } : {}) },
    );
  }

  /**
   * A routine slot for a write of `key` that a later {@link replace} of the same key drops until
   * it is sent. Pass it to {@link done} when the write is over.
   */
  replaceable(key: string): Slot {
    this.replace(key);
    const abort = new AbortController();
    this.unsent.set(key, abort);
    return {
      priority: ROUTINE,
      signal: abort.signal,
      onSend: () => {
        if (this.unsent.get(key) === abort) this.unsent.delete(key);
      },
    };
  }

  /** Drops the unsent replaceable write of `key`, if there is one. */
  replace(key: string): void {
    const abort = this.unsent.get(key);
    if (!abort) return;
    this.unsent.delete(key);
    abort.abort(new Error(`replaced by a newer decision for ${key}`));
  }

  /** Forgets a replaceable slot whose write ended without being sent or replaced. */
  done(key: string, slot: Slot): void {
    const abort = this.unsent.get(key);
    if (abort && abort.signal === slot.signal) this.unsent.delete(key);
  }

  /** Requests waiting at the gate and in flight (for tests and metrics). */
  get size(): { waiting: number; inFlight: number } {
    return { waiting: this.gate.size, inFlight: this.gate.pending };
  }
}
