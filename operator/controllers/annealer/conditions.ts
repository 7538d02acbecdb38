/** The NodeRole's human-facing conditions, derived from its state and message. */
import type { NodeRoleState } from '../../annealer/states.ts';
import type { Condition, ConditionUpdate } from '../../kube/condition.ts';

export type { Condition };

const REASONS: Record<NodeRoleState, { status: Condition['status']; reason: string }> = {
  proposed: { status: 'False', reason: 'Proposed' },
  todo: { status: 'False', reason: 'WaitingToRun' },
  blocked: { status: 'False', reason: 'BlockedBy' },
  transition: { status: 'Unknown', reason: 'Running' },
  active: { status: 'True', reason: 'Succeeded' },
  error: { status: 'False', reason: 'RunFailed' },
};

/**
 * `Active` (the annealer's own: True when the last run succeeded and nothing blocks it) and
 * `Ready`, the type `kubectl wait --for=condition=Ready` looks for, with the same meaning.
 */
export function annealerConditions(state: NodeRoleState, message: string): ConditionUpdate[] {
  const r = REASONS[state];
  const m = message || state;
  return [
    { type: 'Active', status: r.status, reason: r.reason, message: m },
    { type: 'Ready', status: r.status, reason: r.reason, message: m },
  ];
}
