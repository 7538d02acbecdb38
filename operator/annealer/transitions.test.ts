import { describe, expect, it } from 'vitest';
import { applyChanges, withNode } from './apply.ts';
import { deployment, node, noderole, statesOf, world } from './fixtures.test-helper.ts';
import type { NodeRoleState, Outcome } from './states.ts';
import {
  block,
  commitDeployment,
  commitNode,
  commitNodeRole,
  nodeAlive,
  nodeDied,
  parentsChanged,
  propose,
  rerun,
  retry,
  toActive,
  toError,
  todo,
  toTransition,
} from './transitions.ts';
import type { World } from './world.ts';

const N1 = 'n1.lab.example.com';
const N2 = 'n2.lab.example.com';
// The graph: a.n1 → b.n1 → c.n1; a.n1 → d.n2; d.n2 and c.n1 → e.n2 (parents before children).
const names = { a: `a.${N1}`, b: `b.${N1}`, c: `c.${N1}`, d: `d.${N2}`, e: `e.${N2}` } as const;
type Short = keyof typeof names;

function graph(
  states: Partial<Record<Short, NodeRoleState>>,
  opts: { n1Alive?: boolean; d1?: boolean } = {},
): World {
  const s = (k: Short): NodeRoleState => states[k] ?? 'proposed';
  const inD1 = opts.d1 ? { deployment: 'd1' } : {};
  return world({
    nodes: [node(N1, { alive: opts.n1Alive ?? true }), node(N2)],
    deployments: [deployment('system'), deployment('d1')],
    noderoles: [
      noderole('a', N1, { state: s('a') }),
      noderole('b', N1, { state: s('b'), parents: [names.a], cohort: 1 }),
      noderole('c', N1, { state: s('c'), parents: [names.b], cohort: 2 }),
      noderole('d', N2, { state: s('d'), parents: [names.a], cohort: 1, ...inD1 }),
      noderole('e', N2, { state: s('e'), parents: [names.d, names.c], cohort: 3, ...inD1 }),
    ],
  });
}

interface Row {
  rule: string;
  start: Partial<Record<Short, NodeRoleState>>;
  opts?: { n1Alive?: boolean; d1?: boolean };
  act: (w: World) => Outcome;
  /** Expected states of the noderoles that change; the rest must keep their start state. */
  expect?: Partial<Record<Short, NodeRoleState>>;
  messages?: Partial<Record<Short, RegExp>>;
  refused?: RegExp;
}

