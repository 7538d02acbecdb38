import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyChanges, withNode } from './apply.ts';
import { buildScenario, commitAllDeployments, scenario } from './arbitraries.test-helper.ts';
import { deployment, node, noderole, statesOf, world } from './fixtures.test-helper.ts';
import { cancelRun, parentCycles, settle } from './settle.ts';
import type { NodeRoleState } from './states.ts';
import { toError } from './transitions.ts';
import type { World } from './world.ts';

const none = new Set<string>();

/** a <- b <- c on node n1 (cohorts 0, 1, 2), plus d on n2 under a (cross-node child). */
function chain(
  states: [NodeRoleState, NodeRoleState, NodeRoleState, NodeRoleState],
  opts: { alive?: boolean; available?: boolean; dep?: 'proposed' | 'committed' } = {},
): World {
  const [a, b, c, d] = states;
  return world({
    nodes: [
      node('n1', { alive: opts.alive ?? true, available: opts.available ?? true }),
      node('n2'),
    ],
    deployments: [deployment('system'), deployment('d1', { state: opts.dep ?? 'committed' })],
    noderoles: [
      noderole('a', 'n1', { state: a, deployment: 'd1' }),
      noderole('b', 'n1', { state: b, deployment: 'd1', parents: ['a.n1'], cohort: 1 }),
      noderole('c', 'n1', { state: c, deployment: 'd1', parents: ['b.n1'], cohort: 2 }),
      noderole('d', 'n2', { state: d, deployment: 'd1', parents: ['a.n1'], cohort: 1 }),
    ],
  });
}

function states(w: World, running = none): Record<string, NodeRoleState> {
  const out = settle(w, { running });
  if (!out.ok) throw new Error(out.reason);
  const after = applyChanges(w, out.changes);
  return Object.fromEntries([...after.noderoles.values()].map((nr) => [nr.name, nr.state]));
}

