/**
 * A read-only map made of a shared base and a small set of replaced values. A pass applies a
 * handful of state changes to a world of ten thousand noderoles, several times (settle, retries,
 * each run it starts); copying the whole map for each was most of a pass's CPU. Layers never
 * nest: layering over a layered map copies only its replacements.
 */
export class LayeredMap<K, V> implements ReadonlyMap<K, V> {
  private readonly base: ReadonlyMap<K, V>;
  private readonly top: Map<K, V>;

  /** `base` with the values of `replace` for keys it already holds (other keys are ignored). */
  constructor(base: ReadonlyMap<K, V>, replace: Iterable<readonly [K, V]>) {
    const top = new Map<K, V>();
    let root = base;
    if (base instanceof LayeredMap) {
      const layered = base as LayeredMap<K, V>;
      root = layered.base;
      for (const [k, v] of layered.top) top.set(k, v);
    }
    for (const [k, v] of replace) if (root.has(k)) top.set(k, v);
    this.base = root;
    this.top = top;
  }

  /** The keys whose values this layer (and any it flattened) replaced. */
  replaced(): Iterable<K> {
    return this.top.keys();
  }

  get size(): number {
    return this.base.size;
  }

  get(key: K): V | undefined {
    return this.top.get(key) ?? this.base.get(key);
  }

  has(key: K): boolean {
    return this.base.has(key);
  }

  *entries(): MapIterator<[K, V]> {
    for (const [k, v] of this.base) yield [k, this.top.get(k) ?? v];
  }

  keys(): MapIterator<K> {
    return this.base.keys();
  }

  *values(): MapIterator<V> {
    for (const [k, v] of this.base) yield this.top.get(k) ?? v;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(fn: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }
}
