/**
 * §1.2 "Constraints enforced at bind time" [OCB:node_role.rb validate_conflicts]: which roles may
 * share a node, by their conflicts and provides.
 */
import type { NodeRoleView, RoleView } from './world.ts';

/**
 * Why `role` cannot join the roles already bound on `node` (among `noderoles`), or undefined when
 * it can. Rules: conflicts match in neither direction; the node has no noderole that already
 * provides the role; the role provides no role bound there; no two roles' provides overlap.
 */
export function nodeConstraintViolation(
  role: RoleView,
  node: string,
  noderoles: Iterable<NodeRoleView>,
  roles: ReadonlyMap<string, RoleView>,
): string | undefined {
  for (const nr of noderoles) {
    if (nr.node !== node) continue;
    const other = roles.get(nr.role);
    if (!other) continue;
    const where = `${nr.name} is bound on node ${node}`;
    if (role.conflicts.includes(other.name) || other.conflicts.includes(role.name)) {
      return `role ${role.name} conflicts with role ${other.name}, and ${where}; remove it or pick another node`;
    }
    if (other.provides.includes(role.name)) {
      return `${where} and already provides ${role.name}; the binding is not needed`;
    }
    if (role.provides.includes(other.name)) {
      return `role ${role.name} provides ${other.name}, and ${where}; remove ${nr.name} first`;
    }
    const overlap = role.provides.filter((p) => other.provides.includes(p));
    if (overlap.length > 0) {
      return `roles ${role.name} and ${other.name} (${where}) both provide ${overlap.join(', ')}; a node can hold only one`;
    }
  }
  return undefined;
}
