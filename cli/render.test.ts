import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { checkGraphPng } from '../test/harness/graph-png.ts';
import type { Deployment, Node, NodeRole } from '../generated/crowbar.ts';
import {
  countStates,
  deploymentTree,
  progressBar,
  renderDot,
  renderLogs,
  renderStatus,
  whyReasons,
  type State,
} from './render.ts';

const dep = (
  name: string,
  parent?: string,
  state: 'proposed' | 'committed' = 'committed',
): Deployment => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Deployment',
  metadata: { name },
  spec: { state, ...(parent !== undefined ? { parent } : {}) },
});

const nr = (
  name: string,
  state: State,
  extra: {
    node?: string;
    deployment?: string;
    parents?: string[];
    cohort?: number;
    message?: string;
    logTail?: string;
    role?: string;
  } = {},
): NodeRole => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'NodeRole',
  metadata: { name },
  spec: {
    node: extra.node ?? 'n1.lab.example.com',
    role: extra.role ?? name.split('.')[0] ?? '',
    deployment: extra.deployment ?? 'system',
  },
  status: {
    state,
    cohort: extra.cohort ?? 0,
    parents: extra.parents ?? [],
    ...(extra.message !== undefined ? { message: extra.message } : {}),
    ...(extra.logTail !== undefined ? { run: { number: 1, logTail: extra.logTail } } : {}),
  },
});

const node = (spec: Node['spec'], alive = true): Node => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Node',
  metadata: { name: 'n1.lab.example.com' },
  spec,
  status: { alive },
});

describe('progressBar', () => {
  it.each([
    [0, 4, '[....................]   0%'],
    [1, 4, '[#####...............]  25%'],
    [4, 4, '[####################] 100%'],
    [0, 0, '[####################] 100%'],
  ])('%i of %i', (a, t, want) => {
    expect(progressBar(a, t)).toBe(want);
  });
});

describe('deploymentTree', () => {
  it('walks from system, children by name, orphans as roots, one subtree on request', () => {
    const deps = [
      dep('system'),
      dep('b', 'system'),
      dep('a', 'system'),
      dep('c', 'a'),
      dep('o', 'gone'),
    ];
    expect(deploymentTree(deps).map((r) => `${String(r.depth)}${r.name}`)).toEqual([
      '0o',
      '0system',
      '1a',
      '2c',
      '1b',
    ]);
    expect(deploymentTree(deps, 'a').map((r) => r.name)).toEqual(['a', 'c']);
  });
});

