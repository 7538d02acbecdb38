/**
 * The annealer's view of NodeRoles: the informer cache, overlaid with the objects this process
 * wrote itself until the cache catches up. Without it, a pass that runs right after a write would
 * see the old state and decide again (e.g. start a run twice).
 */
import type { NodeRole } from '../../../generated/crowbar.ts';
import type { NodeRoleState } from '../../annealer/states.ts';
import {
  compareNames,
  toNodeRoleView,
  type NodeRoleView as NodeRoleDecisionView,
} from '../../annealer/world.ts';
import type { CachedInformer } from '../../runtime/informer.ts';
import { thinNodeRole } from '../../kube/thin.ts';

/** A noderole the binder has planned (it records parents and cohort); others wait for it. */
export const isBound = (nr: Readonly<NodeRole>): boolean => nr.status?.cohort !== undefined;

const EMPTY: ReadonlySet<string> = new Set();

function toggle(set: Set<string>, name: string, on: boolean): void {
  if (on) set.add(name);
  else set.delete(name);
}

function addTo(index: Map<string, Set<string>>, key: string, name: string): void {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(name);
}

/** Removes `name` from its key's set, and the key once its set is empty (bounded by live keys). */
function removeFrom(index: Map<string, Set<string>>, key: string, name: string): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(name);
  if (set.size === 0) index.delete(key);
}

/** etcd resource versions are increasing integers; anything else compares as "not newer". */
function rv(o: Readonly<NodeRole>): bigint {
  try {
    return BigInt(o.metadata.resourceVersion ?? '0');
  } catch {
    return 0n;
  }
}

export class NodeRoleView {
  private readonly overlay = new Map<string, NodeRole>();
  private readonly cache: CachedInformer<NodeRole>;

  /**
   * The decision views of bound noderoles, kept up to date per event so that a pass does not
   * convert every object again (that was most of an annealer pass's CPU at 10,000 noderoles).
   */
  private readonly views = new Map<string, NodeRoleDecisionView>();
  private children: Map<string, string[]> | undefined;
  private order: string[] | undefined;
  // Indexes kept per event, so that a pass reads what it needs instead of scanning every noderole.
  private readonly states = new Map<NodeRoleState, Set<string>>();
  private readonly retries = new Set<string>();
  private readonly network = new Set<string>();
  private readonly byNode = new Map<string, Set<string>>();
  private readonly byDeployment = new Map<string, Set<string>>();
  private readonly byRole = new Map<string, Set<string>>();
  private readonly placed = new Map<string, { node: string; deployment: string; role: string }>();
  /** Noderoles changed since the annealer last took this set (see takeChanged). */
  private changed = new Set<string>();

  private readonly onRefresh: ((name: string) => void) | undefined;

  /** `onRefresh`: told each name whose object (as this view reads it) may have changed. */
  constructor(cache: CachedInformer<NodeRole>, onRefresh?: (name: string) => void) {
    this.cache = cache;
    this.onRefresh = onRefresh;
    const changed = (o: NodeRole): void => {
      this.refresh(o.metadata.name ?? '');
    };
    cache.on({ onAdd: changed, onUpdate: changed, onDelete: changed });
  }

  /** Records an object returned by a write (thinned as the cache thins it). */
  wrote(o: NodeRole): void {
    const name = o.metadata.name;
    if (!name) return;
    thinNodeRole(o);
    this.overlay.set(name, o);
    this.refresh(name);
  }

  forget(name: string): void {
    this.overlay.delete(name);
    this.refresh(name);
  }

  /** Marks a noderole changed without an object change (e.g. a write that was refused). */
  touch(name: string): void {
    this.changed.add(name);
  }

  /** The names changed since the last call, and a fresh set for what changes next. */
  takeChanged(): Set<string> {
    const out = this.changed;
    this.changed = new Set();
    return out;
  }

  private refresh(name: string): void {
    this.changed.add(name);
    const o = this.get(name);
    this.place(name, o);
    const before = this.views.get(name);
    const v = o && isBound(o) ? toNodeRoleView(o) : undefined;
    if (v) this.views.set(name, v);
    else if (before) this.views.delete(name);
    if (before && before.state !== v?.state) this.states.get(before.state)?.delete(name);
    if (v) {
      let set = this.states.get(v.state);
      if (!set) this.states.set(v.state, (set = new Set()));
      set.add(name);
    }
    toggle(this.retries, name, v !== undefined && v.retry > v.observedRetry);
    toggle(this.network, name, v?.role.startsWith('network-') ?? false);
    if (before?.parents.join('\n') !== v?.parents.join('\n')) this.children = undefined;
    if (before?.cohort !== v?.cohort) this.order = undefined;
    this.onRefresh?.(name);
  }

