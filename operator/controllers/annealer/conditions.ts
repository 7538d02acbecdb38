/** The NodeRole's human-facing condition, derived from its state and message. */
import type { NodeRoleState } from '../../annealer/states.ts';
import type { Condition } from '../../kube/condition.ts';

export type { Condition };

const REASONS: Record<NodeRoleState, { status: Condition['status']; reason: string }> = {
  proposed: { status: 'False', reason: 'Proposed' },
  todo: { status: 'False', reason: 'WaitingToRun' },
  blocked: { status: 'False', reason: 'BlockedBy' },
  transition: { status: 'Unknown', reason: 'Running' },
  active: { status: 'True', reason: 'Succeeded' },
  error: { status: 'False', reason: 'RunFailed' },
};

/** The `Active` condition: True when the noderole's last run succeeded and nothing blocks it. */
export function activeCondition(state: NodeRoleState, message: string, now: Date): Condition {
  const r = REASONS[state];
  return {
    type: 'Active',
    status: r.status,
    reason: r.reason,
    message: message || state,
    lastTransitionTime: now.toISOString(),
  };
}
