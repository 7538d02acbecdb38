/**
 * The annealer's view of NodeRoles: the informer cache, overlaid with the objects this process
 * wrote itself until the cache catches up. Without it, a pass that runs right after a write would
 * see the old state and decide again (e.g. start a run twice).
 */
import type { NodeRole } from '../../../generated/crowbar.ts';
import { toNodeRoleView, type NodeRoleView as NodeRoleDecisionView } from '../../annealer/world.ts';
import type { CachedInformer } from '../../runtime/informer.ts';

/** A noderole the binder has planned (it records parents and cohort); others wait for it. */
export const isBound = (nr: Readonly<NodeRole>): boolean => nr.status?.cohort !== undefined;

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

  private version = 0;
  private indexes = new Map<
    string,
    { version: number; index: Map<string, Readonly<NodeRole>[]> }
  >();

  /**
   * The decision views of bound noderoles, kept up to date per event so that a pass does not
   * convert every object again (that was most of an annealer pass's CPU at 10,000 noderoles).
   */
  private readonly views = new Map<string, NodeRoleDecisionView>();
  private children: Map<string, string[]> | undefined;

  constructor(cache: CachedInformer<NodeRole>) {
    this.cache = cache;
    const changed = (o: NodeRole): void => {
      this.refresh(o.metadata.name ?? '');
    };
    cache.on({ onAdd: changed, onUpdate: changed, onDelete: changed });
  }

  /** Records an object returned by a write. */
  wrote(o: NodeRole): void {
    const name = o.metadata.name;
    if (!name) return;
    this.overlay.set(name, o);
    this.refresh(name);
  }

  forget(name: string): void {
    this.overlay.delete(name);
    this.refresh(name);
  }

  private refresh(name: string): void {
    this.version++;
    const o = this.get(name);
    const before = this.views.get(name);
    if (o && isBound(o)) {
      const v = toNodeRoleView(o);
      this.views.set(name, v);
      if (!before || before.parents.join('\n') !== v.parents.join('\n')) this.children = undefined;
    } else if (before) {
      this.views.delete(name);
      this.children = undefined;
    }
  }

  /** Bound noderoles as decision views (a snapshot: later events do not change it). */
  boundViews(): Map<string, NodeRoleDecisionView> {
    return new Map(this.views);
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
   * Noderoles grouped by spec.node or spec.deployment, rebuilt only when something changed, so
   * per-node and per-deployment status controllers do not scan every noderole per key.
   */
  by(field: 'node' | 'deployment', key: string): readonly Readonly<NodeRole>[] {
    let cached = this.indexes.get(field);
    if (cached?.version !== this.version) {
      const index = new Map<string, Readonly<NodeRole>[]>();
      for (const nr of this.list()) {
        const k = nr.spec[field];
        const list = index.get(k);
        if (list) list.push(nr);
        else index.set(k, [nr]);
      }
      cached = { version: this.version, index };
      this.indexes.set(field, cached);
    }
    return cached.index.get(key) ?? [];
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
