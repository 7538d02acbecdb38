import { describe, expect, it } from 'vitest';
import type { NodeRole } from '../../../generated/crowbar.ts';
import type { CachedInformer } from '../../runtime/informer.ts';
import { NodeRoleView } from './view.ts';

/** An in-memory stand-in for the informer cache: the view reads get/list and subscribes with on. */
class MemoryCache {
  readonly objects = new Map<string, NodeRole>();
  private handlers: { onAdd?: (o: NodeRole) => void; onUpdate?: (o: NodeRole) => void }[] = [];
  on(h: { onAdd?: (o: NodeRole) => void; onUpdate?: (o: NodeRole) => void }): void {
    this.handlers.push(h);
  }
  get(name: string): NodeRole | undefined {
    return this.objects.get(name);
  }
  list(): NodeRole[] {
    return [...this.objects.values()];
  }
  put(o: NodeRole): void {
    const name = o.metadata.name ?? '';
    const had = this.objects.has(name);
    this.objects.set(name, o);
    for (const h of this.handlers) (had ? h.onUpdate : h.onAdd)?.(o);
  }
}

function nr(
  name: string,
  rv: number,
  cohort: number | undefined,
  parents: string[] = [],
): NodeRole {
  const [role = '', ...rest] = name.split('.');
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'NodeRole',
    metadata: { name, resourceVersion: String(rv) },
    spec: { role, node: rest.join('.'), deployment: 'system' },
    ...(cohort === undefined ? {} : { status: { cohort, parents, state: 'todo' as const } }),
  };
}

function setup(): { cache: MemoryCache; view: NodeRoleView } {
  const cache = new MemoryCache();
  const view = new NodeRoleView(cache as unknown as CachedInformer<NodeRole>);
  return { cache, view };
}

describe('NodeRoleView', () => {
  it('keeps bound noderoles in (cohort, name) order and re-sorts when a cohort changes', () => {
    const { cache, view } = setup();
    cache.put(nr('b.n1', 1, 0));
    cache.put(nr('a.n1', 2, 1, ['b.n1']));
    cache.put(nr('c.n1', 3, 0));
    cache.put(nr('u.n1', 4, undefined)); // not bound yet: the binder's
    expect(view.cohortOrder()).toEqual(['b.n1', 'c.n1', 'a.n1']);
    cache.put(nr('c.n1', 5, 2, ['a.n1']));
    expect(view.cohortOrder()).toEqual(['b.n1', 'a.n1', 'c.n1']);
    expect(view.childrenIndex().get('a.n1')).toEqual(['c.n1']);
    cache.put(nr('u.n1', 6, 0));
    expect(view.cohortOrder()).toEqual(['b.n1', 'u.n1', 'a.n1', 'c.n1']);
  });

  it('prefers its own newer write over a lagging cache, then drops it once the cache catches up', () => {
    const { cache, view } = setup();
    cache.put(nr('a.n1', 10, 0));
    view.wrote({ ...nr('a.n1', 12, 0), status: { cohort: 0, state: 'active' } });
    expect(view.boundViews().get('a.n1')?.state).toBe('active');
    cache.put({ ...nr('a.n1', 13, 0), status: { cohort: 0, state: 'error' } });
    expect(view.get('a.n1')?.status?.state).toBe('error');
    expect(view.boundViews().get('a.n1')?.state).toBe('error');
  });
});

describe('NodeRoleView refresh listener', () => {
  it('tells each name after the view reads its new object: cache events, own writes, forgets', () => {
    const cache = new MemoryCache();
    const told: string[] = [];
    const view: NodeRoleView = new NodeRoleView(
      cache as unknown as CachedInformer<NodeRole>,
      (name) => {
        told.push(`${name}:${view.boundViews().get(name)?.state ?? 'none'}`);
      },
    );
    cache.put(nr('a.n1', 1, 0));
    view.wrote({ ...nr('a.n1', 3, 0), status: { cohort: 0, state: 'active' } });
    cache.put({ ...nr('b.n1', 2, undefined) });
    view.forget('a.n1');
    expect(told).toEqual(['a.n1:todo', 'a.n1:active', 'b.n1:none', 'a.n1:todo']);
  });
});
