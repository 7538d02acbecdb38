import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planOrphans } from './orphans.ts';

const GRACE = 3000;

describe('planOrphans', () => {
  it('waits out the grace from the first sighting, then adopts', () => {
    const first = planOrphans(new Map(), ['a'], 1000, GRACE);
    expect(first).toEqual({ since: new Map([['a', 1000]]), adopt: [], wakeInMs: GRACE });
    const later = planOrphans(first.since, ['a'], 4000, GRACE);
    expect(later).toEqual({ since: new Map(), adopt: ['a'], wakeInMs: undefined });
  });

  it('asks for a wake-up again on every pass while an orphan waits (a lost one is not the end)', () => {
    // A pass woken by something else (a 25 ms retry) before the grace is over, and a timer that
    // fired a millisecond early by Date.now(): each still asks to be woken when the orphan is due.
    const seen = new Map([['a', 1000]]);
    expect(planOrphans(seen, ['a'], 1025, GRACE).wakeInMs).toBe(GRACE - 25);
    expect(planOrphans(seen, ['a'], 1000 + GRACE - 1, GRACE)).toEqual({
      since: seen,
      adopt: [],
      wakeInMs: 1,
    });
  });

  it('wakes for the first orphan due and forgets names that are no longer orphans', () => {
    const seen = new Map([
      ['a', 1000],
      ['b', 2000],
      ['gone', 0],
    ]);
    const p = planOrphans(seen, ['b', 'a', 'new'], 2500, GRACE);
    expect(p.adopt).toEqual([]);
    expect([...p.since.keys()].sort()).toEqual(['a', 'b', 'new']);
    expect(p.wakeInMs).toBe(1000 + GRACE - 2500);
  });

  it('never leaves an orphan without either an adoption or a wake-up (property)', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 3 }), fc.integer({ min: 0, max: 10_000 })),
        fc.array(fc.string({ maxLength: 3 }), { maxLength: 20 }),
        fc.integer({ min: 0, max: 20_000 }),
        (seenObj, names, now) => {
          const seen = new Map(Object.entries(seenObj).filter(([, t]) => t <= now));
          const candidates = [...new Set(names)];
          const p = planOrphans(seen, candidates, now, GRACE);
          for (const name of candidates) {
            const adopted = p.adopt.includes(name);
            const waiting = p.since.has(name);
            expect(adopted !== waiting).toBe(true);
            if (waiting) {
              expect(p.wakeInMs).toBeGreaterThan(0);
              expect(now + (p.wakeInMs ?? 0)).toBeLessThanOrEqual((p.since.get(name) ?? 0) + GRACE);
            }
          }
          expect(p.since.size + p.adopt.length).toBe(candidates.length);
        },
      ),
    );
  });
});