const rows: Row[] = [
  // §3.6 poke after an edit of the run input: the noderole and its descendants run again.
  {
    rule: 'rerun: an active root goes to todo and every active descendant is blocked',
    start: { a: 'active', b: 'active', c: 'active', d: 'active', e: 'active' },
    act: (w) => rerun(w, names.a, 'its run input changed (x); runs again'),
    expect: { a: 'todo', b: 'blocked', c: 'blocked', d: 'blocked', e: 'blocked' },
    messages: {
      a: /^its run input changed \(x\); runs again$/,
      b: /^waiting for parent a\.n1\.lab\.example\.com \(todo\)$/,
      e: /^waiting for parent d\.n2\.lab\.example\.com \(blocked\)$/,
    },
  },
  {
    rule: 'rerun: a middle noderole takes only its own descendants',
    start: { a: 'active', b: 'active', c: 'active', d: 'active', e: 'active' },
    act: (w) => rerun(w, names.b, 'edited'),
    expect: { b: 'todo', c: 'blocked', e: 'blocked' },
  },
  {
    rule: 'rerun: leaves a proposed or running descendant alone',
    start: { a: 'active', b: 'transition', c: 'proposed', d: 'active', e: 'active' },
    act: (w) => rerun(w, names.a, 'edited'),
    expect: { a: 'todo', d: 'blocked', e: 'blocked' },
  },
  {
    rule: 'rerun: does nothing to a noderole that is not active (it runs with fresh input anyway)',
    start: { a: 'error', b: 'blocked' },
    act: (w) => rerun(w, names.a, 'edited'),
    expect: {},
  },
  // §2.2 commit!
  {
    rule: 'commit!: a proposed root goes to todo',
    start: {},
    act: (w) => commitNodeRole(w, names.a),
    expect: { a: 'todo' },
  },
  {
    rule: 'commit!: a parent not active blocks',
    start: { a: 'todo' },
    act: (w) => commitNodeRole(w, names.b),
    expect: { b: 'blocked' },
    messages: { b: /^waiting for parent a\.n1\.lab\.example\.com \(todo\)$/ },
  },
  {
    rule: 'commit!: all parents active gives todo',
    start: { a: 'active' },
    act: (w) => commitNodeRole(w, names.d),
    expect: { d: 'todo' },
  },
  {
    rule: 'commit!: not proposed changes nothing',
    start: { a: 'error' },
    act: (w) => commitNodeRole(w, names.a),
    expect: {},
  },
  // §2.5 commit of a deployment / node
  {
    rule: 'deployment commit: roots todo, the rest blocked',
    start: {},
    act: (w) => commitDeployment(w, 'system'),
    expect: { a: 'todo', b: 'blocked', c: 'blocked', d: 'blocked', e: 'blocked' },
    messages: {
      b: /waiting for parent a\.n1.* \(todo\)/,
      c: /waiting for parent b\.n1.* \(blocked\)/,
    },
  },
  {
    rule: 'deployment commit: children of active parents go to todo',
    start: { a: 'active' },
    act: (w) => commitDeployment(w, 'system'),
    expect: { b: 'todo', c: 'blocked', d: 'todo', e: 'blocked' },
  },
  {
    rule: 'deployment commit: only that deployment',
    start: { a: 'active' },
    opts: { d1: true },
    act: (w) => commitDeployment(w, 'd1'),
    expect: { d: 'todo', e: 'blocked' },
  },
  {
    rule: 'node commit: only that node',
    start: { a: 'active' },
    act: (w) => commitNode(w, N2),
    expect: { d: 'todo', e: 'blocked' },
  },
  // §2.2 todo!
  {
    rule: 'todo!: refused unless activatable',
    start: { a: 'todo', b: 'blocked' },
    act: (w) => todo(w, names.b),
    refused: /waiting for parent a\.n1.* \(todo\)/,
  },
  {
    rule: 'todo!: children in todo or error are blocked, recursively',
    start: { a: 'active', b: 'error', c: 'todo', d: 'active', e: 'todo' },
    act: (w) => todo(w, names.b),
    expect: { b: 'todo', c: 'blocked', e: 'blocked' },
  },
  // §2.2 block!
  {
    rule: 'block!: children in todo or error follow, recursively',
    start: { a: 'active', b: 'todo', c: 'todo', d: 'error', e: 'todo' },
    act: (w) => block(w, names.a),
    expect: { a: 'blocked', b: 'blocked', c: 'blocked', d: 'blocked', e: 'blocked' },
  },
  {
    rule: 'block!: active, transition and proposed children are left alone',
    start: { a: 'active', b: 'active', c: 'todo', d: 'transition', e: 'proposed' },
    act: (w) => block(w, names.a),
    expect: { a: 'blocked' },
  },
  // §2.2 transition!
  {
    rule: 'transition!: from todo',
    start: { a: 'todo' },
    act: (w) => toTransition(w, names.a),
    expect: { a: 'transition' },
  },
  {
    rule: 'transition!: from active (re-run)',
    start: { a: 'active' },
    act: (w) => toTransition(w, names.a),
    expect: { a: 'transition' },
  },
  {
    rule: 'transition!: refused from blocked',
    start: { a: 'active', b: 'blocked' },
    act: (w) => toTransition(w, names.b),
    refused: /is blocked/,
  },
  {
    rule: 'transition!: refused from error',
    start: { a: 'error' },
    act: (w) => toTransition(w, names.a),
    refused: /is error/,
  },
  {
    rule: 'transition!: refused from proposed',
    start: {},
    act: (w) => toTransition(w, names.a),
    refused: /is proposed/,
  },
  // §2.2 active! and §2.3 ripple
  {
    rule: 'active!: unblocks direct children that are now activatable',
    start: { a: 'transition', b: 'blocked', c: 'blocked', d: 'blocked', e: 'blocked' },
    act: (w) => toActive(w, names.a),
    expect: { a: 'active', b: 'todo', d: 'todo' },
  },
  {
    rule: 'active!: a child with another parent not active stays blocked',
    start: { a: 'active', b: 'active', c: 'transition', d: 'todo', e: 'blocked' },
    act: (w) => toActive(w, names.c),
    expect: { c: 'active' },
  },
  {
    rule: 'active!: refused unless in transition',
    start: { a: 'todo' },
    act: (w) => toActive(w, names.a),
    refused: /only a running noderole/,
  },
  {
    rule: 'active!: node not alive does block_or_todo (todo)',
    start: { a: 'transition' },
    opts: { n1Alive: false },
    act: (w) => toActive(w, names.a),
    expect: { a: 'todo' },
    messages: { a: /node n1\.lab\.example\.com is not alive/ },
  },
  {
    rule: 'active!: node not alive does block_or_todo (blocked)',
    start: { a: 'todo', b: 'transition' },
    opts: { n1Alive: false },
    act: (w) => toActive(w, names.b),
    expect: { b: 'blocked' },
  },
  // §2.2 error!
  {
    rule: 'error!: ignored when blocked',
    start: { a: 'todo', b: 'blocked' },
    act: (w) => toError(w, names.b, 'boom'),
    expect: {},
  },
  {
    rule: 'error!: transitive children not proposed or transition are blocked',
    start: { a: 'transition', b: 'active', c: 'transition', d: 'proposed', e: 'active' },
    act: (w) => toError(w, names.a, 'exit 1'),
    expect: { a: 'error', b: 'blocked', e: 'blocked' },
    messages: {
      a: /^exit 1$/,
      b: /a\.n1\.lab\.example\.com is in error/,
      e: /a\.n1\.lab\.example\.com is in error/,
    },
  },
  {
    rule: 'error!: children already in error are blocked too',
    start: { a: 'active', b: 'transition', c: 'error', d: 'active', e: 'todo' },
    act: (w) => toError(w, names.b, 'boom'),
    expect: { b: 'error', c: 'blocked', e: 'blocked' },
  },
  // §2.2 API retry (todo! from error)
  {
    rule: 'retry: from error with parents active goes to todo and blocks todo/error children',
    start: { a: 'active', b: 'error', c: 'todo', d: 'active', e: 'blocked' },
    act: (w) => retry(w, names.b),
    expect: { b: 'todo', c: 'blocked' },
  },
  {
    rule: 'retry: refused unless in error',
    start: { a: 'active' },
    act: (w) => retry(w, names.a),
    refused: /only a noderole in error/,
  },
  {
    rule: 'retry: refused while a parent is not active',
    start: { a: 'error', b: 'error' },
    act: (w) => retry(w, names.b),
    refused: /waiting for parent a\.n1.* \(error\)/,
  },
  // §2.2 propose!
  {
    rule: 'propose!: children untouched',
    start: { a: 'active', b: 'active', c: 'todo' },
    act: (w) => propose(w, names.a),
    expect: { a: 'proposed' },
  },
  // §2.4 node death
  {
    rule: 'node death: roots todo, descendants on the node blocked, other nodes untouched',
    start: { a: 'active', b: 'active', c: 'active', d: 'active', e: 'active' },
    act: (w) => nodeDied(w, N1),
    expect: { a: 'todo', b: 'blocked', c: 'blocked' },
    messages: { a: /node n1\.lab\.example\.com is not alive/, b: /waiting for parent a\.n1/ },
  },
  {
    rule: 'node death: a noderole whose parents live elsewhere goes to todo',
    start: { a: 'active', b: 'active', c: 'active', d: 'active', e: 'active' },
    act: (w) => nodeDied(w, N2),
    expect: { d: 'todo', e: 'blocked' },
  },
  {
    rule: 'node death: proposed stays, transition and error deactivate',
    start: { a: 'error', b: 'proposed', c: 'transition', d: 'active', e: 'active' },
    act: (w) => nodeDied(w, N1),
    expect: { a: 'todo', c: 'blocked' },
  },
  {
    rule: 'node alive: no state changes',
    start: { a: 'todo', b: 'blocked' },
    act: (w) => nodeAlive(w, N1),
    expect: {},
  },
  // Edges added by binding keep "todo implies activatable".
  {
    rule: 'parents changed: a todo noderole with a parent not active is blocked',
    start: { a: 'todo', b: 'todo' },
    act: (w) => parentsChanged(w, [names.a, names.b]),
    expect: { b: 'blocked' },
  },
];

