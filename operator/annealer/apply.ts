/**
 * Pure updates of a {@link World}: the world after a list of changes or a bind plan. The operator
 * writes the same changes to the API; simulations and tests use these to step forward. Inputs are
 * never mutated; unchanged maps are shared.
 */
import type { BindPlan } from './binding.ts';
import { LayeredMap } from './layered-map.ts';
import { withChange } from './pending.ts';
import type { StateChange } from './states.ts';
import type { NodeRoleView, NodeView, World } from './world.ts';

/** The world after `changes` are written in order. Changes to unknown noderoles are ignored. */
export function applyChanges(world: World, changes: readonly StateChange[]): World {
  if (changes.length === 0) return world;
  const replaced = new Map<string, NodeRoleView>();
  for (const c of changes) {
    const nr = replaced.get(c.name) ?? world.noderoles.get(c.name);
    if (!nr) continue;
    replaced.set(c.name, withChange(nr, c));
  }
  // States change, names and edges do not: the children index and cohort order still hold.
  return { ...world, noderoles: new LayeredMap(world.noderoles, replaced) };
}

/** The world after a successful bind plan is written; a refused plan changes nothing. */
export function applyBindPlan(world: World, plan: BindPlan): World {
  if (!plan.ok) return world;
  const noderoles = new Map(world.noderoles);
  for (const nr of plan.create) noderoles.set(nr.name, nr);
  for (const u of plan.addParents) {
    const nr = noderoles.get(u.name);
    if (nr) noderoles.set(u.name, { ...nr, parents: u.parents, cohort: u.cohort });
  }
  for (const u of plan.recohort) {
    const nr = noderoles.get(u.name);
    if (nr) noderoles.set(u.name, { ...nr, cohort: u.cohort });
  }
  // Edges changed: a maintained children index no longer describes them.
  return { nodes: world.nodes, roles: world.roles, deployments: world.deployments, noderoles };
}

/** The world with one node's fields replaced (e.g. alive or available flipped). */
export function withNode(
  world: World,
  name: string,
  patch: Partial<Omit<NodeView, 'name'>>,
): World {
  const node = world.nodes.get(name);
  if (!node) return world;
  const nodes = new Map(world.nodes);
  nodes.set(name, { ...node, ...patch });
  return { ...world, nodes };
}