describe('settle restores the invariants a completed ripple leaves', () => {
  it.each<{
    why: string;
    from: [NodeRoleState, NodeRoleState, NodeRoleState, NodeRoleState];
    opts?: Parameters<typeof chain>[1];
    want: [NodeRoleState, NodeRoleState, NodeRoleState, NodeRoleState];
  }>([
    {
      why: 'a settled world is left alone',
      from: ['active', 'active', 'active', 'active'],
      want: ['active', 'active', 'active', 'active'],
    },
    {
      why: '§2.5 commit: proposed in a committed deployment -> todo or blocked',
      from: ['proposed', 'proposed', 'proposed', 'proposed'],
      want: ['todo', 'blocked', 'blocked', 'blocked'],
    },
    {
      why: 'nothing is committed in a proposed deployment',
      from: ['proposed', 'proposed', 'proposed', 'proposed'],
      opts: { dep: 'proposed' },
      want: ['proposed', 'proposed', 'proposed', 'proposed'],
    },
    {
      why: '§2.3 active unblocks children whose parents are all active',
      from: ['active', 'blocked', 'blocked', 'blocked'],
      want: ['active', 'todo', 'blocked', 'todo'],
    },
    {
      why: '§2.2 error blocks every descendant, active ones included',
      from: ['error', 'active', 'active', 'active'],
      want: ['error', 'blocked', 'blocked', 'blocked'],
    },
    {
      why: 'todo whose parent is not active is blocked (§3.1)',
      from: ['todo', 'todo', 'blocked', 'todo'],
      want: ['todo', 'blocked', 'blocked', 'blocked'],
    },
    {
      why: '§2.2 todo!/block! push an error child down',
      from: ['active', 'todo', 'error', 'active'],
      want: ['active', 'todo', 'blocked', 'active'],
    },
    {
      why: '§2.4 node death: roots todo, descendants blocked, other nodes keep active',
      from: ['active', 'active', 'active', 'active'],
      opts: { alive: false },
      want: ['todo', 'blocked', 'blocked', 'active'],
    },
    {
      why: '§2.4 node death clears error and a transition without a run',
      from: ['active', 'error', 'transition', 'active'],
      opts: { alive: false },
      want: ['todo', 'blocked', 'blocked', 'active'],
    },
    {
      why: '§2.4 unavailable: states are frozen',
      from: ['active', 'blocked', 'blocked', 'blocked'],
      opts: { available: false },
      want: ['active', 'blocked', 'blocked', 'todo'],
    },
  ])('$why', ({ from, opts, want }) => {
    const got = states(chain(from, opts));
    expect([got['a.n1'], got['b.n1'], got['c.n1'], got['d.n2']]).toEqual(want);
  });

  it('leaves a noderole with a run in flight to the runner', () => {
    const w = chain(['active', 'transition', 'blocked', 'active'], { alive: false });
    expect(states(w, new Set(['b.n1']))['b.n1']).toBe('transition');
  });

  it('names the noderole in error in the blocked message', () => {
    const out = settle(chain(['error', 'active', 'active', 'active']), { running: none });
    expect(out.ok && out.changes.find((c) => c.name === 'c.n1')?.message).toMatch(
      /a\.n1 is in error/,
    );
  });

  it('is idempotent: settling a settled world changes nothing', () => {
    const all: NodeRoleState[] = ['proposed', 'todo', 'blocked', 'active', 'error'];
    fc.assert(
      fc.property(
        fc.tuple(...[0, 1, 2, 3].map(() => fc.constantFrom(...all))),
        fc.boolean(),
        (s, alive) => {
          const w = chain(s as [NodeRoleState, NodeRoleState, NodeRoleState, NodeRoleState], {
            alive,
          });
          const once = settle(w, { running: none });
          if (!once.ok) return false;
          const again = settle(applyChanges(w, once.changes), { running: none });
          return again.ok && again.changes.length === 0;
        },
      ),
      { numRuns: 300 },
    );
  });

  it('agrees with the edge-triggered error! ripple', () => {
    const w = chain(['active', 'active', 'active', 'active']);
    const e = toError(w, 'a.n1', 'boom');
    if (!e.ok) throw new Error(e.reason);
    const after = applyChanges(w, e.changes);
    const s = settle(after, { running: none });
    expect(s.ok && s.changes.filter((c) => c.state !== after.noderoles.get(c.name)?.state)).toEqual(
      [],
    );
  });
});

describe('cancelRun', () => {
  it('puts a cancelled run back to todo (parents active) without counting it', () => {
    const out = cancelRun(
      chain(['active', 'transition', 'blocked', 'active']),
      'b.n1',
      'run cancelled: node n1 died',
    );
    expect(out.ok && out.changes).toEqual([
      { name: 'b.n1', state: 'todo', message: 'run cancelled: node n1 died' },
    ]);
  });

  it('blocks a cancelled run whose parent is no longer active', () => {
    const out = cancelRun(chain(['todo', 'transition', 'blocked', 'active']), 'b.n1', 'cancelled');
    expect(out.ok && out.changes[0]?.state).toBe('blocked');
  });
});

