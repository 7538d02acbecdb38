import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RateLimiter } from './ratelimit.ts';

describe('RateLimiter', () => {
  it('allows a burst per key, then refuses with a retry time, then refills', () => {
    const r = new RateLimiter({ burst: 2, perSecond: 0.5 }, { burst: 100, perSecond: 100 }, 0);
    expect(r.take('a', 0).ok).toBe(true);
    expect(r.take('a', 0).ok).toBe(true);
    expect(r.take('a', 0)).toEqual({ ok: false, retryAfterSeconds: 2 });
    expect(r.take('b', 0).ok).toBe(true); // another key has its own bucket
    expect(r.take('a', 2000).ok).toBe(true);
    expect(r.take('a', 2000).ok).toBe(false);
  });

  it('refuses every key once the global bucket is empty', () => {
    const r = new RateLimiter({ burst: 5, perSecond: 1 }, { burst: 3, perSecond: 1 }, 0);
    expect([1, 2, 3].map((i) => r.take(`k${i}`, 0).ok)).toEqual([true, true, true]);
    expect(r.take('k4', 0)).toEqual({ ok: false, retryAfterSeconds: 1 });
    expect(r.take('k4', 1000).ok).toBe(true);
  });

  it('never admits more than burst + rate x time for one key (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 500 }), { minLength: 1, maxLength: 200 }),
        (gaps) => {
          const r = new RateLimiter({ burst: 3, perSecond: 2 }, { burst: 1e9, perSecond: 1e9 }, 0);
          let t = 0;
          let admitted = 0;
          for (const g of gaps) {
            t += g;
            if (r.take('x', t).ok) admitted++;
          }
          expect(admitted).toBeLessThanOrEqual(3 + Math.floor((t / 1000) * 2));
        },
      ),
    );
  });

  it('stays bounded in keys', () => {
    const r = new RateLimiter(
      { burst: 1, perSecond: 0.001 },
      { burst: 1e9, perSecond: 1e9 },
      0,
      100,
    );
    for (let i = 0; i < 1000; i++) r.take(`k${i}`, 0);
    expect((r as unknown as { buckets: Map<string, unknown> }).buckets.size).toBeLessThanOrEqual(
      100,
    );
  });
});
