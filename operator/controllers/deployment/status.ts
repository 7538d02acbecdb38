/** Deployment status (§1.5): derived state and noderole counts per state, written when they change. */
import { deploymentSummary } from '../../annealer/deployment-status.ts';
import { toDeploymentView, toNodeRoleView } from '../../annealer/world.ts';
import { setConditions } from '../../kube/condition.ts';
import type { Controller, Manager } from '../../manager.ts';
import { DutyCycle } from '../../runtime/duty-cycle.ts';
import type { NodeRoleView } from '../annealer/view.ts';

export function deploymentStatusController(
  mgr: Manager,
  view: NodeRoleView,
  fieldManager: string,
): Controller {
  // A reconcile reads every noderole of its deployment: at most a twentieth of the time for it.
  const duty = new DutyCycle(0.05, 30_000);
  return {
    name: 'deployment-status',
    coalesceMs: 500,
    watches: {
      Deployment: (d) => [d.metadata.name ?? ''],
      NodeRole: (nr) => [nr.spec.deployment],
    },
    reconcile: async (name) => {
      const dep = mgr.caches.Deployment.get(name);
      if (!dep) {
        duty.forget(name);
        return undefined;
      }
      const wait = duty.wait(name, Date.now());
      if (wait > 0) return { requeueAfterMs: wait };
      const start = Date.now();
      const mine = view.by('deployment', name);
      const { state, counts } = deploymentSummary(toDeploymentView(dep), mine.map(toNodeRoleView));
      duty.ran(name, start, Date.now());
      const cur = dep.status;
      const same =
        cur?.state === state &&
        cur.observedGeneration === dep.metadata.generation &&
        JSON.stringify(cur.counts) === JSON.stringify(counts);
      if (same) return undefined;
      const message =
        state === 'error'
          ? `${counts.error} noderole(s) in error`
          : state === 'active'
            ? `all ${counts.total} noderole(s) active`
            : state === 'proposed'
              ? 'proposed: set spec.state to committed to run it'
              : `${counts.active} of ${counts.total} noderole(s) active`;
      await mgr.client.mergePatchStatus(
        'Deployment',
        name,
        {
          status: {
            state,
            counts,
            observedGeneration: dep.metadata.generation,
            conditions: setConditions(
              cur?.conditions,
              [
                {
                  type: 'Ready',
                  status: state === 'active' ? 'True' : 'False',
                  reason: {
                    proposed: 'Proposed',
                    committed: 'Annealing',
                    active: 'AllActive',
                    error: 'NodeRoleError',
                  }[state],
                  message,
                },
              ],
              new Date(),
              dep.metadata.generation,
            ),
          },
        },
        fieldManager,
      );
      return undefined;
    },
  };
}
