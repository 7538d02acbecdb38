import { describe, expect, it } from 'vitest';
import { LayeredMap } from './layered-map.ts';

describe('LayeredMap', () => {
  const base = new Map([
    ['a', 1],
    ['b', 2],
    ['c', 3],
  ]);

  it('reads replaced values over the base, in the base order, without changing the base', () => {
    const m = new LayeredMap(base, [['b', 20]]);
    expect(m.get('b')).toBe(20);
    expect(m.get('a')).toBe(1);
    expect([...m]).toEqual([
      ['a', 1],
      ['b', 20],
      ['c', 3],
    ]);
    expect([...m.values()]).toEqual([1, 20, 3]);
    expect([...m.keys()]).toEqual(['a', 'b', 'c']);
    expect(m.size).toBe(3);
    expect(base.get('b')).toBe(2);
  });

  it('ignores keys the base does not hold, as a copy-and-set of existing keys would not add them', () => {
    const m = new LayeredMap(base, [['z', 26]]);
    expect(m.has('z')).toBe(false);
    expect(m.get('z')).toBeUndefined();
    expect(m.size).toBe(3);
  });

  it('flattens a layer over a layer: later values win, earlier layers are untouched', () => {
    const one = new LayeredMap(base, [['a', 10]]);
    const two = new LayeredMap(one, [
      ['c', 30],
      ['a', 100],
    ]);
    expect([...two.values()]).toEqual([100, 2, 30]);
    expect([...one.values()]).toEqual([10, 2, 3]);
    const seen: string[] = [];
    two.forEach((v, k, map) => {
      seen.push(`${k}=${String(v)}`);
      expect(map).toBe(two);
    });
    expect(seen).toEqual(['a=100', 'b=2', 'c=30']);
  });
});
