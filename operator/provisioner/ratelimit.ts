/**
 * Token buckets per key with one global bucket above them (pure: `now` is passed in), for the
 * provisioner API's registration: a flood from one address, or from many, is refused with 429
 * before it reaches the API server.
 */
export interface BucketConfig {
  /** Requests allowed at once. */
  burst: number;
  /** Tokens added per second. */
  perSecond: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly perKey: BucketConfig;
  private readonly global: BucketConfig;
  private readonly buckets = new Map<string, Bucket>();
  private all: Bucket;
  private readonly maxKeys: number;

  constructor(perKey: BucketConfig, global: BucketConfig, now: number, maxKeys = 10_000) {
    this.perKey = perKey;
    this.global = global;
    this.all = { tokens: global.burst, at: now };
    this.maxKeys = maxKeys;
  }

  private static refill(b: Bucket, c: BucketConfig, now: number): void {
    const dt = Math.max(0, now - b.at) / 1000;
    b.tokens = Math.min(c.burst, b.tokens + dt * c.perSecond);
    b.at = now;
  }

  /**
   * Takes one token for `key` and one from the global bucket; `retryAfterSeconds` says when the
   * next request can pass when it is refused. A refused request takes nothing.
   */
  take(key: string, now: number): { ok: true } | { ok: false; retryAfterSeconds: number } {
    RateLimiter.refill(this.all, this.global, now);
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.prune(now);
      b = { tokens: this.perKey.burst, at: now };
      this.buckets.set(key, b);
    }
    RateLimiter.refill(b, this.perKey, now);
    if (b.tokens < 1)
      return { ok: false, retryAfterSeconds: Math.ceil((1 - b.tokens) / this.perKey.perSecond) };
    if (this.all.tokens < 1)
      return {
        ok: false,
        retryAfterSeconds: Math.ceil((1 - this.all.tokens) / this.global.perSecond),
      };
    b.tokens -= 1;
    this.all.tokens -= 1;
    return { ok: true };
  }

  /** Drops full buckets (keys that have been quiet long enough): they equal a new bucket. */
  private prune(now: number): void {
    for (const [k, b] of this.buckets) {
      RateLimiter.refill(b, this.perKey, now);
      if (b.tokens >= this.perKey.burst) this.buckets.delete(k);
    }
    // Still full of busy keys: forget the oldest half rather than grow without bound.
    if (this.buckets.size >= this.maxKeys) {
      let n = Math.floor(this.buckets.size / 2);
      for (const k of this.buckets.keys()) {
        if (n-- <= 0) break;
        this.buckets.delete(k);
      }
    }
  }
}
