import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseIp } from './address.ts';
import { parseCidr, rangeSize } from './ranges.ts';
import {
  autoPrefix,
  interfaceId,
  isGlobalId,
  nextSubnetId,
  nodeV6Address,
  parsePrefix64,
  randomGlobalId,
  v6HostRange,
} from './v6.ts';

/**
 * md5 digests computed outside this code, with `printf '%s' NAME | md5sum` in a shell. The
 * interface ID is the last 16 hex digits (64 bits) of the digest of the lower-cased name.
 * The first entry is CROWBAR-MODEL §7.5's own example.
 */
const MD5SUM: readonly (readonly [name: string, md5: string])[] = [
  ['node1.example.com', 'ba42a7de06c9ecc9726446a8b44801fa'],
  ['admin.crowbar.local', '6761b1d55290ec846c51e33ca7bcc113'],
  ['d52-54-00-12-34-56.cluster.example.org', '3de1bfdda5f75516eadf5d0c9d8e6aaf'],
  ['a.b', 'e32b629f658481c8aa169aa08acc0625'],
  ['node6.example.com', '1d633afdeb66bdf24868082a0c313cdb'],
  ['node11.example.com', 'b2768617d8fba9bc0f096a772bc3b39c'],
  ['', 'd41d8cd98f00b204e9800998ecf8427e'],
];

/** md5sum of the upper-case spellings themselves: the ID must NOT come from these. */
const MD5SUM_UPPER: readonly (readonly [name: string, lowered: string, md5: string])[] = [
  ['NODE1.Example.COM', 'node1.example.com', '93a654ee5ea79375c0a5a1b83fdd9028'],
  ['Admin.Crowbar.Local', 'admin.crowbar.local', '468371373f5884ff13505b1ae6c3a4a0'],
];

describe('interfaceId (§7.5: last 64 bits of md5 of the lower-cased FQDN)', () => {
  it.each(MD5SUM)('%s', (name, md5) => {
    expect(interfaceId(name)).toBe(BigInt(`0x${md5.slice(16)}`));
  });

  it.each(MD5SUM_UPPER)('%s is lower-cased before hashing', (name, lowered, rawMd5) => {
    const expected = MD5SUM.find(([n]) => n === lowered)?.[1];
    expect(expected).toBeDefined();
    expect(interfaceId(name)).toBe(BigInt(`0x${expected!.slice(16)}`));
    expect(interfaceId(name)).not.toBe(BigInt(`0x${rawMd5.slice(16)}`));
  });

  it('always fits in 64 bits', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const id = interfaceId(s);
        return id >= 0n && id < 1n << 64n;
      }),
    );
  });
});

describe('autoPrefix (RFC 4193 §3.1: fd + 40-bit global ID + 16-bit subnet ID)', () => {
  it.each([
    ['123456789a', 1, 'fd12:3456:789a:1::/64'],
    ['0000000000', 0, 'fd00::/64'],
    ['0000000000', 1, 'fd00:0:0:1::/64'],
    ['ffffffffff', 0xffff, 'fdff:ffff:ffff:ffff::/64'],
    ['00000a0000', 0x2a, 'fd00:a:0:2a::/64'],
    ['abcdef0123', 0x1000, 'fdab:cdef:123:1000::/64'],
  ] as const)('global ID %s, subnet %i → %s', (gid, subnet, expected) => {
    expect(autoPrefix(gid, subnet)).toBe(expected);
  });

  it('lies in fd00::/8 (L = 1), not in Crowbar fc00::/8 (L = 0, reserved by RFC 4193 §3.1)', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[0-9a-f]{10}$/),
        fc.integer({ min: 0, max: 0xffff }),
        (gid, subnet) => {
          const p = parseCidr(autoPrefix(gid, subnet));
          expect(p.prefixLength).toBe(64);
          expect(p.network >> 120n).toBe(0xfdn);
          // The 40-bit global ID and 16-bit subnet ID come back out of bits 8-47 and 48-63.
          expect((p.network >> 80n) & 0xff_ffff_ffffn).toBe(BigInt(`0x${gid}`));
          expect((p.network >> 64n) & 0xffffn).toBe(BigInt(subnet));
        },
      ),
    );
  });

  it.each([
    ['123456789', 1, /ten lower-case hex digits/],
    ['123456789A', 1, /ten lower-case hex digits/],
    ['123456789ab', 1, /ten lower-case hex digits/],
    ['123456789a', -1, /0 to 65535/],
    ['123456789a', 65536, /0 to 65535/],
    ['123456789a', 1.5, /0 to 65535/],
  ] as const)('refuses global ID %s / subnet %d', (gid, subnet, message) => {
    expect(() => autoPrefix(gid, subnet)).toThrow(message);
  });
});

