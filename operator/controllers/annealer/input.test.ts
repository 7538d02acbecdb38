import { describe, expect, it } from 'vitest';
import type { Deployment, Node, NodeRole, Role } from '../../../generated/crowbar.ts';
import { ancestors, inputDigest, runInput } from './input.ts';

const meta = (name: string) => ({ name });
const nodeOf = (name: string): Node => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Node',
  metadata: meta(name),
  spec: { hints: { h: 1 } },
});
function nr(
  role: string,
  node: string,
  o: { parents?: string[]; cohort?: number; wall?: object; data?: object; dep?: string } = {},
): NodeRole {
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'NodeRole',
    metadata: meta(`${role}.${node}`),
    spec: { role, node, deployment: o.dep ?? 'd', ...(o.data ? { data: o.data as never } : {}) },
    status: {
      state: 'active',
      parents: o.parents ?? [],
      cohort: o.cohort ?? 0,
      wall: (o.wall ?? {}) as never,
      ...(o.data ? { committedData: o.data as never } : {}),
    },
  };
}
const roleOf = (name: string, spec: Partial<Role['spec']> = {}): Role => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Role',
  metadata: meta(name),
  spec: { jig: 'test', ...spec },
});
const deps: Record<string, Deployment> = {
  system: {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Deployment',
    metadata: meta('system'),
    spec: { state: 'committed', data: { level: 'system', sys: true } },
  },
  d: {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Deployment',
    metadata: meta('d'),
    spec: { parent: 'system', state: 'committed', data: { level: 'd' } },
  },
};

/**
 * a.n1 (cohort 0) <- b.n1 (1) <- top.n1 (3); srv.n2 (0) <- c.n1 (2) <- top.n1. Two parents of
 * equal cohort on n1 (b2, b3) test the tie rule.
 */
function world(topRole: Role, topData?: object) {
  const all = [
    nr('a', 'n1', { wall: { v: 'a', only: { a: 1 }, deep: { x: 'a', y: 'a' } } }),
    nr('b', 'n1', { parents: ['a.n1'], cohort: 1, wall: { v: 'b', deep: { x: 'b' } } }),
    nr('srv', 'n2', { wall: { v: 'srv', dns: { servers: ['10.0.0.1'] }, secret: 'no' } }),
    nr('c', 'n1', { parents: ['srv.n2', 'b.n1'], cohort: 2, wall: { tie: 'c' } }),
    nr('e', 'n1', { parents: ['b.n1'], cohort: 2, wall: { tie: 'e' } }),
    nr('top', 'n1', {
      parents: ['c.n1', 'e.n1'],
      cohort: 3,
      ...(topData ? { data: topData } : {}),
    }),
  ];
  const byName = new Map(all.map((x) => [x.metadata.name ?? '', x]));
  const top = byName.get('top.n1');
  if (!top) throw new Error('no top');
  return runInput({
    noderole: top,
    role: topRole,
    node: nodeOf('n1'),
    getDeployment: (d) => deps[d],
    get: (n) => byName.get(n),
  });
}

describe('run input (§4.1)', () => {
  it("merges same-node ancestors' walls farthest first; another node only through wants", () => {
    const input = world(roleOf('top'));
    expect(input['v']).toBe('b'); // b (cohort 1) is closer than a (cohort 0)
    expect(input['deep']).toEqual({ x: 'b', y: 'a' });
    expect(input['only']).toEqual({ a: 1 });
    expect(input['dns']).toBeUndefined(); // srv.n2 is on another node, not wanted
    expect(input['secret']).toBeUndefined();
    const wanting = world(roleOf('top', { wants: ['dns/servers'] }));
    expect(wanting['dns']).toEqual({ servers: ['10.0.0.1'] });
    expect(wanting['secret']).toBeUndefined();
    expect(wanting['v']).toBe('b'); // same-node walls win over wanted data
  });

  it('breaks a cohort tie by name: the later name wins', () => {
    expect(world(roleOf('top'))['tie']).toBe('e');
  });

  it("lets the noderole's own data win: template, deployment chain, committed data", () => {
    const input = world(roleOf('top', { template: { v: 'template', t: 1, level: 'template' } }), {
      t: 2,
    });
    expect(input['v']).toBe('template'); // template over ancestors' walls
    expect(input['level']).toBe('d'); // the deployment's data over its parent's and the template
    expect(input['sys']).toBe(true);
    expect(input['t']).toBe(2); // committed data over everything
    expect(input['crowbar']).toMatchObject({ node: 'n1', role: 'top', hints: { h: 1 } });
  });

  it('lists each ancestor once, in (cohort, name) order, and survives a cycle', () => {
    const a = nr('a', 'n', { parents: ['b.n'] });
    const b = nr('b', 'n', { parents: ['a.n'], cohort: 1 });
    const m = new Map([
      ['a.n', a],
      ['b.n', b],
    ]);
    expect(ancestors('b.n', (n) => m.get(n)).map((x) => x.metadata.name)).toEqual(['a.n']);
  });

  it('digests equal data equally whatever the key order', () => {
    expect(inputDigest({ a: 1, b: { c: 2, d: [1, 2] } })).toBe(
      inputDigest({ b: { d: [1, 2], c: 2 }, a: 1 }),
    );
    expect(inputDigest({ a: 1 })).not.toBe(inputDigest({ a: 2 }));
  });
});
