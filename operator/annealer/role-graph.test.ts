import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { role } from './fixtures.test-helper.ts';
import { findCycles, requiredClosure, roleCohorts, unresolvedRequires } from './role-graph.ts';
import type { RoleView } from './world.ts';

const roles = (...rs: RoleView[]) => new Map(rs.map((r) => [r.name, r]));

describe('role graph (§1.2, §1.3)', () => {
  it('lists unresolved requires', () => {
    const rs = roles(role('a'), role('b', { requires: ['a', 'x', 'y'] }));
    expect(unresolvedRequires(rs.get('b')!, rs)).toEqual(['x', 'y']);
  });

  it('reports every cyclic path through a candidate, as a -> b -> a', () => {
    const rs = roles(
      role('a', { requires: ['b', 'c'] }),
      role('b', { requires: ['c'] }),
      role('c'),
    );
    expect(findCycles(rs)).toEqual([]);
    // c now requiring a closes two cycles through c.
    expect(findCycles(rs, role('c', { requires: ['a'] }))).toEqual([
      'c -> a -> b -> c',
      'c -> a -> c',
    ]);
  });

  it('reports each cycle of the graph once, from its first role', () => {
    const rs = roles(
      role('a', { requires: ['b'] }),
      role('b', { requires: ['a', 'c'] }),
      role('c', { requires: ['c'] }),
    );
    expect(findCycles(rs)).toEqual(['a -> b -> a', 'c -> c']);
  });

  it('a require of a missing role is no edge yet (§1.3 deferred check)', () => {
    const rs = roles(role('a', { requires: ['b'] }));
    expect(findCycles(rs, role('b', { requires: ['a'] }))).toEqual(['b -> a -> b']);
    expect(findCycles(rs)).toEqual([]);
  });

  it('cohort is max required cohort + 1; unresolved add nothing', () => {
    const rs = roles(
      role('a'),
      role('b', { requires: ['a'] }),
      role('c', { requires: ['a', 'b', 'zz'] }),
    );
    const c = roleCohorts(rs);
    expect([c.get('a')?.cohort, c.get('b')?.cohort, c.get('c')?.cohort]).toEqual([0, 1, 2]);
    expect(c.get('c')?.unresolved).toEqual(['zz']);
  });

  it('closure follows resolved requires', () => {
    const rs = roles(
      role('a'),
      role('b', { requires: ['a'] }),
      role('c', { requires: ['b', 'q'] }),
    );
    expect([...requiredClosure('c', rs)].sort()).toEqual(['a', 'b', 'c']);
  });

  it('property: an acyclic graph has no cycles and cohorts rise along edges; a back edge closes a cycle', () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat(), { minLength: 2, maxLength: 10 }),
        fc.nat(),
        (masks, pickBack) => {
          // Role i may require only roles j < i: acyclic by construction.
          const rs = roles(
            ...masks.map((m, i) =>
              role(`r${i}`, {
                requires: masks.slice(0, i).flatMap((_, j) => ((m >> j) & 1 ? [`r${j}`] : [])),
              }),
            ),
          );
          expect(findCycles(rs)).toEqual([]);
          const cohorts = roleCohorts(rs);
          for (const r of rs.values())
            for (const p of r.requires)
              expect(cohorts.get(r.name)!.cohort).toBeGreaterThan(cohorts.get(p)!.cohort);
          // Make the last role required by one it reaches: every reported cycle runs through both.
          const top = `r${masks.length - 1}`;
          const reach = [...requiredClosure(top, rs)].filter((n) => n !== top).sort();
          if (reach.length === 0) return;
          const target = reach[pickBack % reach.length]!;
          const t = rs.get(target)!;
          const cycles = findCycles(rs, { ...t, requires: [...t.requires, top] });
          expect(cycles.length).toBeGreaterThan(0);
          for (const c of cycles)
            expect(c.startsWith(`${target} -> ${top}`) && c.endsWith(`-> ${target}`)).toBe(true);
        },
      ),
    );
  });
});