describe('randomGlobalId', () => {
  it('asks for 5 bytes and prints them as ten hex digits', () => {
    const asked: number[] = [];
    const gid = randomGlobalId((n) => {
      asked.push(n);
      return Uint8Array.of(0x12, 0x34, 0x56, 0x78, 0x9a);
    });
    expect(asked).toEqual([5]);
    expect(gid).toBe('123456789a');
    expect(autoPrefix(gid, 1)).toBe('fd12:3456:789a:1::/64');
  });

  it('keeps leading zero bytes', () => {
    expect(randomGlobalId(() => new Uint8Array(5))).toBe('0000000000');
  });

  it('refuses a short read', () => {
    expect(() => randomGlobalId(() => new Uint8Array(4))).toThrow(/5 random bytes/);
  });

  it('always yields a valid global ID', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 5, maxLength: 5 }), (b) =>
        isGlobalId(randomGlobalId(() => b)),
      ),
    );
  });
});

describe('nodeV6Address', () => {
  it.each([
    ['fd12:3456:789a:1::/64', 'node1.example.com', 'fd12:3456:789a:1:7264:46a8:b448:1fa'],
    ['fd00::/64', 'node1.example.com', 'fd00::7264:46a8:b448:1fa'],
    ['fd00::/64', 'NODE1.EXAMPLE.COM', 'fd00::7264:46a8:b448:1fa'],
    ['fd00::/64', 'node11.example.com', 'fd00::f09:6a77:2bc3:b39c'],
    ['2001:db8:0:7::/64', 'node6.example.com', '2001:db8:0:7:4868:82a:c31:3cdb'],
  ] as const)('%s + %s → %s', (prefix, fqdn, expected) => {
    expect(nodeV6Address(prefix, fqdn)).toBe(expected);
  });

  it.each(['fd00::/48', 'fd00::1/64', '10.0.0.0/8', 'fd00::'])('refuses prefix %s', (prefix) => {
    expect(() => nodeV6Address(prefix, 'a.b')).toThrow();
  });

  it('keeps the prefix and carries the interface ID', () => {
    fc.assert(
      fc.property(fc.domain(), (fqdn) => {
        const v = parseIp(nodeV6Address('fd12:3456:789a:1::/64', fqdn)).value;
        return (
          v >> 64n === 0xfd12_3456_789a_0001n && (v & ((1n << 64n) - 1n)) === interfaceId(fqdn)
        );
      }),
    );
  });
});

describe('parsePrefix64 and v6HostRange', () => {
  it('derives ::1 up to below the RFC 2526 subnet anycast block', () => {
    const r = v6HostRange('fd00:0:0:1::/64');
    expect(r.first).toBe(parseIp('fd00:0:0:1::1').value);
    expect(r.last).toBe(parseIp('fd00:0:0:1:ffff:ffff:ffff:ff7f').value);
    expect(rangeSize(r)).toBe((1n << 64n) - 129n);
  });

  it('refuses anything but an IPv6 /64', () => {
    expect(() => parsePrefix64('fd00::/63')).toThrow(/IPv6 \/64/);
    expect(() => parsePrefix64('10.0.0.0/24')).toThrow(/IPv6 \/64/);
  });
});

describe('nextSubnetId', () => {
  it.each([
    [[], 1],
    [[1, 2, 3], 4],
    [[2, 3], 1],
    [[1, 3], 2],
    [[0, 1], 2],
  ] as const)('taken %j → %i', (taken, expected) => {
    expect(nextSubnetId(taken)).toBe(expected);
  });

  it('fails clearly when all 65535 are taken', () => {
    const all = Array.from({ length: 0xffff }, (_, i) => i + 1);
    expect(() => nextSubnetId(all)).toThrow(/all 65535 RFC 4193 subnet IDs are in use/);
  });
});
