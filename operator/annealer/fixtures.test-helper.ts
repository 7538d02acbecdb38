/**
 * Small builders for annealer tests: views with sensible defaults, and a world from them.
 * Test-only (not matched by the unit test glob; imported by *.test.ts files).
 */
import type { NodeRoleState } from './states.ts';
import type { DeploymentView, NodeRoleView, NodeView, RoleFlag, RoleView, World } from './world.ts';
import { noderoleName, worldOf } from './world.ts';

/** A role; requires, conflicts, provides and flags default to empty. */
export function role(
  name: string,
  opts: { requires?: string[]; flags?: RoleFlag[]; conflicts?: string[]; provides?: string[] } = {},
): RoleView {
  return {
    name,
    jig: 'noop',
    requires: opts.requires ?? [],
    conflicts: opts.conflicts ?? [],
    provides: opts.provides ?? [],
    flags: new Set(opts.flags ?? []),
  };
}

/** A node; alive and available unless told otherwise, in the system deployment. */
export function node(name: string, opts: Partial<Omit<NodeView, 'name'>> = {}): NodeView {
  return {
    name,
    admin: false,
    available: true,
    alive: true,
    system: false,
    deployment: 'system',
    ...opts,
  };
}

/** A deployment; committed, child of system unless it is system. */
export function deployment(
  name: string,
  opts: Partial<Omit<DeploymentView, 'name'>> = {},
): DeploymentView {
  return { name, parent: name === 'system' ? undefined : 'system', state: 'committed', ...opts };
}

/** A noderole of `role` on `node`; proposed, in system, no parents, cohort 0 unless told otherwise. */
export function noderole(
  roleName: string,
  nodeName: string,
  opts: Partial<Omit<NodeRoleView, 'name' | 'role' | 'node'>> = {},
): NodeRoleView {
  return {
    name: noderoleName(roleName, nodeName),
    role: roleName,
    node: nodeName,
    deployment: 'system',
    state: 'proposed',
    parents: [],
    cohort: 0,
    runCount: 0,
    available: true,
    retry: 0,
    observedRetry: 0,
    message: '',
    ...opts,
  };
}

/** A world; a committed system deployment is added when none is given. */
export function world(parts: {
  nodes?: NodeView[];
  roles?: RoleView[];
  deployments?: DeploymentView[];
  noderoles?: NodeRoleView[];
}): World {
  const deployments = parts.deployments ?? [deployment('system')];
  return worldOf({
    nodes: parts.nodes ?? [],
    roles: parts.roles ?? [],
    deployments,
    noderoles: parts.noderoles ?? [],
  });
}

/** name → state of every noderole, for compact assertions. */
export function statesOf(w: World): Record<string, NodeRoleState> {
  return Object.fromEntries([...w.noderoles.values()].map((nr) => [nr.name, nr.state]));
}

/** Transitive children of a noderole (not including itself). */
export function descendantsOf(w: World, name: string): Set<string> {
  const out = new Set<string>();
  let frontier = [name];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const nr of w.noderoles.values()) {
      if (!out.has(nr.name) && nr.parents.some((p) => frontier.includes(p))) {
        out.add(nr.name);
        next.push(nr.name);
      }
    }
    frontier = next;
  }
  return out;
}
