import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ANNEALING_HOLD_MS, annealingHold } from './status.ts';

const STATES = ['proposed', 'todo', 'transition', 'active', 'error'] as const;

describe('annealingHold: a node between todo and transition is written once it stays there', () => {
  it.each([
    // written, next, todoSince, now, expected
    ['transition', 'todo', undefined, 5000, { write: false, waitMs: ANNEALING_HOLD_MS }],
    ['transition', 'todo', 5000, 5400, { write: false, waitMs: ANNEALING_HOLD_MS - 400 }],
    ['transition', 'todo', 5000, 5000 + ANNEALING_HOLD_MS, { write: true }],
    ['transition', 'active', undefined, 5000, { write: true }],
    ['transition', 'error', undefined, 5000, { write: true }],
    ['todo', 'transition', undefined, 5000, { write: false, waitMs: ANNEALING_HOLD_MS }],
    ['todo', 'transition', 4000, 5000, { write: true }],
    ['todo', 'todo', undefined, 5000, { write: true }],
    ['todo', 'active', undefined, 5000, { write: true }],
    ['active', 'transition', undefined, 5000, { write: true }],
    ['proposed', 'todo', undefined, 5000, { write: true }],
    [undefined, 'todo', undefined, 5000, { write: true }],
  ] as const)('%s -> %s (todo since %s, now %s)', (written, next, since, now, expected) => {
    expect(annealingHold(written, next, since, now)).toEqual(expected);
  });

  it('holds only todo <-> transition, and never longer than the hold', () => {
    fc.assert(
      fc.property(
        fc.option(fc.constantFrom(...STATES), { nil: undefined }),
        fc.constantFrom(...STATES),
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        (written, next, since, later) => {
          const now = since + later;
          const r = annealingHold(written, next, since, now);
          const annealing = (x: string | undefined): boolean => x === 'todo' || x === 'transition';
          if (written === next || !annealing(written) || !annealing(next))
            expect(r).toEqual({ write: true });
          else if (r.write) expect(later).toBeGreaterThanOrEqual(ANNEALING_HOLD_MS);
          else {
            expect(r.waitMs).toBeGreaterThan(0);
            expect(r.waitMs).toBeLessThanOrEqual(ANNEALING_HOLD_MS);
            // Looked at again when told to, it is written.
            expect(annealingHold(written, next, since, now + r.waitMs)).toEqual({ write: true });
          }
        },
      ),
    );
  });
});