describe('noderole state machine (§2.2–§2.5)', () => {
  it.each(rows)('$rule', (row) => {
    const before = graph(row.start, row.opts);
    const snapshot = JSON.stringify(statesOf(before));
    const outcome = row.act(before);
    expect(JSON.stringify(statesOf(before)), 'input is not mutated').toBe(snapshot);
    if (row.refused) {
      expect(outcome.ok).toBe(false);
      if (!outcome.ok) expect(outcome.reason).toMatch(row.refused);
      return;
    }
    expect(outcome.ok, outcome.ok ? '' : outcome.reason).toBe(true);
    if (!outcome.ok) return;
    const after = applyChanges(before, outcome.changes);
    const expected = Object.fromEntries(
      (Object.keys(names) as Short[]).map((k) => [
        names[k],
        row.expect?.[k] ?? row.start[k] ?? 'proposed',
      ]),
    );
    expect(statesOf(after)).toEqual(expected);
    for (const [k, re] of Object.entries(row.messages ?? {}) as [Short, RegExp][]) {
      expect(after.noderoles.get(names[k])?.message).toMatch(re);
    }
  });

  it('active! counts the run; a refused or dead-node finish does not', () => {
    const w = graph({ a: 'transition' });
    const done = toActive(w, names.a);
    expect(done.ok && done.changes.find((c) => c.name === names.a)?.runCount).toBe(1);
    const dead = toActive(withNode(w, N1, { alive: false }), names.a);
    expect(dead.ok && dead.changes.every((c) => c.runCount === undefined)).toBe(true);
  });

  it('a system node counts as alive when a run finishes', () => {
    const w = withNode(graph({ a: 'transition' }), N1, { alive: false, system: true });
    const out = toActive(w, names.a);
    expect(out.ok && statesOf(applyChanges(w, out.changes))[names.a]).toBe('active');
  });

  it('retry records the retry value it acted on', () => {
    const base = graph({ a: 'active', b: 'error' });
    const b = base.noderoles.get(names.b);
    const w: World = {
      ...base,
      noderoles: new Map(base.noderoles).set(names.b, { ...b!, retry: 3 }),
    };
    const out = retry(w, names.b);
    expect(out.ok && out.changes.find((c) => c.name === names.b)?.observedRetry).toBe(3);
  });

  it('refuses unknown names with a message', () => {
    const w = graph({});
    for (const out of [
      toActive(w, 'x.n9.lab.example.com'),
      nodeDied(w, 'n9.lab.example.com'),
      commitDeployment(w, 'nope'),
    ]) {
      expect(out.ok).toBe(false);
      if (!out.ok) expect(out.reason).toMatch(/does not exist/);
    }
  });
});
