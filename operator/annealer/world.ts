/**
 * A plain-data snapshot of the objects the annealer decides over, and pure conversions from the
 * generated custom resource types. CRD defaults are applied here so the decision code never sees
 * an absent field.
 */
import type { Deployment, Node, NodeRole, Role, RoleSpec } from '../../generated/crowbar.ts';
import { LayeredMap } from './layered-map.ts';
import type { NodeRoleState } from './states.ts';

/** A role flag, as in `Role.spec.flags`. */
export type RoleFlag = NonNullable<RoleSpec['flags']>[number];

/** What the annealer needs of a Node. */
export interface NodeView {
  readonly name: string;
  readonly admin: boolean;
  /** Admin-owned switch (§2.4, §10.2). */
  readonly available: boolean;
  /** Framework-owned reachability (§10.1). */
  readonly alive: boolean;
  /** A phantom node; always considered alive (§1.1). */
  readonly system: boolean;
  readonly deployment: string;
  /** `spec.proposed`: its noderoles are held in proposed for editing (§2.5 Node#propose!). */
  readonly proposed?: boolean;
}

/** What the annealer needs of a Role. */
export interface RoleView {
  readonly name: string;
  readonly jig: RoleSpec['jig'];
  readonly requires: readonly string[];
  readonly conflicts: readonly string[];
  readonly provides: readonly string[];
  readonly flags: ReadonlySet<RoleFlag>;
}

/** What the annealer needs of a Deployment. */
export interface DeploymentView {
  readonly name: string;
  /** Undefined only for the root (`system`). */
  readonly parent: string | undefined;
  readonly state: 'proposed' | 'committed';
}

/** What the annealer needs of a NodeRole. */
export interface NodeRoleView {
  /** `<role>.<node>`. */
  readonly name: string;
  readonly node: string;
  readonly role: string;
  readonly deployment: string;
  readonly state: NodeRoleState;
  /** Names of the noderoles this one depends on. */
  readonly parents: readonly string[];
  readonly cohort: number;
  readonly runCount: number;
  /** Per-noderole mask for debug mode (§1.4, §10.4). */
  readonly available: boolean;
  readonly retry: number;
  readonly observedRetry: number;
  readonly message: string;
  /** `spec.proposed`: held in proposed for editing (§2.2 propose!) until set back to false. */
  readonly proposedSpec?: boolean;
  /**
   * Why the noderole may not run yet although it is todo (e.g. a network role whose node does not
   * hold its addresses yet); the operator derives it, nothing stores it.
   */
  readonly hold?: string;
  /**
   * The hold needs a person (an address that cannot be allocated), so a proposed noderole's
   * message names it too; a passing wait (the allocator not done yet) is not worth a status write
   * on every proposed noderole, and is said only once the noderole could otherwise run.
   */
  readonly holdNeedsAction?: boolean;
}

/** Everything the pure annealer functions read. Maps are keyed by object name. */
export interface World {
  readonly nodes: ReadonlyMap<string, NodeView>;
  readonly roles: ReadonlyMap<string, RoleView>;
  readonly deployments: ReadonlyMap<string, DeploymentView>;
  readonly noderoles: ReadonlyMap<string, NodeRoleView>;
  /**
   * Parent -> direct children of `noderoles`, when the caller maintains it (the operator keeps it
   * between passes); absent, it is derived on demand. It must describe the same parents.
   */
  readonly children?: ReadonlyMap<string, readonly string[]>;
  /**
   * Names of `noderoles` in (cohort, name) order, when the caller maintains it; absent, it is
   * derived on demand. State changes do not change it; bindings and cohorts do.
   */
  readonly order?: readonly string[];
  /**
   * Names of `noderoles` per state, and of those with a retry not yet acted on, when the caller
   * maintains them. They describe `noderoles` before any {@link applyChanges}: readers add the
   * names changed since (see {@link namesWhere}).
   */
  readonly byState?: ReadonlyMap<NodeRoleState, ReadonlySet<string>>;
  readonly retrying?: ReadonlySet<string>;
  /**
   * Per state, the names that changes applied lazily underneath `noderoles` set to it (the
   * operator's decided but unwritten changes, a `PendingView` of pending.ts); `byState` does not know them
   * yet. A pending change only records a retry as acted on, so `retrying` needs no such list.
   */
  readonly pendingByState?: ReadonlyMap<NodeRoleState, ReadonlySet<string>>;
  /**
   * Names in (cohort, name) order that hold every noderole `todo` in `noderoles` (pending changes
   * included), when the caller maintains it (a `CohortOrder`); it may hold names that are no longer
   * todo, and need not know the names a `LayeredMap` over `noderoles` replaced: readers check both.
   */
  readonly todoOrder?: Iterable<string>;
}

