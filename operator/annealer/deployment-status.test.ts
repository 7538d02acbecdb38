import { describe, expect, it } from 'vitest';
import { deploymentSummary, nodeState } from './deployment-status.ts';
import { deployment, noderole } from './fixtures.test-helper.ts';
import type { NodeRoleState } from './states.ts';

const N = 'n1.lab.example.com';
const nrs = (states: NodeRoleState[], dep = 'd1') =>
  states.map((s, i) => noderole(`r${i}`, N, { state: s, deployment: dep }));

describe('deploymentSummary (§1.5)', () => {
  it.each([
    { spec: 'proposed' as const, states: ['active', 'error'] as NodeRoleState[], want: 'proposed' },
    { spec: 'committed' as const, states: ['active', 'active'] as NodeRoleState[], want: 'active' },
    { spec: 'committed' as const, states: [] as NodeRoleState[], want: 'active' },
    {
      spec: 'committed' as const,
      states: ['active', 'error', 'todo'] as NodeRoleState[],
      want: 'error',
    },
    {
      spec: 'committed' as const,
      states: ['active', 'blocked', 'todo'] as NodeRoleState[],
      want: 'committed',
    },
  ])('$spec with $states is $want', ({ spec, states, want }) => {
    expect(deploymentSummary(deployment('d1', { state: spec }), nrs(states)).state).toBe(want);
  });

  it('counts only its own noderoles, per state', () => {
    const summary = deploymentSummary(deployment('d1'), [
      ...nrs(['active', 'todo', 'todo']),
      ...nrs(['error'], 'other'),
    ]);
    expect(summary.counts).toEqual({
      total: 3,
      active: 1,
      todo: 2,
      blocked: 0,
      transition: 0,
      proposed: 0,
      error: 0,
    });
    expect(summary.state).toBe('committed');
  });
});

describe('nodeState (§1.1)', () => {
  it.each([
    { states: ['active', 'todo', 'error', 'transition'] as NodeRoleState[], want: 'error' },
    { states: ['active', 'transition', 'proposed'] as NodeRoleState[], want: 'transition' },
    { states: ['active', 'proposed', 'blocked'] as NodeRoleState[], want: 'proposed' },
    { states: ['active', 'blocked'] as NodeRoleState[], want: 'todo' },
    { states: ['todo'] as NodeRoleState[], want: 'todo' },
    { states: ['active'] as NodeRoleState[], want: 'active' },
    { states: [] as NodeRoleState[], want: 'active' },
  ])('$states is $want', ({ states, want }) => {
    expect(nodeState(nrs(states))).toBe(want);
  });
});
