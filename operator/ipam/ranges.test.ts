import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Family } from './address.ts';
import { expandIp, formatIp, maxValue, parseIp } from './address.ts';
import type { IpRange } from './ranges.ts';
import {
  cidrContains,
  cidrHostRange,
  cidrRange,
  cidrsOverlap,
  countTakenIn,
  firstFree,
  formatCidr,
  formatRange,
  freeAddresses,
  indexOfAddress,
  nextFree,
  nthAddress,
  parseCidr,
  parseIpWithPrefix,
  parseRange,
  rangeContains,
  rangeSize,
  rangesOverlap,
  sortedDistinct,
} from './ranges.ts';

const ip = (s: string) => parseIp(s);
const v = (s: string) => parseIp(s).value;
const take = (n: number, it: Iterable<bigint>): bigint[] => {
  const out: bigint[] = [];
  for (const x of it) {
    if (out.length >= n) break;
    out.push(x);
  }
  return out;
};

describe('parseIp / formatIp / expandIp', () => {
  it.each([
    ['192.168.124.81', 'ipv4', '192.168.124.81', '192.168.124.81'],
    ['0.0.0.0', 'ipv4', '0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', 'ipv4', '255.255.255.255', '255.255.255.255'],
    ['FD00::1', 'ipv6', 'fd00::1', 'fd00:0000:0000:0000:0000:0000:0000:0001'],
    [
      '2001:db8:0:0:1:0:0:1',
      'ipv6',
      '2001:db8::1:0:0:1',
      '2001:0db8:0000:0000:0001:0000:0000:0001',
    ],
    ['::', 'ipv6', '::', '0000:0000:0000:0000:0000:0000:0000:0000'],
  ] as const)('%s', (text, family, formatted, expanded) => {
    const a = parseIp(text);
    expect(a.family).toBe(family);
    expect(formatIp(a)).toBe(formatted);
    expect(expandIp(a)).toBe(expanded);
  });

  it.each([
    '192.168.124.081',
    '192.168.124',
    '256.1.1.1',
    'fd00:::1',
    'fe80::1%eth0',
    '10.0.0.1/24',
    '',
    'x',
  ])('refuses %j', (text) => {
    expect(() => parseIp(text)).toThrow();
  });

  it('round-trips every value', () => {
    const family = fc.constantFrom<Family>('ipv4', 'ipv6');
    fc.assert(
      fc.property(
        family.chain((f) =>
          fc.bigInt({ min: 0n, max: maxValue(f) }).map((value) => ({ family: f, value })),
        ),
        (a) => {
          expect(parseIp(formatIp(a))).toEqual(a);
          expect(parseIp(expandIp(a))).toEqual(a);
        },
      ),
    );
  });
});

describe('parseCidr', () => {
  it.each([
    ['192.168.124.0/24', 'ipv4', 24, 256n],
    ['10.0.0.0/8', 'ipv4', 8, 1n << 24n],
    ['0.0.0.0/0', 'ipv4', 0, 1n << 32n],
    ['10.0.0.4/31', 'ipv4', 31, 2n],
    ['10.0.0.4/32', 'ipv4', 32, 1n],
    ['fd00:0:0:1::/64', 'ipv6', 64, 1n << 64n],
    ['fd00::2/127', 'ipv6', 127, 2n],
    ['fd00::2/128', 'ipv6', 128, 1n],
    ['::/0', 'ipv6', 0, 1n << 128n],
  ] as const)('%s', (text, family, length, size) => {
    const c = parseCidr(text);
    expect(c.family).toBe(family);
    expect(c.prefixLength).toBe(length);
    expect(rangeSize(cidrRange(c))).toBe(size);
    expect(parseCidr(formatCidr(c))).toEqual(c);
  });

  it.each([
    ['192.168.124.5/24', /host bits set: name the network address, e.g. 192.168.124.0\/24/],
    ['10.0.0.5/31', /e\.g\. 10\.0\.0\.4\/31/],
    ['fd00::1/64', /e\.g\. fd00::\/64/],
    ['fd00::1/127', /e\.g\. fd00::\/127/],
    ['10.0.0.0/33', /at most 32/],
    ['fd00::/129', /at most 128/],
    ['10.0.0.0', /needs a prefix length/],
    ['10.0.0.0/', /needs a prefix length/],
    ['10.0.0.0/024', /needs a prefix length/],
    ['10.0.0.0/-1', /needs a prefix length/],
  ] as const)('refuses %s', (text, message) => {
    expect(() => parseCidr(text)).toThrow(message);
  });

  it('parseIpWithPrefix keeps host bits', () => {
    const a = parseIpWithPrefix('192.168.124.81/24');
    expect(formatIp(a.ip)).toBe('192.168.124.81');
    expect(a.prefixLength).toBe(24);
  });
});

