/**
 * The operator's decided but not yet written state changes, seen as made. A commit of N
 * noderoles decides N writes in one pass; while the API server takes them (minutes at 100,000),
 * every pass must see them as made. Re-applying the whole backlog to the world on each pass
 * copied it and walked it in every state lookup: at 10,000 x 10 passes took seconds and the
 * event loop stalled for 20 s. Here the backlog is applied lazily, per read, and indexed by the
 * state each change sets, so a pass costs what it reads, not the backlog's size.
 */
import type { NodeRoleState, StateChange } from './states.ts';
import type { NodeRoleView } from './world.ts';

/** `nr` with `c` written (the fields a state change sets). */
export function withChange<V extends NodeRoleView>(nr: V, c: StateChange): V {
  return {
    ...nr,
    state: c.state,
    message: c.message,
    runCount: c.runCount ?? nr.runCount,
    observedRetry: c.observedRetry ?? nr.observedRetry,
  };
}

/** At most one change per noderole (the newest decision), indexed by the state it sets. */
export class PendingChanges {
  private readonly changes = new Map<string, StateChange>();
  private readonly states = new Map<NodeRoleState, Set<string>>();
  /**
   * Each change's last application: a pass reads every pending `todo` (10,000 after a commit at
   * 10,000 nodes) and passes come with every write, so re-making the same object each time was
   * most of the operator's garbage. Keyed by the change; valid while the base view is the same.
   */
  private readonly applied = new WeakMap<StateChange, { base: NodeRoleView; out: NodeRoleView }>();
  private readonly onChange: ((name: string) => void) | undefined;

  /** `onChange`: told the name after each change set or dropped (to keep indexes over them). */
  constructor(onChange?: (name: string) => void) {
    this.onChange = onChange;
  }

  /** `base` with its pending change `c` applied (the same object while neither changes). */
  apply<V extends NodeRoleView>(base: V, c: StateChange): V {
    const hit = this.applied.get(c);
    if (hit?.base === base) return hit.out as V;
    const out = withChange(base, c);
    this.applied.set(c, { base, out });
    return out;
  }

  get size(): number {
    return this.changes.size;
  }

  get(name: string): StateChange | undefined {
    return this.changes.get(name);
  }

  has(name: string): boolean {
    return this.changes.has(name);
  }

  set(c: StateChange): void {
    this.drop(c.name);
    this.changes.set(c.name, c);
    let names = this.states.get(c.state);
    if (!names) this.states.set(c.state, (names = new Set()));
    names.add(c.name);
    this.onChange?.(c.name);
  }

  /** Drops the change of `name`; with `only`, only if that very change is still the pending one. */
  delete(name: string, only?: StateChange): void {
    if (this.drop(name, only)) this.onChange?.(name);
  }

  private drop(name: string, only?: StateChange): boolean {
    const c = this.changes.get(name);
    if (!c || (only !== undefined && c !== only)) return false;
    this.changes.delete(name);
    const names = this.states.get(c.state);
    names?.delete(name);
    if (names?.size === 0) this.states.delete(c.state);
    return true;
  }

  /** Per state, the names a pending change sets to it (live: read it at once). */
  byState(): ReadonlyMap<NodeRoleState, ReadonlySet<string>> {
    return this.states;
  }
}

/**
 * `base` as it reads with `pending` written: each read applies the noderole's pending change, if
 * any. Nothing is copied; both maps are live, so read it within the pass that made it.
 */
export class PendingView<V extends NodeRoleView> implements ReadonlyMap<string, V> {
  private readonly base: ReadonlyMap<string, V>;
  private readonly pending: PendingChanges;

  constructor(base: ReadonlyMap<string, V>, pending: PendingChanges) {
    this.base = base;
    this.pending = pending;
  }

  get size(): number {
    return this.base.size;
  }

  get(key: string): V | undefined {
    const v = this.base.get(key);
    if (v === undefined) return undefined;
    const c = this.pending.get(key);
    return c === undefined ? v : this.pending.apply(v, c);
  }

  has(key: string): boolean {
    return this.base.has(key);
  }

  *entries(): MapIterator<[string, V]> {
    for (const [k, v] of this.base) {
      const c = this.pending.get(k);
      yield [k, c === undefined ? v : this.pending.apply(v, c)];
    }
  }

  keys(): MapIterator<string> {
    return this.base.keys();
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }

  forEach(
    fn: (value: V, key: string, map: ReadonlyMap<string, V>) => void,
    thisArg?: unknown,
  ): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }
}