  /** Keeps the node, deployment and role indexes (spec.node, .deployment, .role are immutable). */
  private place(name: string, o: Readonly<NodeRole> | undefined): void {
    const was = this.placed.get(name);
    if (o && !was) {
      const at = { node: o.spec.node, deployment: o.spec.deployment, role: o.spec.role };
      this.placed.set(name, at);
      addTo(this.byNode, at.node, name);
      addTo(this.byDeployment, at.deployment, name);
      addTo(this.byRole, at.role, name);
    } else if (!o && was) {
      this.placed.delete(name);
      removeFrom(this.byNode, was.node, name);
      removeFrom(this.byDeployment, was.deployment, name);
      removeFrom(this.byRole, was.role, name);
    }
  }

  /**
   * Bound noderoles as decision views. The map is live, not a copy (a copy per pass cost more
   * than the pass's decisions at 10,000 noderoles): read it synchronously, within one turn.
   */
  boundViews(): ReadonlyMap<string, NodeRoleDecisionView> {
    return this.views;
  }

  /** Bound noderoles per state (live, like boundViews). */
  byState(): ReadonlyMap<NodeRoleState, ReadonlySet<string>> {
    return this.states;
  }

  /** Bound noderoles whose spec.retry is above their observedRetry (live). */
  retrying(): ReadonlySet<string> {
    return this.retries;
  }

  /** Bound noderoles of network roles (live). */
  networkRoles(): ReadonlySet<string> {
    return this.network;
  }

  /** Names of the noderoles (bound or not) on a node, in a deployment or of a role (live). */
  names(field: 'node' | 'deployment' | 'role', key: string): ReadonlySet<string> {
    const index =
      field === 'node' ? this.byNode : field === 'deployment' ? this.byDeployment : this.byRole;
    return index.get(key) ?? EMPTY;
  }

  /** Names of the nodes that have noderoles (bound or not). */
  nodeNames(): IterableIterator<string> {
    return this.byNode.keys();
  }

  /** Names of the bound noderoles in (cohort, name) order, re-sorted only when cohorts change. */
  cohortOrder(): readonly string[] {
    this.order ??= [...this.views.values()]
      .sort((a, b) => a.cohort - b.cohort || compareNames(a.name, b.name))
      .map((v) => v.name);
    return this.order;
  }

  /** Parent -> children of the bound noderoles, rebuilt only when some parents changed. */
  childrenIndex(): ReadonlyMap<string, readonly string[]> {
    if (!this.children) {
      const index = new Map<string, string[]>();
      for (const name of [...this.views.keys()].sort()) {
        for (const p of this.views.get(name)?.parents ?? []) {
          const list = index.get(p);
          if (list) list.push(name);
          else index.set(p, [name]);
        }
      }
      this.children = index;
    }
    return this.children;
  }

  /**
   * Noderoles by spec.node or spec.deployment, from indexes kept per event, so per-node and
   * per-deployment status controllers do not scan every noderole per key.
   */
  by(field: 'node' | 'deployment', key: string): readonly Readonly<NodeRole>[] {
    const out: Readonly<NodeRole>[] = [];
    for (const name of this.names(field, key)) {
      const o = this.get(name);
      if (o) out.push(o);
    }
    return out;
  }

  get(name: string): Readonly<NodeRole> | undefined {
    const c = this.cache.get(name);
    const o = this.overlay.get(name);
    if (!o) return c;
    if (!c || rv(o) > rv(c)) return o;
    this.overlay.delete(name);
    return c;
  }

  list(): Readonly<NodeRole>[] {
    const out: Readonly<NodeRole>[] = [];
    const seen = new Set<string>();
    for (const c of this.cache.list()) {
      const name = c.metadata.name ?? '';
      seen.add(name);
      const v = this.get(name);
      if (v) out.push(v);
    }
    // Objects we created that the cache has not listed yet.
    for (const [name, o] of this.overlay) if (!seen.has(name)) out.push(o);
    return out;
  }
}