describe('host ranges at the edges', () => {
  it.each([
    // RFC 1122: no network or broadcast address on ordinary subnets.
    ['192.168.124.0/24', '192.168.124.1', '192.168.124.254', 254n],
    ['10.0.0.0/30', '10.0.0.1', '10.0.0.2', 2n],
    // RFC 3021 §2.2.1: both addresses of a /31 are hosts.
    ['10.0.0.4/31', '10.0.0.4', '10.0.0.5', 2n],
    ['10.0.0.4/32', '10.0.0.4', '10.0.0.4', 1n],
    // RFC 4291 §2.6.1: not the Subnet-Router anycast (all-zero interface ID).
    ['fd00::/64', 'fd00::1', 'fd00::ffff:ffff:ffff:ffff', (1n << 64n) - 1n],
    ['fd00::/126', 'fd00::1', 'fd00::3', 3n],
    // RFC 6164 §5: both addresses of a /127 are hosts.
    ['fd00::2/127', 'fd00::2', 'fd00::3', 2n],
    ['fd00::2/128', 'fd00::2', 'fd00::2', 1n],
  ] as const)('%s hosts %s-%s', (cidr, first, last, size) => {
    const r = cidrHostRange(parseCidr(cidr));
    expect(r.first).toBe(v(first));
    expect(r.last).toBe(v(last));
    expect(rangeSize(r)).toBe(size);
  });
});

describe('contains, nth, index, overlap', () => {
  const host: IpRange = parseRange('192.168.124.81', '192.168.124.254');

  it('contains its ends and nothing beyond', () => {
    expect(rangeContains(host, ip('192.168.124.81'))).toBe(true);
    expect(rangeContains(host, ip('192.168.124.254'))).toBe(true);
    expect(rangeContains(host, ip('192.168.124.80'))).toBe(false);
    expect(rangeContains(host, ip('192.168.124.255'))).toBe(false);
    expect(rangeContains(host, ip('::ffff:192.168.124.81'))).toBe(false); // another family
    expect(cidrContains(parseCidr('192.168.124.0/24'), ip('192.168.125.0'))).toBe(false);
    expect(cidrContains(parseCidr('0.0.0.0/0'), ip('255.255.255.255'))).toBe(true);
  });

  it('nth and index are inverse, at first and last', () => {
    expect(rangeSize(host)).toBe(174n);
    expect(formatIp(nthAddress(host, 0n))).toBe('192.168.124.81');
    expect(formatIp(nthAddress(host, 173n))).toBe('192.168.124.254');
    expect(() => nthAddress(host, 174n)).toThrow(/outside 192\.168\.124\.81-192\.168\.124\.254/);
    expect(() => nthAddress(host, -1n)).toThrow();
    expect(indexOfAddress(host, ip('192.168.124.254'))).toBe(173n);
    expect(indexOfAddress(host, ip('192.168.124.80'))).toBeUndefined();
    const all6 = cidrRange(parseCidr('::/0'));
    expect(formatIp(nthAddress(all6, (1n << 128n) - 1n))).toBe(
      'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
    );
  });

  it.each([
    ['192.168.124.10', '192.168.124.20', '192.168.124.20', '192.168.124.30', true],
    ['192.168.124.10', '192.168.124.20', '192.168.124.21', '192.168.124.30', false],
    ['192.168.124.10', '192.168.124.90', '192.168.124.50', '192.168.124.60', true],
    ['fd00::1', 'fd00::10', 'fd00::10', 'fd00::20', true],
    ['fd00::1', 'fd00::10', 'fd00::11', 'fd00::20', false],
    ['0.0.0.1', '0.0.0.2', '::1', '::2', false],
  ] as const)('%s-%s vs %s-%s overlap: %s', (a1, a2, b1, b2, expected) => {
    const a = parseRange(a1, a2);
    const b = parseRange(b1, b2);
    expect(rangesOverlap(a, b)).toBe(expected);
    expect(rangesOverlap(b, a)).toBe(expected);
  });

  it.each([
    ['10.0.0.0/8', '10.1.0.0/16', true],
    ['10.0.0.0/24', '10.0.1.0/24', false],
    ['10.0.0.0/31', '10.0.0.1/32', true],
    ['fd00::/64', 'fd00:0:0:1::/64', false],
    ['fd00::/48', 'fd00:0:0:1::/64', true],
  ] as const)('subnets %s and %s overlap: %s', (a, b, expected) => {
    expect(cidrsOverlap(parseCidr(a), parseCidr(b))).toBe(expected);
  });

  it('parseRange refuses mixed families and reversed ends', () => {
    expect(() => parseRange('10.0.0.1', 'fd00::1')).toThrow(/mixes ipv4 and ipv6/);
    expect(() => parseRange('fd00::9', 'fd00::1')).toThrow(
      /starts after it ends: swap first and last/,
    );
    expect(formatRange(parseRange('fd00::1', 'fd00::9'))).toBe('fd00::1-fd00::9');
  });
});

