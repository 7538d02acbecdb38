/**
 * §6.1 binding as a pure planner: which noderoles binding a role to a node creates, and which
 * existing noderoles gain parent edges. The plan is computed over a private copy of the world so
 * that each new noderole sees those planned before it.
 */
import { nodeConstraintViolation } from './bind-constraints.ts';
import { findCycles, requiredClosure, roleCohorts, unresolvedRequires } from './role-graph.ts';
import type { NodeRoleView, RoleView, World } from './world.ts';
import { childrenIndex, compareNames, deploymentChain, noderoleName } from './world.ts';

/** Bind `role` to `node` inside `deployment`. */
export interface BindRequest {
  readonly role: string;
  readonly node: string;
  readonly deployment: string;
}

/** An existing noderole whose parents or cohort a plan changes. */
export interface EdgeUpdate {
  readonly name: string;
  /** The full new parent list. */
  readonly parents: readonly string[];
  readonly cohort: number;
}

/** A bind plan: what to create and update, or why the binding is refused. */
export type BindPlan =
  | {
      readonly ok: true;
      /** The noderole of the requested binding (new or reused). */
      readonly noderole: string;
      /** New noderoles, parents before children (state proposed). */
      readonly create: readonly NodeRoleView[];
      /** Existing noderoles that gain parents (cluster peers' children, §6.1 step 9). */
      readonly addParents: readonly EdgeUpdate[];
      /** Existing noderoles whose cohort rises because an ancestor gained a deeper parent. */
      readonly recohort: readonly { readonly name: string; readonly cohort: number }[];
    }
  | { readonly ok: false; readonly reason: string };

/** Thrown inside the planner to abandon a plan; never escapes {@link planBind}. */
class Refusal extends Error {}

const PROPOSED_MESSAGE = 'proposed: commit the deployment to run it';

/** status.parents' maxItems in crds/noderoles.crowbar.dev.yaml. */
export const MAX_PARENTS = 1024;

/**
 * Plans the binding of a role to a node (§6.1), refusing with a message that says what to do
 * when a rule of §1.2 ("Constraints enforced at bind time") or §1.3 forbids it.
 */
export function planBind(world: World, request: BindRequest): BindPlan {
  const { role, node, deployment } = request;
  const prefix = `cannot bind role ${role} to node ${node}`;
  if (!world.nodes.has(node))
    return { ok: false, reason: `${prefix}: node ${node} does not exist` };
  if (!world.deployments.has(deployment)) {
    return {
      ok: false,
      reason: `${prefix}: deployment ${deployment} does not exist; create it first`,
    };
  }
  if (!world.roles.has(role))
    return { ok: false, reason: `${prefix}: role ${role} does not exist` };
  // §1.3: a cycle among the roles this one needs would make binding recurse forever.
  const closure = requiredClosure(role, world.roles);
  const cycles = findCycles(new Map([...world.roles].filter(([name]) => closure.has(name))));
  if (cycles.length > 0) {
    return {
      ok: false,
      reason: `${prefix}: the roles it requires form a cycle (${cycles.join('; ')}); remove one of these requires`,
    };
  }
  try {
    return new Planner(world).plan(role, node, deployment);
  } catch (e) {
    if (e instanceof Refusal) return { ok: false, reason: `${prefix}: ${e.message}` };
    throw e;
  }
}

class Planner {
  private readonly world: World;
  private readonly noderoles: Map<string, NodeRoleView>;
  private readonly children: Map<string, string[]>;
  private readonly created: string[] = [];
  private readonly touched = new Set<string>();

  constructor(world: World) {
    this.world = world;
    this.noderoles = new Map(world.noderoles);
    this.children = childrenIndex(world.noderoles);
  }

