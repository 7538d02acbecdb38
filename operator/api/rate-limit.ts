/**
 * Per-key token buckets (the node API keys them by node name): `burst` requests at once, then
 * `perSecond`. Pure: the clock is passed in. At most `maxKeys` buckets are kept (the least
 * recently used goes first), so a client making up names cannot grow memory without bound; a
 * forgotten bucket starts full again, which only ever errs towards letting a real node through.
 */
export interface RateLimitOptions {
  readonly burst: number;
  readonly perSecond: number;
  readonly maxKeys: number;
}

export const NODE_API_RATE: RateLimitOptions = { burst: 10, perSecond: 1, maxKeys: 10_000 };

export class RateLimiter {
  private readonly o: RateLimitOptions;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(o: RateLimitOptions = NODE_API_RATE) {
    this.o = o;
  }

  /**
   * Takes one request for `key` at `nowMs`: 0 when allowed, else the whole seconds to wait
   * before the next one would be (a Retry-After value, at least 1).
   */
  take(key: string, nowMs: number): number {
    const b = this.buckets.get(key) ?? { tokens: this.o.burst, at: nowMs };
    this.buckets.delete(key); // re-inserted last: Map order is least recently used first
    const tokens = Math.min(this.o.burst, b.tokens + ((nowMs - b.at) / 1000) * this.o.perSecond);
    const allowed = tokens >= 1;
    this.buckets.set(key, { tokens: allowed ? tokens - 1 : tokens, at: nowMs });
    while (this.buckets.size > this.o.maxKeys) {
      const oldest = this.buckets.keys().next().value;
      if (oldest === undefined) break;
      this.buckets.delete(oldest);
    }
    return allowed ? 0 : Math.max(1, Math.ceil((1 - tokens) / this.o.perSecond));
  }

  get size(): number {
    return this.buckets.size;
  }
}