/** The name of the root deployment, where new nodes land (§1.5). */
export const SYSTEM_DEPLOYMENT = 'system';

/** The deterministic name of the binding of `role` to `node` (the CRD's `<role>.<node>` rule). */
export function noderoleName(role: string, node: string): string {
  return `${role}.${node}`;
}

/**
 * The node part of a noderole name. Role names hold no dots (CRD pattern), so everything after
 * the first dot is the node's FQDN.
 */
export function nodeOfNoderoleName(name: string): string {
  const dot = name.indexOf('.');
  return dot < 0 ? '' : name.slice(dot + 1);
}

/** Builds a {@link NodeView}; CRD defaults: admin, available, system false; deployment system. */
export function toNodeView(n: Node): NodeView {
  return {
    name: n.metadata.name ?? '',
    admin: n.spec.admin ?? false,
    // §1.1: available defaults to false in 2015; alive is false until the framework sees the node.
    available: n.spec.available ?? false,
    alive: n.status?.alive ?? false,
    system: n.spec.system ?? false,
    deployment: n.spec.deployment ?? SYSTEM_DEPLOYMENT,
    proposed: n.spec.proposed ?? false,
  };
}

/** Builds a {@link RoleView}; absent lists are empty. */
export function toRoleView(r: Role): RoleView {
  return {
    name: r.metadata.name ?? '',
    jig: r.spec.jig,
    requires: r.spec.requires ?? [],
    conflicts: r.spec.conflicts ?? [],
    provides: r.spec.provides ?? [],
    flags: new Set(r.spec.flags ?? []),
  };
}

/** Builds a {@link DeploymentView}; state defaults to proposed except for the system deployment. */
export function toDeploymentView(d: Deployment): DeploymentView {
  const name = d.metadata.name ?? '';
  // §1.5: the system deployment "cannot be placed into proposed"; the CRD insists on committed.
  const fallback = name === SYSTEM_DEPLOYMENT ? 'committed' : 'proposed';
  return { name, parent: d.spec.parent, state: d.spec.state ?? fallback };
}

/** Builds a {@link NodeRoleView}; a noderole without status is proposed (§1.4 default PROPOSED). */
export function toNodeRoleView(nr: NodeRole): NodeRoleView {
  return {
    name: nr.metadata.name ?? noderoleName(nr.spec.role, nr.spec.node),
    node: nr.spec.node,
    role: nr.spec.role,
    deployment: nr.spec.deployment,
    state: nr.status?.state ?? 'proposed',
    parents: nr.status?.parents ?? [],
    cohort: nr.status?.cohort ?? 0,
    runCount: nr.status?.runCount ?? 0,
    available: nr.spec.available ?? true,
    retry: nr.spec.retry ?? 0,
    observedRetry: nr.status?.observedRetry ?? 0,
    message: nr.status?.message ?? '',
    proposedSpec: nr.spec.proposed ?? false,
  };
}

/** Objects as read from the API (e.g. from informer caches). */
export interface WorldObjects {
  readonly nodes: Iterable<Node>;
  readonly roles: Iterable<Role>;
  readonly deployments: Iterable<Deployment>;
  readonly noderoles: Iterable<NodeRole>;
}

/** Builds a {@link World} from custom resources. */
export function buildWorld(objects: WorldObjects): World {
  return worldOf({
    nodes: [...objects.nodes].map(toNodeView),
    roles: [...objects.roles].map(toRoleView),
    deployments: [...objects.deployments].map(toDeploymentView),
    noderoles: [...objects.noderoles].map(toNodeRoleView),
  });
}

/** Builds a {@link World} from views (tests and simulations build views directly). */
export function worldOf(views: {
  nodes: Iterable<NodeView>;
  roles: Iterable<RoleView>;
  deployments: Iterable<DeploymentView>;
  noderoles: Iterable<NodeRoleView>;
}): World {
  const byName = <T extends { name: string }>(xs: Iterable<T>): Map<string, T> =>
    new Map([...xs].map((x) => [x.name, x]));
  return {
    nodes: byName(views.nodes),
    roles: byName(views.roles),
    deployments: byName(views.deployments),
    noderoles: byName(views.noderoles),
  };
}

/**
 * Parent → direct children, in one pass over the noderoles. Children are listed in name order so
 * that everything derived from the index is deterministic.
 */
export function childrenIndex(noderoles: ReadonlyMap<string, NodeRoleView>): Map<string, string[]> {
  const index = new Map<string, string[]>();
  const names = [...noderoles.keys()].sort();
  for (const name of names) {
    for (const parent of noderoles.get(name)?.parents ?? []) {
      const list = index.get(parent);
      if (list) list.push(name);
      else index.set(parent, [name]);
    }
  }
  return index;
}