  plan(role: string, node: string, deployment: string): BindPlan {
    const noderole = this.bind(role, node, deployment, []);
    const addParents: EdgeUpdate[] = [];
    const recohort: { name: string; cohort: number }[] = [];
    for (const name of [...this.touched].sort()) {
      const before = this.world.noderoles.get(name);
      const after = this.noderoles.get(name);
      if (!before || !after) continue;
      if (after.parents.length !== before.parents.length) {
        addParents.push({ name, parents: after.parents, cohort: after.cohort });
      } else if (after.cohort !== before.cohort) {
        recohort.push({ name, cohort: after.cohort });
      }
    }
    const create = this.created.flatMap((n) => this.noderoles.get(n) ?? []);
    // A cluster role's noderoles are parents of every peer's children (§6.1 step 9): past
    // MAX_PARENTS peers a child's status.parents would not fit the CRD and could never be written.
    for (const nr of [...create, ...addParents]) {
      if (nr.parents.length > MAX_PARENTS) {
        throw new Refusal(
          `noderole ${nr.name} would have ${String(nr.parents.length)} parents, more than the ${String(MAX_PARENTS)} a noderole can record (a cluster role's noderoles are parents of all their peers' children); bind the cluster role on at most ${String(MAX_PARENTS)} nodes per deployment, or split those nodes across deployments`,
        );
      }
    }
    return { ok: true, noderole, create, addParents, recohort };
  }

  private role(name: string): RoleView {
    const role = this.world.roles.get(name);
    if (!role) throw new Refusal(`role ${name} does not exist`);
    return role;
  }

  /** Noderoles of `role`, or of a role providing it, among `candidates`: exact role first. */
  private matching(role: string, candidates: (nr: NodeRoleView) => boolean): NodeRoleView[] {
    const hits = [...this.noderoles.values()].filter(
      (nr) =>
        candidates(nr) &&
        (nr.role === role || (this.world.roles.get(nr.role)?.provides.includes(role) ?? false)),
    );
    // The exact role before a provider; then a binding on an admin node, where bootstrap services
    // live (§6.3, §10.5), before one on another node; then by name.
    const rank = (nr: NodeRoleView): number =>
      (nr.role === role ? 0 : 2) + (this.world.nodes.get(nr.node)?.admin === true ? 0 : 1);
    return hits.sort((a, b) => rank(a) - rank(b) || compareNames(a.name, b.name));
  }

  /** §6.1 step 1–5: find or create the noderole and, first, the parents it needs. */
  private bind(roleName: string, node: string, deployment: string, via: readonly string[]): string {
    const name = noderoleName(roleName, node);
    // §6.1 step 1: a role is bound at most once per node, whatever the deployment.
    if (this.noderoles.has(name)) return name;
    const role = this.role(roleName);
    const chain = via.length > 0 ? ` (needed by ${via.join(' <- ')})` : '';
    if (role.flags.has('abstract')) {
      const providers = [...this.world.roles.values()]
        .filter((r) => r.provides.includes(roleName))
        .map((r) => r.name);
      const hint =
        providers.length > 0
          ? `bind one that provides it (${providers.sort().join(', ')})`
          : 'bind a role that provides it';
      throw new Refusal(`role ${roleName}${chain} is abstract and cannot be bound; ${hint}`);
    }
    const unresolved = unresolvedRequires(role, this.world.roles);
    if (unresolved.length > 0) {
      throw new Refusal(
        `role ${roleName}${chain} requires ${unresolved.join(', ')}, which do not exist yet; create them or remove them from spec.requires of ${roleName}`,
      );
    }
    const clash = nodeConstraintViolation(role, node, this.noderoles.values(), this.world.roles);
    if (clash !== undefined) throw new Refusal(clash);
    const parents: string[] = [];
    for (const required of role.requires) {
      const found =
        this.findParent(required, node, deployment) ??
        this.bind(required, node, deployment, [...via, roleName]);
      for (const p of this.withClusterPeers(found)) if (!parents.includes(p)) parents.push(p);
    }
    const cohort = Math.max(-1, ...parents.map((p) => this.noderoles.get(p)?.cohort ?? 0)) + 1;
    this.noderoles.set(name, {
      name,
      node,
      role: roleName,
      deployment,
      state: 'proposed',
      parents,
      cohort,
      runCount: 0,
      available: true,
      retry: 0,
      observedRetry: 0,
      message: PROPOSED_MESSAGE,
    });
    this.created.push(name);
    for (const p of parents) this.children.set(p, [...(this.children.get(p) ?? []), name]);
    if (role.flags.has('cluster')) this.adoptPeersChildren(name, roleName, deployment);
    return name;
  }