describe('settle with a scope', () => {
  const all: NodeRoleState[] = ['proposed', 'todo', 'blocked', 'transition', 'active', 'error'];

  /** The world after settling until nothing changes (at most a few rounds). */
  function settled(w: World, running: ReadonlySet<string>): World | undefined {
    let cur = w;
    for (let i = 0; i < 10; i++) {
      const out = settle(cur, { running });
      if (!out.ok) return undefined;
      if (out.changes.length === 0) return cur;
      cur = applyChanges(cur, out.changes);
    }
    return undefined;
  }

  it('decides what a full settle decides when it names every noderole whose inputs changed', () => {
    fc.assert(
      fc.property(
        scenario,
        fc.array(fc.constantFrom(...all), { minLength: 40, maxLength: 40 }),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(...all)), { maxLength: 4 }),
        fc.array(fc.tuple(fc.nat(), fc.boolean(), fc.boolean()), { maxLength: 2 }),
        (sc, initial, edits, nodeFlips) => {
          const built = commitAllDeployments(buildScenario(sc));
          const names = [...built.noderoles.keys()];
          const start = applyChanges(
            built,
            names.map((name, i) => ({
              name,
              state: initial[i % initial.length] ?? 'todo',
              message: '',
            })),
          );
          const running = new Set(
            names.filter((n) => start.noderoles.get(n)?.state === 'transition').slice(0, 1),
          );
          const base = settled(start, running);
          fc.pre(base !== undefined);
          // Perturb some noderoles and some nodes, as events between two passes would.
          const scope = new Set<string>();
          let w = applyChanges(
            base,
            edits.map(([i, state]) => {
              const name = names[i % names.length] ?? '';
              scope.add(name);
              return { name, state, message: 'edited' };
            }),
          );
          const nodeNames = [...w.nodes.keys()];
          for (const [i, alive, available] of nodeFlips) {
            const n = nodeNames[i % nodeNames.length] ?? '';
            w = withNode(w, n, { alive, available });
            for (const nr of w.noderoles.values()) if (nr.node === n) scope.add(nr.name);
          }
          const full = settle(w, { running });
          const scoped = settle(w, { running, scope });
          const key = (o: typeof full) =>
            o.ok ? [...o.changes].sort((a, b) => (a.name < b.name ? -1 : 1)) : o.reason;
          expect(key(scoped)).toEqual(key(full));
        },
      ),
      { numRuns: 400 },
    );
  });

  it('leaves noderoles outside the scope and its descendants alone', () => {
    // A proposed deployment holds its noderoles in proposed (§2.5): a full settle proposes b, c
    // and d and says why on a; a scope of d touches d alone.
    const w = chain(['proposed', 'todo', 'todo', 'todo'], { dep: 'proposed' });
    const scoped = settle(w, { running: none, scope: ['d.n2'] });
    expect(scoped.ok && scoped.changes.map((c) => c.name)).toEqual(['d.n2']);
    const full = settle(w, { running: none });
    expect(full.ok && full.changes.map((c) => c.name).sort()).toEqual([
      'a.n1',
      'b.n1',
      'c.n1',
      'd.n2',
    ]);
    expect(full.ok && full.changes.every((c) => c.state === 'proposed')).toBe(true);
  });
});

describe('settle: propose and commit (§2.2 propose!/commit!, §2.5)', () => {
  const withSpec = (w: World, name: string, proposedSpec: boolean): World => {
    const nr = w.noderoles.get(name);
    if (!nr) throw new Error(name);
    return { ...w, noderoles: new Map([...w.noderoles, [name, { ...nr, proposedSpec }]]) };
  };

  it('holds a proposed deployment, node or noderole in proposed, leaving a run in flight be', () => {
    expect(states(chain(['active', 'active', 'active', 'active'], { dep: 'proposed' }))).toEqual({
      'a.n1': 'proposed',
      'b.n1': 'proposed',
      'c.n1': 'proposed',
      'd.n2': 'proposed',
    });
    const w = withNode(chain(['active', 'active', 'transition', 'active']), 'n1', {
      proposed: true,
    });
    expect(states(w, new Set(['c.n1']))).toEqual({
      'a.n1': 'proposed',
      'b.n1': 'proposed',
      'c.n1': 'transition',
      'd.n2': 'active', // another node: children stay as they are while a parent is proposed
    });
    const one = settle(withSpec(chain(['active', 'active', 'active', 'active']), 'b.n1', true), {
      running: none,
    });
    expect(one.ok && one.changes).toEqual([
      {
        name: 'b.n1',
        state: 'proposed',
        message: 'proposed: edit spec.data, then set spec.proposed to false to commit',
      },
    ]);
  });

  it('commits a noderole that ran before and takes its descendants with it', () => {
    // b ran before, was proposed and is committed again: it runs again, c after it.
    const base = chain(['active', 'proposed', 'active', 'active']);
    const b = base.noderoles.get('b.n1');
    if (!b) throw new Error('b');
    const w = { ...base, noderoles: new Map([...base.noderoles, ['b.n1', { ...b, runCount: 1 }]]) };
    const out = settle(w, { running: none });
    expect(out.ok && out.changes.map((c) => [c.name, c.state, c.message])).toEqual([
      ['b.n1', 'todo', 'committed again; runs again once all parents are active'],
      ['c.n1', 'blocked', 'waiting for parent b.n1 (todo)'],
    ]);
  });

  it('commits a never-run noderole without touching its active children', () => {
    expect(states(chain(['active', 'proposed', 'active', 'active']))).toMatchObject({
      'b.n1': 'todo',
      'c.n1': 'active', // todo! pushes children down only when they are todo or error
    });
  });
});

