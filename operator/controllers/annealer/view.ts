/**
 * The annealer's view of NodeRoles: the informer cache, overlaid with the objects this process
 * wrote itself until the cache catches up. Without it, a pass that runs right after a write would
 * see the old state and decide again (e.g. start a run twice).
 */
import type { NodeRole } from '../../../generated/crowbar.ts';
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

  constructor(cache: CachedInformer<NodeRole>) {
    this.cache = cache;
    const bump = (): void => {
      this.version++;
    };
    cache.on({ onAdd: bump, onUpdate: bump, onDelete: bump });
  }

  /** Records an object returned by a write. */
  wrote(o: NodeRole): void {
    const name = o.metadata.name;
    if (name) this.overlay.set(name, o);
    this.version++;
  }

  forget(name: string): void {
    this.overlay.delete(name);
    this.version++;
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
