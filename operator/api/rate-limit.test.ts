import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RateLimiter } from './rate-limit.ts';

describe('RateLimiter', () => {
  it('allows a burst, then one per second per key, and says how long to wait', () => {
    const r = new RateLimiter({ burst: 3, perSecond: 1, maxKeys: 100 });
    expect([0, 0, 0].map(() => r.take('a', 0))).toEqual([0, 0, 0]);
    expect(r.take('a', 0)).toBe(1);
    expect(r.take('b', 0)).toBe(0); // another node has its own bucket
    expect(r.take('a', 999)).toBe(1);
    expect(r.take('a', 1000)).toBe(0);
    expect(r.take('a', 1000)).toBe(1);
  });

  it('never admits more than burst + elapsed × rate for one key, and keeps at most maxKeys', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.nat({ max: 500 })), {
          maxLength: 300,
        }),
        (steps) => {
          const r = new RateLimiter({ burst: 5, perSecond: 2, maxKeys: 100 });
          let now = 0;
          const admitted = new Map<string, number>();
          for (const [key, dt] of steps) {
            now += dt;
            if (r.take(key, now) === 0) admitted.set(key, (admitted.get(key) ?? 0) + 1);
          }
          for (const n of admitted.values()) expect(n).toBeLessThanOrEqual(5 + (now / 1000) * 2);
        },
      ),
    );
    const r = new RateLimiter({ burst: 1, perSecond: 1, maxKeys: 50 });
    for (let i = 0; i < 10_000; i++) r.take(`made-up-${String(i)}`, 0);
    expect(r.size).toBe(50);
  });
});
