import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyChanges } from './apply.ts';
import { CohortOrder } from './cohort-order.ts';
import { pendingRetries } from './converge.ts';
import { deployment, node, noderole, world } from './fixtures.test-helper.ts';
import { PendingChanges, PendingView } from './pending.ts';
import { notRunnableReason, pickRuns } from './scheduler.ts';
import type { NodeRoleState } from './states.ts';
import {
  compareNames,
  namesInState,
  type NodeRoleView,
  type NodeView,
  type World,
} from './world.ts';

const N1 = 'n1.lab.example.com';
const N2 = 'n2.lab.example.com';
const N3 = 'n3.lab.example.com';

function pick(
  nodes: NodeView[],
  noderoles: NodeRoleView[],
  max = 10,
  running: string[] = [],
): string[] {
  const w = world({
    nodes,
    noderoles,
    deployments: [deployment('system'), deployment('d1', { state: 'proposed' })],
  });
  return pickRuns(w, { maxConcurrent: max, running: new Set(running) });
}

/**
 * The todo order the operator keeps: every todo noderole, and (as it may) some that are not todo
 * any more, so that readers must check.
 */
function todoOrderOf(noderoles: ReadonlyMap<string, NodeRoleView>): CohortOrder {
  const order = new CohortOrder();
  let i = 0;
  for (const nr of noderoles.values())
    if (nr.state === 'todo' || i++ % 3 === 0) order.set(nr.name, nr.cohort);
  return order;
}

describe('pickRuns (§3.1 runnable, §3.4 caps)', () => {
  it.each([
    { rule: 'a todo noderole on an alive, available node runs', node: {}, nr: {}, runs: true },
    { rule: 'not todo: blocked', node: {}, nr: { state: 'blocked' as const }, runs: false },
    { rule: 'not todo: proposed', node: {}, nr: { state: 'proposed' as const }, runs: false },
    { rule: 'node not alive (§2.4)', node: { alive: false }, nr: {}, runs: false },
    {
      rule: 'node not available (§2.4: skipped, states untouched)',
      node: { available: false },
      nr: {},
      runs: false,
    },
    {
      rule: 'system node counts as alive (§1.1)',
      node: { alive: false, system: true },
      nr: {},
      runs: true,
    },
    {
      rule: 'system node still needs available',
      node: { alive: false, system: true, available: false },
      nr: {},
      runs: false,
    },
    {
      rule: 'noderole not available (debug mode)',
      node: {},
      nr: { available: false },
      runs: false,
    },
    { rule: 'deployment proposed (§1.5)', node: {}, nr: { deployment: 'd1' }, runs: false },
    { rule: 'deployment missing', node: {}, nr: { deployment: 'gone' }, runs: false },
  ])('$rule', ({ node: n, nr, runs }) => {
    const got = pick([node(N1, n)], [noderole('a', N1, { state: 'todo', ...nr })]);
    expect(got).toEqual(runs ? [`a.${N1}`] : []);
  });

  it.each(['transition', 'error'] as const)(
    'a node with a noderole in %s is frozen (§3.1, §2.6)',
    (state) => {
      const got = pick(
        [node(N1)],
        [noderole('a', N1, { state: 'todo' }), noderole('b', N1, { state })],
      );
      expect(got).toEqual([]);
    },
  );

  it('a node with a run in flight starts nothing else (§3.2 one run per node)', () => {
    const got = pick(
      [node(N1)],
      [noderole('a', N1, { state: 'todo' }), noderole('b', N1, { state: 'todo' })],
      10,
      [`z.${N1}`],
    );
    expect(got).toEqual([]);
  });

  it('picks one per node in (cohort, name) order', () => {
    const got = pick(
      [node(N1), node(N2)],
      [
        noderole('b', N1, { state: 'todo', cohort: 1 }),
        noderole('c', N1, { state: 'todo', cohort: 0 }),
        noderole('a', N2, { state: 'todo', cohort: 2 }),
        noderole('z', N2, { state: 'todo', cohort: 0 }),
      ],
    );
    expect(got).toEqual([`c.${N1}`, `z.${N2}`]);
  });

  it('never exceeds the cap, counting runs in flight', () => {
    const nodes = [node(N1), node(N2), node(N3)];
    const nrs = nodes.map((n) => noderole('a', n.name, { state: 'todo' }));
    expect(pick(nodes, nrs, 2)).toHaveLength(2);
    expect(pick(nodes, nrs, 2, ['x.other.lab.example.com'])).toHaveLength(1);
    expect(
      pick(nodes, nrs, 2, ['x.o1.lab.example.com', 'x.o2.lab.example.com', 'x.o3.lab.example.com']),
    ).toEqual([]);
    expect(pick(nodes, nrs, 0)).toEqual([]);
  });

  it('explains why a noderole is not runnable', () => {
    const w = world({
      nodes: [node(N1, { available: false })],
      noderoles: [noderole('a', N1, { state: 'todo' })],
    });
    expect(notRunnableReason(w, w.noderoles.get(`a.${N1}`)!)).toBe(`node ${N1} is not available`);
  });
});

