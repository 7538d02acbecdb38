/**
 * Spacing for reconciles whose cost grows with what they read: a key's next reconcile starts no
 * sooner than `(1 / share - 1)` times its last one's duration after it ended, so it takes at most
 * `share` of the operator's time however large the object graph grows (at 10,000 x 10 a
 * deployment's status read 100,000 noderoles every coalescing window: a sixth of the CPU).
 * Small keys are not slowed: their spacing stays under the controller's coalescing window.
 */
export class DutyCycle {
  private readonly next = new Map<string, number>();
  private readonly factor: number;
  private readonly maxMs: number;

  constructor(share: number, maxMs: number) {
    if (!(share > 0 && share <= 1)) throw new Error(`share must be in (0, 1], got ${share}`);
    this.factor = 1 / share - 1;
    this.maxMs = maxMs;
  }

  /** Milliseconds until `key` may run again (0: now). */
  wait(key: string, now: number): number {
    return Math.max(0, (this.next.get(key) ?? 0) - now);
  }

  /** Records a run of `key` from `start` to `end` (ms). */
  ran(key: string, start: number, end: number): void {
    const spacing = Math.min(this.maxMs, Math.max(0, end - start) * this.factor);
    if (spacing > 0) this.next.set(key, end + spacing);
    else this.next.delete(key);
  }

  /** Forgets `key` (its object is gone): the map holds only live keys. */
  forget(key: string): void {
    this.next.delete(key);
  }

  get size(): number {
    return this.next.size;
  }
}
