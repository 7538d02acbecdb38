import { describe, expect, it } from 'vitest';
import type { Deployment, Node, NodeRole, Role } from '../generated/crowbar.ts';
import { convergedSummary, convergence, type LabSnapshot } from './converge.ts';

const ADMIN = 'admin.lab';
const want = { deployments: ['system', 'lab'], adminNode: ADMIN, minNodes: 2 };

const role = (name: string, flags: string[] = []): Role =>
  ({ metadata: { name }, spec: { jig: 'noop', flags } }) as Role;
const nr = (role: string, node: string, state: string, message?: string): NodeRole =>
  ({
    metadata: { name: `${role}.${node}` },
    spec: { role, node, deployment: 'system' },
    status: { state, ...(message ? { message } : {}) },
  }) as NodeRole;
const node = (name: string, state = 'active', alive = true): Node =>
  ({ metadata: { name }, spec: {}, status: { state, alive } }) as Node;
const dep = (name: string, state = 'active', counts?: object): Deployment =>
  ({
    metadata: { name },
    spec: {},
    status: { state, ...(counts ? { counts } : {}) },
  }) as Deployment;

function world(over: Partial<LabSnapshot> = {}): LabSnapshot {
  return {
    roles: [role('dns-server', ['bootstrap']), role('dns-client')],
    noderoles: [nr('dns-server', ADMIN, 'active'), nr('dns-client', 'n1.lab', 'active')],
    nodes: [node(ADMIN), node('n1.lab')],
    deployments: [dep('system'), dep('lab')],
    ...over,
  };
}

describe('lab convergence', () => {
  it('is converged when everything is active and bootstrap roles sit on the admin node', () => {
    const c = convergence(world(), want);
    expect(c.pending).toEqual([]);
    expect(c.converged).toBe(true);
    expect(convergedSummary(c)).toBe('2 deployments active, 2 nodes active, 2 noderoles active');
  });

  it('says what is not active and why', () => {
    const c = convergence(
      world({
        noderoles: [
          nr('dns-server', ADMIN, 'active'),
          nr('dns-client', 'n1.lab', 'todo', 'committed; all parents are active; waiting to run'),
        ],
        nodes: [node(ADMIN), node('n1.lab', 'todo', false)],
        deployments: [dep('system', 'committed', { total: 2, active: 1, todo: 1 })],
      }),
      want,
    );
    expect(c.converged).toBe(false);
    expect(c.pending).toEqual([
      'noderole dns-client.n1.lab: todo (committed; all parents are active; waiting to run)',
      'deployment lab: missing',
      'deployment system: committed (1/2 noderoles active, 1 todo)',
      'node n1.lab: todo, not alive',
    ]);
  });

  it('wants each bootstrap role on the admin node, and only there', () => {
    const elsewhere = convergence(
      world({ noderoles: [nr('dns-server', 'n1.lab', 'active')] }),
      want,
    );
    expect(elsewhere.pending).toEqual([
      'role dns-server (bootstrap): not bound on the admin node admin.lab; bound on n1.lab',
    ]);
    const twice = convergence(
      world({
        noderoles: [nr('dns-server', ADMIN, 'active'), nr('dns-server', 'n1.lab', 'active')],
      }),
      want,
    );
    expect(twice.pending).toEqual([
      "role dns-server (bootstrap): also bound on n1.lab; clients should use the admin node's",
    ]);
  });

  it('counts missing nodes and an unplanned noderole', () => {
    const c = convergence(
      world({
        nodes: [node(ADMIN)],
        noderoles: [nr('dns-server', ADMIN, 'active'), { ...nr('x', ADMIN, 'active'), status: {} }],
      }),
      { ...want, minNodes: 4 },
    );
    expect(c.pending).toEqual(['noderole x.admin.lab: unplanned', 'nodes: 1 of the 4 expected']);
  });
});