describe('pickRuns with maintained indexes', () => {
  const all: NodeRoleState[] = ['proposed', 'todo', 'blocked', 'transition', 'active', 'error'];

  /** The indexes the operator keeps, built from the world before any layered change. */
  function indexed(w: World): World {
    const byState = new Map<NodeRoleState, Set<string>>();
    const retrying = new Set<string>();
    for (const nr of w.noderoles.values()) {
      const set = byState.get(nr.state) ?? new Set<string>();
      set.add(nr.name);
      byState.set(nr.state, set);
      if (nr.retry > nr.observedRetry) retrying.add(nr.name);
    }
    return { ...w, byState, retrying, todoOrder: todoOrderOf(w.noderoles) };
  }

  /** Four nodes and a noderole per (state, node, retry), in three cohorts. */
  function fuzzWorld(specs: readonly (readonly [NodeRoleState, number, number])[]): World {
    return world({
      nodes: [0, 1, 2, 3].map((i) => node(`n${i}.lab.example.com`)),
      deployments: [deployment('system')],
      noderoles: specs.map(([state, n, retry], i) =>
        noderole(`r${i}`, `n${n}.lab.example.com`, { state, cohort: i % 3, retry }),
      ),
    });
  }

  it('picks what a scan of every noderole picks, also after layered changes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...all), fc.nat({ max: 3 }), fc.nat({ max: 2 })), {
          minLength: 1,
          maxLength: 30,
        }),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(...all)), { maxLength: 6 }),
        fc.integer({ min: 1, max: 5 }),
        (specs, changes, max) => {
          const base = fuzzWorld(specs);
          const names = [...base.noderoles.keys()];
          const edits = changes.map(([i, state]) => ({
            name: names[i % names.length] ?? '',
            state,
            message: '',
          }));
          const plain = applyChanges(base, edits);
          const fast = applyChanges(indexed(base), edits);
          const opts = { maxConcurrent: max, running: new Set<string>() };
          expect(pickRuns(fast, opts)).toEqual(pickRuns(plain, opts));
          expect(pendingRetries(fast)).toEqual(pendingRetries(plain));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('picks the same with unwritten changes applied per read (PendingView) as with them copied in', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...all), fc.nat({ max: 3 }), fc.nat({ max: 2 })), {
          minLength: 1,
          maxLength: 30,
        }),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(...all), fc.option(fc.nat({ max: 3 }))), {
          maxLength: 12,
        }),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(...all)), { maxLength: 4 }),
        fc.integer({ min: 1, max: 5 }),
        (specs, unwritten, edits, max) => {
          const base = fuzzWorld(specs);
          const names = [...base.noderoles.keys()];
          const pending = new PendingChanges();
          // The newest decision per noderole wins, as in the operator.
          for (const [i, state, observedRetry] of unwritten) {
            const name = names[i % names.length] ?? '';
            pending.set({
              name,
              state,
              message: 'decided',
              ...(observedRetry === null ? {} : { observedRetry }),
            });
          }
          const later = edits.map(([i, state]) => ({
            name: names[i % names.length] ?? '',
            state,
            message: '',
          }));
          const decided = names.flatMap((n) => pending.get(n) ?? []);
          const plain = applyChanges(applyChanges(base, decided), later);
          const lazy = indexed(base);
          const pendingView = new PendingView(lazy.noderoles, pending);
          const fast = applyChanges(
            {
              ...lazy,
              noderoles: pendingView,
              pendingByState: pending.byState(),
              todoOrder: todoOrderOf(pendingView),
            },
            later,
          );
          const opts = { maxConcurrent: max, running: new Set<string>() };
          expect(pickRuns(fast, opts)).toEqual(pickRuns(plain, opts));
          expect(pendingRetries(fast)).toEqual(pendingRetries(plain));
          for (const state of all) {
            expect(namesInState(fast, state).sort()).toEqual(namesInState(plain, state).sort());
          }
          expect([...fast.noderoles.values()]).toEqual([...plain.noderoles.values()]);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('pickRuns over many candidates', () => {
  /** §3.1 as written: every runnable candidate sorted by (cohort, name), walked in order. */
  function reference(
    w: World,
    max: number,
    running: ReadonlySet<string>,
  ): { picks: string[]; candidates: number; lastAt: number } {
    const slots = max - running.size;
    if (slots <= 0) return { picks: [], candidates: 0, lastAt: -1 };
    const busy = new Set<string>();
    for (const r of running) busy.add(w.noderoles.get(r)?.node ?? '');
    for (const nr of w.noderoles.values())
      if (nr.state === 'transition' || nr.state === 'error') busy.add(nr.node);
    const todo = [...w.noderoles.values()]
      .filter((nr) => nr.state === 'todo' && !busy.has(nr.node) && !running.has(nr.name))
      .sort((a, b) => a.cohort - b.cohort || compareNames(a.name, b.name));
    const out: string[] = [];
    let lastAt = -1;
    for (const [i, nr] of todo.entries()) {
      if (out.length >= slots) break;
      if (busy.has(nr.node) || notRunnableReason(w, nr) !== undefined) continue;
      busy.add(nr.node);
      out.push(nr.name);
      lastAt = i;
    }
    return { picks: out, candidates: todo.length, lastAt };
  }

  it('picks what sorting every candidate picks, with held, unavailable and busy ones among them', () => {
    const states: NodeRoleState[] = [
      ...Array.from({ length: 12 }, () => 'todo' as const),
      'blocked',
      'transition',
      'error',
    ];
    let fewFilled = 0;
    let sortedAll = 0;
    fc.assert(
      fc.property(
        // Few nodes: the best candidates share nodes, so they do not fill the slots and the
        // whole list is sorted; many nodes: the few best fill them.
        fc.oneof(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 60, max: 200 })),
        fc.array(
          fc.record({
            state: fc.constantFrom(...states),
            node: fc.nat({ max: 199 }),
            cohort: fc.nat({ max: 4 }),
            odd: fc.constantFrom('none', 'none', 'none', 'none', 'none', 'held', 'unavailable'),
          }),
          { minLength: 1, maxLength: 200, size: 'max' },
        ),
        fc.integer({ min: 1, max: 12 }),
        fc.array(fc.nat(), { maxLength: 3 }),
        // Calm: nothing in transition or error, so few nodes still have candidates.
        fc.boolean(),
        (nodes, specs, max, run, calm) => {
          const w = world({
            nodes: Array.from({ length: nodes }, (_, i) => node(`n${String(i)}.lab.example.com`)),
            noderoles: specs.map((x, i) =>
              noderole(`r${String(i)}`, `n${String(x.node % nodes)}.lab.example.com`, {
                state:
                  calm && (x.state === 'transition' || x.state === 'error') ? 'blocked' : x.state,
                cohort: x.cohort,
                ...(x.odd === 'held' ? { hold: 'held by a test' } : {}),
                ...(x.odd === 'unavailable' ? { available: false } : {}),
              }),
            ),
          });
          const names = [...w.noderoles.keys()];
          const running = new Set(run.map((i) => names[i % names.length] ?? ''));
          const want = reference(w, max, running);
          expect(pickRuns(w, { maxConcurrent: max, running })).toEqual(want.picks);
          const ordered = { ...w, todoOrder: todoOrderOf(w.noderoles) };
          expect(pickRuns(ordered, { maxConcurrent: max, running })).toEqual(want.picks);
          // Which path the scheduler must have taken: more candidates than its few best, and
          // the slots filled within those few, or not.
          const slots = max - running.size;
          const few = slots * 2 + 8;
          if (slots > 0 && want.candidates > few) {
            if (want.picks.length === slots && want.lastAt < few) fewFilled++;
            else sortedAll++;
          }
        },
      ),
      { numRuns: 600 },
    );
    // Both paths ran: the few best filling the slots, and the whole list sorted.
    expect(fewFilled).toBeGreaterThan(20);
    expect(sortedAll).toBeGreaterThan(20);
  });
});
