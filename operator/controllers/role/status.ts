/**
 * Role status: cohort in the role graph, requires that do not resolve yet (§1.3 late binding),
 * and a Resolved condition naming what is missing or the cycle a require would close.
 */
import { findCycles, roleCohorts } from '../../annealer/role-graph.ts';
import { toRoleView } from '../../annealer/world.ts';
import { setConditions } from '../../kube/condition.ts';
import type { Controller, Manager } from '../../manager.ts';

export function roleStatusController(mgr: Manager, fieldManager: string): Controller {
  const allRoles = (): string[] => mgr.caches.Role.list().map((r) => r.metadata.name ?? '');
  return {
    name: 'role-status',
    // Any role can resolve or deepen another's requires, so every role is re-derived.
    watches: { Role: allRoles },
    reconcile: async (name) => {
      const role = mgr.caches.Role.get(name);
      if (!role) return undefined;
      const roles = new Map(
        mgr.caches.Role.list().map((r) => [r.metadata.name ?? '', toRoleView(r)]),
      );
      const info = roleCohorts(roles).get(name);
      const cycles = findCycles(roles, roles.get(name));
      const unresolved = info?.unresolved ?? [];
      const [status, reason, message] =
        cycles.length > 0
          ? ([
              'False',
              'Cycle',
              `requires form a cycle: ${cycles.join('; ')}; remove one of these requires`,
            ] as const)
          : unresolved.length > 0
            ? ([
                'False',
                'Unresolved',
                `required roles do not exist yet: ${unresolved.join(', ')}; binding this role waits for them`,
              ] as const)
            : (['True', 'Resolved', 'all required roles exist'] as const);
      const cur = role.status;
      const curCond = cur?.conditions?.find((c) => c.type === 'Resolved');
      if (
        cur?.cohort === (info?.cohort ?? 0) &&
        curCond?.message === message &&
        cur.observedGeneration === role.metadata.generation &&
        JSON.stringify(cur.unresolved ?? []) === JSON.stringify(unresolved)
      ) {
        return undefined;
      }
      await mgr.client.mergePatchStatus(
        'Role',
        name,
        {
          status: {
            cohort: info?.cohort ?? 0,
            unresolved,
            observedGeneration: role.metadata.generation,
            conditions: setConditions(
              cur?.conditions,
              [{ type: 'Resolved', status, reason, message }],
              new Date(),
              role.metadata.generation,
            ),
          },
        },
        fieldManager,
      );
      return undefined;
    },
  };
}
