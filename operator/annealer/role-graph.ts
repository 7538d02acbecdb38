/**
 * The role dependency graph: requires that do not resolve yet, cycles, and cohorts (§1.2, §1.3).
 * Edges run from a role to the roles it requires; a require naming a role that does not exist is
 * late-bound (§1.3) and is no edge until that role appears.
 */
import type { RoleView } from './world.ts';

/** At most this many cyclic paths are reported; one is enough to refuse, a few help to fix. */
export const MAX_REPORTED_CYCLES = 32;

/** The role's requires that name no existing role (§1.3: such a role cannot be bound). */
export function unresolvedRequires(role: RoleView, roles: ReadonlyMap<string, RoleView>): string[] {
  return role.requires.filter((r) => !roles.has(r));
}

/** Resolved requires of a role, sorted so that every walk of the graph is deterministic. */
function edges(graph: ReadonlyMap<string, RoleView>, name: string): string[] {
  return (graph.get(name)?.requires ?? []).filter((r) => graph.has(r)).sort();
}

/** The role and every role it transitively requires (resolved requires only). */
export function requiredClosure(name: string, roles: ReadonlyMap<string, RoleView>): Set<string> {
  const seen = new Set<string>([name]);
  const stack = [name];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    for (const r of edges(roles, next)) {
      if (!seen.has(r)) {
        seen.add(r);
        stack.push(r);
      }
    }
  }
  return seen;
}

/** Roles from which `name` can be reached (including itself). */
function reaching(name: string, graph: ReadonlyMap<string, RoleView>): Set<string> {
  const reverse = new Map<string, string[]>();
  for (const role of graph.keys()) {
    for (const r of edges(graph, role)) reverse.set(r, [...(reverse.get(r) ?? []), role]);
  }
  const seen = new Set<string>([name]);
  const stack = [name];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    for (const r of reverse.get(next) ?? []) {
      if (!seen.has(r)) {
        seen.add(r);
        stack.push(r);
      }
    }
  }
  return seen;
}

/** Elementary cycles through `start` whose other members pass `allowed`, as `a -> b -> a`. */
function cyclesThrough(
  start: string,
  graph: ReadonlyMap<string, RoleView>,
  allowed: (name: string) => boolean,
  out: string[],
): void {
  // Only roles that are both reachable from start and reach start can lie on a cycle through it.
  const forward = requiredClosure(start, graph);
  const backward = reaching(start, graph);
  const path = [start];
  const onPath = new Set(path);
  const visit = (name: string): void => {
    for (const next of edges(graph, name)) {
      if (out.length >= MAX_REPORTED_CYCLES) return;
      if (next === start) {
        out.push([...path, start].join(' -> '));
      } else if (!onPath.has(next) && forward.has(next) && backward.has(next) && allowed(next)) {
        path.push(next);
        onPath.add(next);
        visit(next);
        path.pop();
        onPath.delete(next);
      }
    }
  };
  visit(start);
}

/**
 * Every cyclic path in the role graph, as `a -> b -> a` strings (§1.3 enforce_acyclic lists
 * every cyclic path in its error).
 *
 * With a `candidate` (a role being created or changed; it replaces the role of the same name),
 * only the cycles through the candidate are returned, each starting and ending at it: that is
 * the admission check. Without one, each elementary cycle is returned once, starting at its
 * alphabetically first role. At most {@link MAX_REPORTED_CYCLES} are returned.
 */
export function findCycles(roles: ReadonlyMap<string, RoleView>, candidate?: RoleView): string[] {
  const out: string[] = [];
  if (candidate) {
    const graph = new Map(roles);
    graph.set(candidate.name, candidate);
    cyclesThrough(candidate.name, graph, () => true, out);
    return out;
  }
  for (const start of [...roles.keys()].sort()) {
    cyclesThrough(start, roles, (name) => name > start, out);
  }
  return out;
}

/** A role's depth in the graph and its requires that do not resolve yet. */
export interface RoleCohort {
  /** max(cohort of required roles) + 1; 0 for a role that requires nothing (§1.2 update_cohort). */
  readonly cohort: number;
  readonly unresolved: readonly string[];
}

/**
 * Cohort and unresolved requires of every role (what Role status reports). Unresolved requires
 * add no depth; an edge closing a cycle is ignored so that the walk ends.
 */
export function roleCohorts(roles: ReadonlyMap<string, RoleView>): Map<string, RoleCohort> {
  const result = new Map<string, RoleCohort>();
  const inProgress = new Set<string>();
  const cohortOf = (name: string): number => {
    const done = result.get(name);
    if (done) return done.cohort;
    const role = roles.get(name);
    if (!role || inProgress.has(name)) return -1;
    inProgress.add(name);
    let cohort = 0;
    for (const r of edges(roles, name)) cohort = Math.max(cohort, cohortOf(r) + 1);
    inProgress.delete(name);
    result.set(name, { cohort, unresolved: unresolvedRequires(role, roles) });
    return cohort;
  };
  for (const name of [...roles.keys()].sort()) cohortOf(name);
  return result;
}
