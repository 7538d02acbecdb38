import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FIRST_PASS, planScope, type ScopeRequest, type SweepState } from './sweep.ts';

const PERIOD = 30_000;

/** A fleet of `nodes` nodes with `per` noderoles each: `r<i>.n<j>`. */
function fleet(nodes: number, per: number): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (let j = 0; j < nodes; j++) {
    m.set(
      `n${String(j)}`,
      Array.from({ length: per }, (_, i) => `r${String(i)}.n${String(j)}`),
    );
  }
  return m;
}

function request(
  f: Map<string, string[]>,
  now: number,
  changed: string[] = [],
  slice = 5,
): ScopeRequest {
  return {
    changed: new Set(changed),
    noderoles: [...f.values()].reduce((n, x) => n + x.length, 0),
    now,
    nodes: () => f.keys(),
    namesOn: (node) => f.get(node) ?? [],
    periodMs: PERIOD,
    slice,
  };
}

describe('planScope', () => {
  it('settles everything on the first pass, then only what changed until a sweep is due', () => {
    const f = fleet(4, 2);
    const first = planScope(FIRST_PASS, request(f, 1000, ['r0.n0']));
    expect(first.kind).toBe('full');
    expect(first.scope).toBeUndefined();
    expect(first.state.dueAt).toBe(1000 + PERIOD);
    const later = planScope(first.state, request(f, 2000, ['r1.n2']));
    expect(later).toMatchObject({ kind: 'changed', more: false });
    expect([...(later.scope ?? [])]).toEqual(['r1.n2']);
  });

  it('settles everything at once when most noderoles changed anyway', () => {
    const f = fleet(2, 2);
    const st: SweepState = { dueAt: 1e9, nodes: undefined, next: 0 };
    const plan = planScope(st, request(f, 1000, ['r0.n0', 'r1.n0']));
    expect(plan.kind).toBe('full');
  });

  it('sweeps the nodes a slice per pass, with what changed, and starts the period again at its end', () => {
    const f = fleet(5, 2); // 10 noderoles, slices of about 4 (whole nodes)
    let st: SweepState = { dueAt: 1000, nodes: undefined, next: 0 };
    const slices: string[][] = [];
    let now = 1000;
    for (let pass = 0; pass < 10; pass++) {
      const plan = planScope(st, request(f, now, ['x'], 4));
      expect(plan.kind).toBe('sweep');
      expect(plan.scope?.has('x')).toBe(true);
      slices.push([...(plan.scope ?? [])].filter((n) => n !== 'x'));
      st = plan.state;
      if (!plan.more) break;
      now += 5;
    }
    expect(slices).toEqual([
      ['r0.n0', 'r1.n0', 'r0.n1', 'r1.n1'],
      ['r0.n2', 'r1.n2', 'r0.n3', 'r1.n3'],
      ['r0.n4', 'r1.n4'],
    ]);
    expect(st).toEqual({ dueAt: now + PERIOD, nodes: undefined, next: 0 });
    expect(planScope(st, request(f, now + 1, [])).kind).toBe('changed');
  });

  it('covers every noderole in each sweep, in slices of about the asked size', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 20 }),
        (nodes, per, slice) => {
          const f = fleet(nodes, per);
          const all = [...f.values()].flat();
          let st: SweepState = { dueAt: 1, nodes: undefined, next: 0 };
          const seen = new Set<string>();
          // Bounded: a sweep takes at most one pass per node (plus the last one).
          for (let pass = 0; pass <= nodes + 1; pass++) {
            const plan = planScope(st, request(f, 1 + pass, [], slice));
            if (plan.kind !== 'sweep') break;
            const size = plan.scope?.size ?? 0;
            expect(size).toBeLessThan(slice + per);
            for (const n of plan.scope ?? []) seen.add(n);
            st = plan.state;
            if (!plan.more) {
              expect(st.nodes).toBeUndefined();
              expect(st.dueAt).toBe(1 + pass + PERIOD);
              break;
            }
          }
          expect([...seen].sort()).toEqual(all.sort());
        },
      ),
    );
  });
});
