/**
 * fast-check arbitraries for annealer properties: random acyclic role graphs (with implicit and
 * cluster parents), random node sets and random bind requests, built into a world through the
 * real planner.
 */
import fc from 'fast-check';
import { applyBindPlan } from './apply.ts';
import { planBind } from './binding.ts';
import { deployment, node, role, world } from './fixtures.test-helper.ts';
import type { RoleFlag, World } from './world.ts';

/** A random scenario before it is built. */
export interface Scenario {
  readonly roles: readonly {
    readonly requiresMask: number;
    readonly flag: 'none' | 'implicit' | 'cluster';
  }[];
  readonly nodes: number;
  readonly binds: readonly {
    readonly role: number;
    readonly node: number;
    readonly deployment: number;
  }[];
}

/** Two to seven roles, one to four nodes, one to ten binds. */
export const scenario: fc.Arbitrary<Scenario> = fc.record({
  roles: fc.array(
    fc.record({
      requiresMask: fc.nat({ max: 127 }),
      flag: fc.constantFrom('none' as const, 'implicit' as const, 'cluster' as const),
    }),
    { minLength: 2, maxLength: 7 },
  ),
  nodes: fc.integer({ min: 1, max: 4 }),
  binds: fc.array(fc.record({ role: fc.nat(), node: fc.nat(), deployment: fc.nat({ max: 1 }) }), {
    minLength: 1,
    maxLength: 10,
  }),
});

export const nodeName = (i: number): string => `n${i}.lab.example.com`;
const DEPLOYMENTS = ['system', 'd1'];

/**
 * The scenario's world: roles r0…rN where ri may require only rj with j < i (acyclic by
 * construction), alive and available nodes, and every bind applied in order. Nothing is
 * committed yet: all noderoles are proposed, and deployment d1 (child of system) is proposed.
 */
export function buildScenario(s: Scenario): World {
  const roles = s.roles.map((r, i) => {
    const requires = s.roles
      .slice(0, i)
      .flatMap((_, j) => ((r.requiresMask >> j) & 1 ? [`r${j}`] : []));
    const flags: RoleFlag[] = r.flag === 'none' ? [] : [r.flag];
    return role(`r${i}`, { requires, flags });
  });
  const nodes = Array.from({ length: s.nodes }, (_, i) => node(nodeName(i)));
  let w = world({
    nodes,
    roles,
    deployments: [deployment('system'), deployment('d1', { state: 'proposed' })],
  });
  for (const b of s.binds) {
    const plan = planBind(w, {
      role: `r${b.role % roles.length}`,
      node: nodeName(b.node % s.nodes),
      deployment: DEPLOYMENTS[b.deployment] ?? 'system',
    });
    if (!plan.ok) throw new Error(`scenario bind refused: ${plan.reason}`);
    w = applyBindPlan(w, plan);
  }
  return w;
}

/** The world with every deployment's spec.state set to committed. */
export function commitAllDeployments(w: World): World {
  return {
    ...w,
    deployments: new Map(
      [...w.deployments].map(([k, d]) => [k, { ...d, state: 'committed' as const }]),
    ),
  };
}
