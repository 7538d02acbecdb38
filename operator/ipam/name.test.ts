import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Family, Ip } from './address.ts';
import { maxValue, parseIp } from './address.ts';
import { allocationName, parseAllocationName } from './name.ts';

const networkName = fc.stringMatching(/^[a-z]([-a-z0-9]{0,53}[a-z0-9])?$/);
const anyIp = fc
  .constantFrom<Family>('ipv4', 'ipv6')
  .chain((family) =>
    fc.bigInt({ min: 0n, max: maxValue(family) }).map((value): Ip => ({ family, value })),
  );
/** DNS subdomain (RFC 1123) as Kubernetes checks object names. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

describe('allocationName', () => {
  it.each([
    ['admin', '192.168.124.81', 'admin.192-168-124-81'],
    ['admin', '0.0.0.0', 'admin.0-0-0-0'],
    ['bmc-1', '10.0.0.255', 'bmc-1.10-0-0-255'],
    [
      'admin',
      'fd12:3456:789a:1:7264:46a8:b448:1fa',
      'admin.fd12-3456-789a-0001-7264-46a8-b448-01fa',
    ],
    ['admin', 'FD00::1', 'admin.fd00-0000-0000-0000-0000-0000-0000-0001'],
    ['a', '::', 'a.0000-0000-0000-0000-0000-0000-0000-0000'],
  ] as const)('%s + %s → %s', (network, address, expected) => {
    expect(allocationName(network, address)).toBe(expected);
    expect(allocationName(network, parseIp(address))).toBe(expected);
  });

  it('writes one address one way, however it was spelled', () => {
    expect(allocationName('n', 'fd00:0:0::1')).toBe(allocationName('n', 'fd00::0:1'));
  });

  it.each(['Admin', '1net', 'net.work', 'a_b', 'a-', '', 'a'.repeat(56)])(
    'refuses network %j',
    (n) => {
      expect(() => allocationName(n, '10.0.0.1')).toThrow(/not a valid Network name/);
    },
  );

  it('is a valid Kubernetes object name of at most 95 characters', () => {
    fc.assert(
      fc.property(networkName, anyIp, (network, ip) => {
        const name = allocationName(network, ip);
        expect(name).toMatch(DNS_SUBDOMAIN);
        expect(name.length).toBeLessThanOrEqual(95);
      }),
    );
  });

  it('is injective: parseAllocationName inverts it', () => {
    fc.assert(
      fc.property(networkName, anyIp, (network, ip) => {
        expect(parseAllocationName(allocationName(network, ip))).toEqual({ network, ip });
      }),
    );
  });

  it('is injective: distinct (network, address) pairs never share a name', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(networkName, anyIp), {
          selector: ([n, ip]) => `${n}|${ip.family}|${ip.value}`,
          maxLength: 50,
        }),
        (pairs) => {
          const names = pairs.map(([n, ip]) => allocationName(n, ip));
          expect(new Set(names).size).toBe(pairs.length);
        },
      ),
    );
  });

  it('parseAllocationName refuses other names', () => {
    for (const name of [
      'admin',
      'admin.',
      'admin.10-0-0',
      'admin.10-0-0-256',
      'admin.10-0-0-01',
      'admin.fd00--1',
      'admin.fd00-0000-0000-0000-0000-0000-0000-001',
      'Admin.10-0-0-1',
      'network-admin.node1.example.com',
    ]) {
      expect(parseAllocationName(name), name).toBeUndefined();
    }
  });
});
