/**
 * How the annealer's status writes reach the API server.
 *
 * - Per noderole, in order: each write reads the resourceVersion its predecessor produced, so a
 *   noderole's writes never race each other, while writes to different noderoles (and the next
 *   pass) do not wait for each other.
 * - Through one gate: at most `concurrency` requests in flight, higher priority first, so that a
 *   burst (a commit of thousands) does not stand between a parent's end and its child's start.
 *   Routine requests never take the last `reserved` slots: a run's start or end finds a free one
 *   at once instead of waiting for a routine write's round trip, and meets fewer of them at the
 *   API server (which answers each write later the more it is given at once).
 * - Replaceable: a plain state write that has not been sent yet is dropped when a newer decision
 *   for the same noderole is made (the newer one was decided with it applied).
 * - Small while waiting: a commit queues a write per noderole at once, so a waiting write holds
 *   its key and decision, not a request body (built as it is sent) nor an AbortController.
 */

/** Run starts and ends, and anything a person waits on. */
export const URGENT = 1;
/** State changes decided by settling (commit, ripple). */
export const ROUTINE = 0;

/**
 * Marks a replaceable write: set when a newer decision replaced it before it was sent. A plain
 * object, not an AbortController: a commit of 10,000 noderoles queues 10,000 writes at once, and
 * an AbortController with its AbortSignal (an EventTarget) cost ~1.2 KB of heap each (ADR 0021).
 */
export interface Ticket {
  aborted: boolean;
  reason?: Error;
  /** Set by the gate while the write waits there: drops it at once. */
  cancel?: (() => void) | undefined;
}

/** How one request waits its turn at the gate. */
export interface Slot {
  readonly priority: number;
  /** Aborted when a newer decision replaces the write before it is sent. */
  readonly ticket?: Ticket | undefined;
  /** Called as the request is sent (from then on it cannot be replaced). */
  readonly onSend?: (() => void) | undefined;
}

/** A first-in first-out list that drops its consumed head in chunks (Array.shift is O(n)). */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  push(x: T): void {
    this.items.push(x);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
}

/** A request waiting at the gate; `start` is cleared when it is dropped unsent. */
interface Waiting {
  start: (() => void) | undefined;
}

export class WriteQueue {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly unsent = new Map<string, Ticket>();
  private readonly onError: (err: unknown, key: string) => void;
  private readonly concurrency: number;
  private readonly reserved: number;
  /** Waiting requests per priority, and the priorities highest first. */
  private readonly buckets = new Map<number, Fifo<Waiting>>();
  private priorities: number[] = [];
  private waiting = 0;
  private inFlight = 0;

  /**
   * @param concurrency requests in flight at most
   * @param reserved of those, slots only urgent requests may take
   */
  constructor(concurrency: number, onError: (err: unknown, key: string) => void, reserved = 0) {
    this.concurrency = concurrency;
    this.reserved = Math.min(Math.max(0, reserved), concurrency - 1);
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
   * Sends one request through the gate. A request whose ticket is aborted before it is sent is
   * never sent; its promise rejects with the abort reason.
   */
  send<T>(request: () => Promise<T>, slot: Slot): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const ticket = slot.ticket;
      if (ticket?.aborted) {
        reject(ticket.reason ?? new Error('replaced by a newer decision'));
        return;
      }
      const w: Waiting = {
        start: () => {
          if (ticket) ticket.cancel = undefined;
          this.inFlight++;
          let sent: Promise<T>;
          try {
            slot.onSend?.();
            sent = request();
          } catch (e) {
            sent = Promise.reject(e instanceof Error ? e : new Error(String(e)));
          }
          sent.then(resolve, reject).finally(() => {
            this.inFlight--;
            this.pump();
          });
        },
      };
      if (ticket)
        ticket.cancel = () => {
          if (!w.start) return;
          w.start = undefined;
          this.waiting--;
          ticket.cancel = undefined;
          reject(ticket.reason ?? new Error('replaced by a newer decision'));
        };
      let bucket = this.buckets.get(slot.priority);
      if (!bucket) {
        this.buckets.set(slot.priority, (bucket = new Fifo()));
        this.priorities = [...this.buckets.keys()].sort((a, b) => b - a);
      }
      bucket.push(w);
      this.waiting++;
      this.pump();
    });
  }

  /** Starts waiting requests, highest priority first, while fewer than `concurrency` are out. */
  private pump(): void {
    while (this.inFlight < this.concurrency && this.waiting > 0) {
      const next = this.next();
      if (!next?.start) return;
      const start = next.start;
      next.start = undefined;
      this.waiting--;
      start();
    }
  }

  /** The next request that may be sent now, highest priority first (see `reserved`). */
  private next(): Waiting | undefined {
    for (const p of this.priorities) {
      const limit = p >= URGENT ? this.concurrency : this.concurrency - this.reserved;
      if (this.inFlight >= limit) continue;
      const bucket = this.buckets.get(p);
      // Dropped requests stay in their list until reached (their start is cleared).
      for (let w = bucket?.shift(); w; w = bucket?.shift()) if (w.start) return w;
    }
    return undefined;
  }

  /**
   * A routine slot for a write of `key` that a later {@link replace} of the same key drops until
   * it is sent. Pass it to {@link done} when the write is over.
   */
  replaceable(key: string): Slot {
    this.replace(key);
    const ticket: Ticket = { aborted: false };
    this.unsent.set(key, ticket);
    return {
      priority: ROUTINE,
      ticket,
      onSend: () => {
        if (this.unsent.get(key) === ticket) this.unsent.delete(key);
      },
    };
  }

  /** Drops the unsent replaceable write of `key`, if there is one. */
  replace(key: string): void {
    const ticket = this.unsent.get(key);
    if (!ticket) return;
    this.unsent.delete(key);
    ticket.aborted = true;
    ticket.reason = new Error(`replaced by a newer decision for ${key}`);
    ticket.cancel?.();
  }

  /** Forgets a replaceable slot whose write ended without being sent or replaced. */
  done(key: string, slot: Slot): void {
    const ticket = this.unsent.get(key);
    if (ticket && ticket === slot.ticket) this.unsent.delete(key);
  }

  /** Requests waiting at the gate and in flight (for tests and metrics). */
  get size(): { waiting: number; inFlight: number } {
    return { waiting: this.waiting, inFlight: this.inFlight };
  }
}
