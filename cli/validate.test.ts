import { describe, expect, it } from 'vitest';
import {
  checkAddressIn,
  checkFqdn,
  checkMac,
  checkRange,
  checkRangesDisjoint,
  checkSubnet,
  checkV6prefix,
  parseRange,
} from './validate.ts';

describe('init validation (as the CRDs judge)', () => {
  it.each([
    ['admin.lab.example.com', true],
    ['admin.lab', false],
    ['Admin.lab.example.com', false],
    ['a-.lab.example.com', false],
  ])('FQDN %s', (s, ok) => {
    expect(checkFqdn(s) === undefined).toBe(ok);
  });
  it.each([
    ['52:54:00:00:00:01', true],
    ['52:54:00:00:00:0G', false],
    ['52-54-00-00-00-01', false],
  ])('MAC %s', (s, ok) => {
    expect(checkMac(s) === undefined).toBe(ok);
  });
  it.each([
    ['192.168.124.0/24', true],
    ['192.168.124.5/24', false],
    ['192.168.124.0', false],
    ['fd00::/64', false],
    ['300.1.1.0/24', false],
  ])('subnet %s', (s, ok) => {
    expect(checkSubnet(s) === undefined).toBe(ok);
  });
  it.each([
    ['auto', true],
    ['fd12:3456:789a:1::/64', true],
    ['fd12:3456:789a:1::1/64', false],
    ['fd12::/48', false],
    ['10.0.0.0/8', false],
  ])('v6prefix %s', (s, ok) => {
    expect(checkV6prefix(s) === undefined).toBe(ok);
  });
  it('ranges: inside the subnet, ordered, disjoint, well named', () => {
    const s = '192.168.124.0/24';
    const r = (x: string) => {
      const p = parseRange(x);
      if (typeof p === 'string') throw new Error(p);
      return p;
    };
    expect(checkRange(r('host=192.168.124.81-192.168.124.160'), s)).toBeUndefined();
    expect(checkRange(r('host=192.168.125.81-192.168.125.160'), s)).toMatch(
      /not an IPv4 address inside/,
    );
    expect(checkRange(r('host=192.168.124.90-192.168.124.80'), s)).toMatch(/comes after/);
    expect(checkRange(r('Host=192.168.124.1-192.168.124.2'), s)).toMatch(/range name/);
    expect(parseRange('host')).toMatch(/name=first-last/);
    expect(
      checkRangesDisjoint([
        r('a=192.168.124.1-192.168.124.10'),
        r('b=192.168.124.10-192.168.124.20'),
      ]),
    ).toMatch(/overlap/);
    expect(checkAddressIn('192.168.124.1', s)).toBeUndefined();
    expect(checkAddressIn('10.0.0.1', s)).toMatch(/inside/);
  });
});