describe('free addresses', () => {
  const r = parseRange('10.0.0.1', '10.0.0.10');

  it('skips runs of taken addresses', () => {
    const taken = sortedDistinct([v('10.0.0.1'), v('10.0.0.2'), v('10.0.0.3'), v('10.0.0.5')]);
    expect([...freeAddresses(r, taken)].map((x) => formatIp({ family: 'ipv4', value: x }))).toEqual(
      ['10.0.0.4', '10.0.0.6', '10.0.0.7', '10.0.0.8', '10.0.0.9', '10.0.0.10'],
    );
    expect(countTakenIn(r, taken)).toBe(4);
  });

  it('starts at a given address and wraps', () => {
    const taken = sortedDistinct([v('10.0.0.9'), v('10.0.0.10'), v('10.0.0.1')]);
    expect(take(3, freeAddresses(r, taken, v('10.0.0.9')))).toEqual([
      v('10.0.0.2'),
      v('10.0.0.3'),
      v('10.0.0.4'),
    ]);
    expect(firstFree(r, taken, v('10.0.0.8'))).toBe(v('10.0.0.8'));
  });

  it('a full range has none, a range of one has one', () => {
    const all = Array.from({ length: 10 }, (_, i) => v('10.0.0.1') + BigInt(i));
    expect(firstFree(r, all)).toBeUndefined();
    expect([...freeAddresses(r, all)]).toEqual([]);
    const single = parseCidr('10.0.0.4/32');
    expect([...freeAddresses(cidrRange(single), [])]).toEqual([v('10.0.0.4')]);
    expect(firstFree(cidrRange(single), [v('10.0.0.4')])).toBeUndefined();
    const p2p = cidrHostRange(parseCidr('fd00::2/127'));
    expect([...freeAddresses(p2p, [v('fd00::2')])]).toEqual([v('fd00::3')]);
  });

  it('ignores taken values outside the range', () => {
    const taken = sortedDistinct([v('10.0.0.0'), v('10.0.0.11'), v('10.0.0.1')]);
    expect(firstFree(r, taken)).toBe(v('10.0.0.2'));
    expect(countTakenIn(r, taken)).toBe(1);
  });

  it('finds the hole after a million taken addresses of a /64 without walking them', () => {
    const base = v('fd00::1');
    const taken = Array.from({ length: 1_000_000 }, (_, i) => base + BigInt(i));
    const range = cidrHostRange(parseCidr('fd00::/64'));
    expect(firstFree(range, taken)).toBe(base + 1_000_000n);
    const last = taken.pop()!;
    expect(nextFree(base, range.last, taken)).toBe(last);
  });

  const small = fc
    .tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 60 }))
    .map(([a, b]): IpRange => ({
      family: 'ipv4',
      first: BigInt(Math.min(a, b)),
      last: BigInt(Math.max(a, b)),
    }));
  const takenArb = fc
    .uniqueArray(fc.integer({ min: 0, max: 64 }), { maxLength: 64 })
    .map((xs) => sortedDistinct(xs.map(BigInt)));

  it('never yields a taken address, yields every free one once, in wrapped order', () => {
    fc.assert(
      fc.property(small, takenArb, fc.integer({ min: 0, max: 64 }), (range, taken, s) => {
        const start = BigInt(s);
        const got = [...freeAddresses(range, taken, start)];
        const from = start < range.first || start > range.last ? range.first : start;
        const model: bigint[] = [];
        for (let x = from; x <= range.last; x++) if (!taken.includes(x)) model.push(x);
        for (let x = range.first; x < from; x++) if (!taken.includes(x)) model.push(x);
        expect(got).toEqual(model);
        expect(got.length).toBe(Number(rangeSize(range)) - countTakenIn(range, taken));
      }),
    );
  });

  it('nextFree agrees with a linear scan', () => {
    fc.assert(
      fc.property(small, takenArb, (range, taken) => {
        let model: bigint | undefined;
        for (let x = range.first; x <= range.last; x++) {
          if (!taken.includes(x)) {
            model = x;
            break;
          }
        }
        expect(nextFree(range.first, range.last, taken)).toBe(model);
      }),
    );
  });
});