  /**
   * §6.1 step 2: on the same node first; a non-implicit parent is then looked up in the
   * deployment and its ancestors (first match, by name: §11.9 left the order unspecified).
   */
  private findParent(role: string, node: string, deployment: string): string | undefined {
    const local = this.matching(role, (nr) => nr.node === node)[0];
    if (local) return local.name;
    if (this.role(role).flags.has('implicit')) return undefined;
    for (const dep of deploymentChain(this.world, deployment)) {
      const hit = this.matching(role, (nr) => nr.deployment === dep)[0];
      if (hit) return hit.name;
    }
    return undefined;
  }

  /** §1.2 cluster: a child of a cluster noderole depends on every peer in that deployment. */
  private withClusterPeers(parent: string): string[] {
    const nr = this.noderoles.get(parent);
    if (!nr || !this.world.roles.get(nr.role)?.flags.has('cluster')) return [parent];
    return this.peers(nr.role, nr.deployment);
  }

  private peers(role: string, deployment: string): string[] {
    return [...this.noderoles.values()]
      .filter((nr) => nr.role === role && nr.deployment === deployment)
      .map((nr) => nr.name)
      .sort();
  }

  /** §6.1 step 9 bind_cluster_children: a new cluster peer becomes a parent of its peers' children. */
  private adoptPeersChildren(name: string, role: string, deployment: string): void {
    const cohort = this.noderoles.get(name)?.cohort ?? 0;
    const adopted = new Set(
      this.peers(role, deployment).flatMap((p) => (p === name ? [] : (this.children.get(p) ?? []))),
    );
    for (const child of [...adopted].sort()) {
      const nr = this.noderoles.get(child);
      if (!nr || nr.parents.includes(name)) continue;
      this.noderoles.set(child, { ...nr, parents: [...nr.parents, name] });
      this.children.set(name, [...(this.children.get(name) ?? []), child]);
      this.touched.add(child);
      this.raiseCohort(child, cohort + 1);
    }
  }

  /** §1.4 update_cohort: a child's cohort stays above every parent's, down the graph. */
  private raiseCohort(name: string, atLeast: number): void {
    const nr = this.noderoles.get(name);
    if (!nr || nr.cohort >= atLeast) return;
    this.noderoles.set(name, { ...nr, cohort: atLeast });
    if (this.world.noderoles.has(name)) this.touched.add(name);
    for (const child of this.children.get(name) ?? []) this.raiseCohort(child, atLeast + 1);
  }
}

/**
 * Roles bound automatically to a node (§6.3): bootstrap roles on an admin node, discovery roles
 * on a node that is neither admin nor system. Already bound and abstract roles are left out;
 * requests are in role cohort order so that parents come first.
 */
export function autoBindRoles(world: World, node: string): BindRequest[] {
  const n = world.nodes.get(node);
  if (!n) return [];
  const flag = n.admin ? 'bootstrap' : n.system ? undefined : 'discovery';
  if (!flag) return [];
  const cohorts = roleCohorts(world.roles);
  return [...world.roles.values()]
    .filter(
      (r) =>
        r.flags.has(flag) &&
        !r.flags.has('abstract') &&
        !world.noderoles.has(noderoleName(r.name, node)),
    )
    .sort(
      (a, b) =>
        (cohorts.get(a.name)?.cohort ?? 0) - (cohorts.get(b.name)?.cohort ?? 0) ||
        compareNames(a.name, b.name),
    )
    .map((r) => ({ role: r.name, node, deployment: n.deployment }));
}