/**
 * The noderoles that satisfy `test`, among `indexed` (a maintained index that may be stale only
 * for names changed in a layer over it, or in `changed` underneath it) or, without an index,
 * among all of them: the views as read, so a caller need not read each one again.
 */
export function viewsWhere(
  world: World,
  indexed: ReadonlySet<string> | undefined,
  present: boolean,
  test: (nr: NodeRoleView) => boolean,
  changed: Iterable<string> = [],
): NodeRoleView[] {
  const out: NodeRoleView[] = [];
  if (!present) {
    for (const nr of world.noderoles.values()) if (test(nr)) out.push(nr);
    return out;
  }
  // Each name once: the sets are checked instead of copying them into a `seen` set (after a
  // commit at 10,000 nodes `changed` alone holds 10,000 names, read by every pass).
  const first = indexed ?? new Set<string>();
  const second = changed instanceof Set ? (changed as ReadonlySet<string>) : new Set(changed);
  const read = (name: string): void => {
    const nr = world.noderoles.get(name);
    if (nr && test(nr)) out.push(nr);
  };
  for (const name of first) read(name);
  for (const name of second) if (!first.has(name)) read(name);
  if (world.noderoles instanceof LayeredMap) {
    const extra = new Set<string>();
    for (const name of (world.noderoles as LayeredMap<string, NodeRoleView>).replaced()) {
      if (first.has(name) || second.has(name) || extra.has(name)) continue;
      extra.add(name);
      read(name);
    }
  }
  return out;
}

/** The noderoles in `state`, through the maintained index when there is one. */
export function viewsInState(world: World, state: NodeRoleState): NodeRoleView[] {
  return viewsWhere(
    world,
    world.byState?.get(state),
    world.byState !== undefined,
    (nr) => nr.state === state,
    world.pendingByState?.get(state),
  );
}

/** Names of the noderoles in `state`, through the maintained index when there is one. */
export function namesInState(world: World, state: NodeRoleState): string[] {
  return viewsInState(world, state).map((nr) => nr.name);
}

/** Noderole names in (cohort, name) order: §3.1 "cohort ASC, id ASC". */
export function cohortOrder(world: World): readonly string[] {
  if (world.order) return world.order;
  return [...world.noderoles.values()]
    .sort((a, b) => a.cohort - b.cohort || compareNames(a.name, b.name))
    .map((nr) => nr.name);
}

/**
 * Orders names by code point, as `Array#sort` does: the same on every machine and locale, so that
 * ties in (cohort, name) order break the same way everywhere.
 */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** §1.1 / §10.1: a system (phantom) node is always considered alive. */
export function isNodeAlive(node: NodeView): boolean {
  return node.system || node.alive;
}

/**
 * The deployment and its ancestors, nearest first, stopping at the root or at a loop: over the
 * world's deployments, or over any `parentOf` (the informer cache's, for run input).
 */
export function deploymentChain(
  world: Pick<World, 'deployments'> | ((name: string) => string | undefined),
  start: string,
): string[] {
  const parentOf =
    typeof world === 'function' ? world : (d: string) => world.deployments.get(d)?.parent;
  const chain: string[] = [];
  let current: string | undefined = start;
  while (current !== undefined && !chain.includes(current)) {
    chain.push(current);
    current = parentOf(current);
  }
  return chain;
}

/**
 * Why a noderole must be held in proposed (§2.2 propose!, §2.5), or undefined when it may be
 * committed: its deployment is not committed, its node is proposed, or it is proposed itself.
 * The message says what to do to commit it.
 */
export function proposedBecause(world: World, nr: NodeRoleView): string | undefined {
  const why = proposedReason(world, nr);
  // What would hold it once committed is worth knowing now (e.g. an address it cannot get).
  return why === undefined || nr.hold === undefined || nr.holdNeedsAction !== true
    ? why
    : `${why}; meanwhile ${nr.hold}`;
}

function proposedReason(world: World, nr: NodeRoleView): string | undefined {
  const dep = world.deployments.get(nr.deployment);
  if (dep?.state !== 'committed')
    return `proposed: deployment ${nr.deployment} is proposed; commit it (spec.state: committed) to run`;
  if (world.nodes.get(nr.node)?.proposed === true)
    return `proposed: node ${nr.node} is proposed; set its spec.proposed to false to commit`;
  if (nr.proposedSpec === true)
    return 'proposed: edit spec.data, then set spec.proposed to false to commit';
  return undefined;
}