describe('renderStatus', () => {
  it('counts per deployment and lists errors with their log tail', () => {
    const text = renderStatus(
      [dep('system'), dep('lab', 'system')],
      [
        nr('a.n1', 'active', { deployment: 'lab' }),
        nr('b.n1', 'error', { deployment: 'lab', message: 'disk not found', logTail: 'l1\nl2\n' }),
        nr('c.n1', 'todo'),
      ],
    );
    expect(text).toMatch(/^system .* 0\/1 /m);
    expect(text).toMatch(/└ lab .*\[##########\.\.\.\.\.\.\.\.\.\.\] {2}50%\s+1\/2/m);
    expect(text).toContain('NODEROLES IN ERROR (1)');
    expect(text).toContain('✗ b.n1: disk not found\n    | l1\n    | l2');
  });
  it('counts noderoles without a state as proposed', () => {
    const x = nr('x', 'todo');
    delete x.status;
    expect(countStates([x])).toMatchObject({ total: 1, proposed: 1 });
  });
});

describe('whyReasons', () => {
  const base = { deployment: dep('system'), maxConcurrentRuns: 2 };
  it('names parents not active, a dead or unavailable node, a proposed deployment', () => {
    const me = nr('top.n1', 'blocked', { parents: ['mid.n1'] });
    const r = whyReasons({
      ...base,
      nr: me,
      node: node({ available: false }, false),
      deployment: dep('system', undefined, 'proposed'),
      all: [me, nr('mid.n1', 'error')],
    });
    expect(r.join('\n')).toMatch(/parent mid.n1 is error/);
    expect(r.join('\n')).toMatch(/not alive/);
    expect(r.join('\n')).toMatch(/not available/);
    expect(r.join('\n')).toMatch(/deployment system is proposed/);
    expect(r.join('\n')).toMatch(/has mid.n1 in error/);
  });
  it('counts the todo noderoles ahead in (cohort, name) order and the run slots', () => {
    const me = nr('m.n1', 'todo', { cohort: 1 });
    const all = [
      me,
      nr('a.n2', 'todo', { node: 'n2', cohort: 1 }),
      nr('z.n3', 'todo', { node: 'n3', cohort: 0 }),
      nr('b.n4', 'todo', { node: 'n4', cohort: 2 }),
      nr('r.n5', 'transition', { node: 'n5' }),
      nr('r.n6', 'transition', { node: 'n6' }),
    ];
    const r = whyReasons({ ...base, nr: me, node: node({ available: true }), all });
    expect(r).toEqual([
      'run queue: 2 of 2 run slots in use, 2 todo noderole(s) ahead in (cohort, name) order',
    ]);
  });
  it('quotes the Addressed condition of a network role', () => {
    const me = nr('network-admin.n1', 'todo', { role: 'network-admin' });
    me.status = {
      ...me.status,
      conditions: [
        {
          type: 'Addressed',
          status: 'False',
          reason: 'RangeFull',
          message: 'range host is full',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
    };
    const r = whyReasons({ ...base, nr: me, node: node({ available: true }), all: [me] });
    expect(r).toEqual(['network admin: Addressed=False (RangeFull): range host is full']);
  });
  it('says when a network role’s node lists no address on its network yet', () => {
    const me = nr('network-admin.n1', 'todo', { role: 'network-admin' });
    const bare = node({ available: true });
    expect(whyReasons({ ...base, nr: me, node: bare, all: [me] })).toEqual([
      'network admin: node n1.lab.example.com lists no address on it yet (the allocator has not allocated one)',
    ]);
    const addressed = {
      ...bare,
      status: {
        ...bare.status,
        addresses: [{ network: 'admin', address: '192.168.124.81/24', family: 'ipv4' as const }],
      },
    };
    expect(whyReasons({ ...base, nr: me, node: addressed, all: [me] })).toEqual([]);
  });
  it('has nothing to say about an active noderole', () => {
    const me = nr('a.n1', 'active');
    expect(whyReasons({ ...base, nr: me, node: undefined, all: [me] })).toEqual([]);
  });
});

describe('renderLogs', () => {
  it('prints the run facts and the tail, or says it has not run', () => {
    const x = nr('a.n1', 'error');
    x.status = {
      ...x.status,
      run: {
        number: 3,
        result: 'failed',
        exitCode: 2,
        started: 's',
        finished: 'f',
        logTail: 'boom\n',
      },
    };
    expect(renderLogs(x)).toBe(
      'run 3 of a.n1: failed, exit code 2\nstarted:  s\nfinished: f\n--- log tail ---\nboom\n',
    );
    expect(renderLogs(nr('b.n1', 'todo'))).toMatch(/has not run yet/);
  });
});

describe('renderDot', () => {
  it('clusters by node, colours by state, draws parent edges once', () => {
    const dot = renderDot([
      nr('base.n1', 'active'),
      nr('top.n1', 'error', { parents: ['base.n1', 'missing.n9'], cohort: 1 }),
      nr('base.n2', 'todo', { node: 'n2.lab.example.com' }),
    ]);
    expect(dot.match(/subgraph cluster_/g)).toHaveLength(2);
    expect(dot).toContain('"base.n1" -> "top.n1";');
    expect(dot).not.toContain('missing.n9');
    expect(dot).toContain('fillcolor="#f08080"');
    expect(dot.trim().endsWith('}')).toBe(true);
  });
});

describe('renderDot at 100 noderoles', () => {
  it('draws every box in its colour and every edge, at a size a screen shows without shrinking', () => {
    // 10 nodes x 10 roles in a chain on each node, each node's first role under the admin's.
    const states: State[] = ['active', 'todo', 'blocked', 'transition', 'error', 'proposed'];
    const nrs: NodeRole[] = [];
    for (let n = 0; n < 10; n++)
      for (let r = 0; r < 10; r++) {
        const node = `node${String(n)}.lab.example.com`;
        const parents =
          r > 0 ? [`r${String(r - 1)}.${node}`] : n > 0 ? ['r0.node0.lab.example.com'] : [];
        nrs.push(
          nr(`r${String(r)}.${node}`, states[(n + r) % states.length] ?? 'active', {
            node,
            parents,
            cohort: r,
            role: `role-${String(r)}`,
          }),
        );
      }
    const dot = renderDot(nrs);
    const png = spawnSync('dot', ['-Tpng'], { input: dot, maxBuffer: 64 * 1024 * 1024 });
    expect(png.status).toBe(0);
    const seen = checkGraphPng(png.stdout, dot);
    expect(seen).toMatchObject({ nodes: 100, edges: 99, missing: [] });
    // At Graphviz's 96 dpi the 10-point labels are readable when the picture is shown unscaled:
    // 100 noderoles fit a 4K screen (about 1,300 x 1,100 pixels here).
    expect(seen.width).toBeLessThanOrEqual(3840);
    expect(seen.height).toBeLessThanOrEqual(2160);
  });
});
