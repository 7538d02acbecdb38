import { describe, expect, it } from 'vitest';
import type { Deployment, Node, NodeRole, Role } from '../../generated/crowbar.ts';
import {
  buildWorld,
  childrenIndex,
  deploymentChain,
  nodeOfNoderoleName,
  toDeploymentView,
  toNodeRoleView,
  toNodeView,
  toRoleView,
} from './world.ts';

const meta = (name: string) => ({ name });

describe('views from custom resources (CRD defaults applied)', () => {
  it('a bare Node is not admin, not available, not alive, in system', () => {
    const n: Node = {
      apiVersion: 'crowbar.dev/v1alpha1',
      kind: 'Node',
      metadata: meta('n1.lab.example.com'),
      spec: {},
    };
    expect(toNodeView(n)).toEqual({
      name: 'n1.lab.example.com',
      admin: false,
      available: false,
      alive: false,
      system: false,
      deployment: 'system',
      proposed: false,
    });
  });

  it('a bare NodeRole is proposed, available, cohort 0, no parents', () => {
    const nr: NodeRole = {
      apiVersion: 'crowbar.dev/v1alpha1',
      kind: 'NodeRole',
      metadata: meta('dns-client.n1.lab.example.com'),
      spec: { node: 'n1.lab.example.com', role: 'dns-client', deployment: 'system' },
    };
    expect(toNodeRoleView(nr)).toMatchObject({
      state: 'proposed',
      available: true,
      cohort: 0,
      parents: [],
      runCount: 0,
      retry: 0,
      observedRetry: 0,
    });
  });

  it('a bare Role has empty lists and flags', () => {
    const r: Role = {
      apiVersion: 'crowbar.dev/v1alpha1',
      kind: 'Role',
      metadata: meta('x'),
      spec: { jig: 'noop', flags: ['implicit'] },
    };
    const v = toRoleView(r);
    expect([v.requires, v.conflicts, v.provides, [...v.flags]]).toEqual([[], [], [], ['implicit']]);
  });

  it('a Deployment without state is proposed, except system', () => {
    const d = (name: string): Deployment => ({
      apiVersion: 'crowbar.dev/v1alpha1',
      kind: 'Deployment',
      metadata: meta(name),
      spec: {},
    });
    expect(toDeploymentView(d('lab')).state).toBe('proposed');
    expect(toDeploymentView(d('system')).state).toBe('committed');
  });
});

describe('world helpers', () => {
  const w = buildWorld({
    nodes: [],
    roles: [],
    deployments: [
      {
        apiVersion: 'crowbar.dev/v1alpha1',
        kind: 'Deployment',
        metadata: meta('system'),
        spec: { state: 'committed' },
      },
      {
        apiVersion: 'crowbar.dev/v1alpha1',
        kind: 'Deployment',
        metadata: meta('d1'),
        spec: { parent: 'system' },
      },
      {
        apiVersion: 'crowbar.dev/v1alpha1',
        kind: 'Deployment',
        metadata: meta('loop'),
        spec: { parent: 'loop' },
      },
    ],
    noderoles: ['a', 'b', 'c'].map((r, i) => ({
      apiVersion: 'crowbar.dev/v1alpha1' as const,
      kind: 'NodeRole' as const,
      metadata: meta(`${r}.n1.lab.example.com`),
      spec: { node: 'n1.lab.example.com', role: r, deployment: 'system' },
      status: { parents: i === 0 ? [] : ['a.n1.lab.example.com'] },
    })),
  });

  it('indexes children by parent', () => {
    expect(Object.fromEntries(childrenIndex(w.noderoles))).toEqual({
      'a.n1.lab.example.com': ['b.n1.lab.example.com', 'c.n1.lab.example.com'],
    });
  });

  it('walks the deployment chain to the root and stops on a loop', () => {
    expect(deploymentChain(w, 'd1')).toEqual(['d1', 'system']);
    expect(deploymentChain(w, 'loop')).toEqual(['loop']);
  });

  it('splits the node out of a noderole name', () => {
    expect(nodeOfNoderoleName('dns-client.n1.lab.example.com')).toBe('n1.lab.example.com');
  });
});
