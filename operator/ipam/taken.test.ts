import { describe, expect, it } from 'vitest';
import { formatIp, parseIp } from './address.ts';
import { TakenIndex } from './taken.ts';

const ip = (s: string) => parseIp(s);
const held = (t: TakenIndex, node: string, family: 'ipv4' | 'ipv6' = 'ipv4') =>
  t.heldBy(node, family).map(formatIp);

describe('TakenIndex', () => {
  it('answers heldBy per node and family, ascending, through adds and removes', () => {
    const t = TakenIndex.from([
      { address: '10.0.0.9/24', node: 'a' },
      { address: '10.0.0.3', node: 'b' },
      { address: '10.0.0.5', node: 'a' },
      { address: 'fd00::1/64', node: 'a' },
    ]);
    expect(held(t, 'a')).toEqual(['10.0.0.5', '10.0.0.9']);
    expect(held(t, 'a', 'ipv6')).toEqual(['fd00::1']);
    expect(held(t, 'b')).toEqual(['10.0.0.3']);
    expect(held(t, 'c')).toEqual([]);
    t.remove(ip('10.0.0.5'));
    t.remove(ip('10.0.0.77')); // free: nothing happens
    expect(held(t, 'a')).toEqual(['10.0.0.9']);
    t.remove(ip('10.0.0.3'));
    expect(held(t, 'b')).toEqual([]);
    // A released address can go to another node, which then holds it alone.
    t.add(ip('10.0.0.5'), 'b');
    expect(held(t, 'a')).toEqual(['10.0.0.9']);
    expect(held(t, 'b')).toEqual(['10.0.0.5']);
    expect(t.sorted('ipv4')).toEqual([ip('10.0.0.5').value, ip('10.0.0.9').value]);
    expect(() => {
      t.add(ip('10.0.0.9'), 'b');
    }).toThrow(/held by a/);
    expect(held(t, 'b')).toEqual(['10.0.0.5']);
  });

  it('agrees with a walk over every address for a random sequence of adds and removes', () => {
    const t = new TakenIndex();
    const truth = new Map<bigint, string>();
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 2000; i++) {
      const value = 0x0a000000n + BigInt(rand(300));
      const node = `n${rand(20)}`;
      if (truth.has(value)) {
        t.remove({ family: 'ipv4', value });
        truth.delete(value);
      } else {
        t.add({ family: 'ipv4', value }, node);
        truth.set(value, node);
      }
    }
    for (let n = 0; n < 20; n++) {
      const want = [...truth]
        .filter(([, node]) => node === `n${n}`)
        .map(([v]) => v)
        .sort((a, b) => (a < b ? -1 : 1));
      expect(t.heldBy(`n${n}`, 'ipv4').map((x) => x.value)).toEqual(want);
    }
  });
});