describe('settle with a parent cycle written into status by hand', () => {
  /** x <-> y (each the other's parent) with z under y; a separate chain p <- q on node n2. */
  function tampered(): World {
    return world({
      nodes: [node('n1'), node('n2')],
      noderoles: [
        noderole('x', 'n1', { state: 'blocked', parents: ['y.n1'], message: 'active after run 1' }),
        noderole('y', 'n1', { state: 'todo', parents: ['x.n1'], cohort: 1 }),
        noderole('z', 'n1', { state: 'todo', parents: ['y.n1'], cohort: 2 }),
        noderole('p', 'n2', { state: 'active' }),
        noderole('q', 'n2', { state: 'blocked', parents: ['p.n2'], cohort: 1 }),
      ],
    });
  }

  it('finds the cycle, puts its members in error naming it, blocks below and leaves the rest', () => {
    const w = tampered();
    const out = settle(w, { running: none });
    if (!out.ok) throw new Error(out.reason);
    const after = applyChanges(w, out.changes);
    expect(statesOf(after)).toEqual({
      'x.n1': 'error',
      'y.n1': 'error',
      'z.n1': 'blocked',
      'p.n2': 'active',
      'q.n2': 'todo',
    });
    expect(after.noderoles.get('x.n1')?.message).toMatch(
      /^its status\.parents form a cycle \(x\.n1, y\.n1\), which the operator never writes/,
    );
    expect(after.noderoles.get('z.n1')?.message).toMatch(/is in error/);
    // Settled: the next pass changes nothing (no write on every pass).
    const again = settle(after, { running: none });
    expect(again.ok && again.changes).toEqual([]);
    // A scoped pass naming one member sees the whole cycle.
    const scoped = settle(w, { running: none, scope: ['y.n1'] });
    expect(scoped.ok && scoped.changes.map((c) => [c.name, c.state])).toContainEqual([
      'x.n1',
      'error',
    ]);
  });

  it('treats a noderole that is its own parent as a cycle, and names at most 8 members', () => {
    const self = world({
      nodes: [node('n1')],
      noderoles: [noderole('s', 'n1', { state: 'todo', parents: ['s.n1'] })],
    });
    expect(parentCycles([...self.noderoles.values()])).toEqual([['s.n1']]);
    const ring = Array.from({ length: 20 }, (_, i) =>
      noderole(`r${String(i)}`, 'n1', {
        state: 'todo',
        parents: [`r${String((i + 1) % 20)}.n1`],
      }),
    );
    const w = world({ nodes: [node('n1')], noderoles: ring });
    const out = settle(w, { running: none });
    if (!out.ok) throw new Error(out.reason);
    expect(out.changes.filter((c) => c.state === 'error')).toHaveLength(20);
    expect(out.changes[0]?.message).toMatch(/, and 12 more\)/);
  });

  it('walks a 100,000-long parent chain and a cycle round it without overflowing the stack', () => {
    const n = 100_000;
    const chainNrs = Array.from({ length: n }, (_, i) =>
      noderole(`c${String(i)}`, 'n1', {
        state: 'active',
        parents: [`c${String((i + 1) % n)}.n1`],
      }),
    );
    const cycles = parentCycles(chainNrs);
    expect(cycles).toHaveLength(1);
    expect(cycles[0]).toHaveLength(n);
  });

  it('finds no cycle in any scenario the binder builds', () => {
    fc.assert(
      fc.property(scenario, (sc) => {
        const w = commitAllDeployments(buildScenario(sc));
        expect(parentCycles([...w.noderoles.values()])).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});
