import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CohortOrder } from './cohort-order.ts';
import { compareNames } from './world.ts';

describe('CohortOrder', () => {
  it('iterates what it holds in (cohort, name) order after any inserts, moves and removals', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.constantFrom('a', 'b', 'c', 'aa', 'ab', 'b.x', 'z', 'Z', '0'),
            fc.option(fc.nat({ max: 3 }), { nil: undefined }),
          ),
          { maxLength: 60 },
        ),
        (ops) => {
          const order = new CohortOrder();
          const model = new Map<string, number>();
          for (const [name, cohort] of ops) {
            order.set(name, cohort);
            if (cohort === undefined) model.delete(name);
            else model.set(name, cohort);
          }
          const want = [...model]
            .sort(([a, ca], [b, cb]) => ca - cb || compareNames(a, b))
            .map(([n]) => n);
          expect([...order]).toEqual(want);
          expect(order.size).toBe(model.size);
          for (const name of ['a', 'b', 'z', 'q']) expect(order.has(name)).toBe(model.has(name));
        },
      ),
      { numRuns: 500 },
    );
  });
});
