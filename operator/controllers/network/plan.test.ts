import { describe, expect, it } from 'vitest';
import type { NetworkAllocation } from '../../../generated/crowbar.ts';
import { autoPrefix } from '../../ipam/index.ts';
import type { NetworkView } from '../../ipam/index.ts';
import { Ledger } from './ledger.ts';
import { addressWriteWait, MAX_DEFER_MS } from './addresses.ts';
import fc from 'fast-check';
import {
  bindingAddresses,
  GLOBAL_ID_ANNOTATION,
  networkProblems,
  networkWall,
  parseNetworkNodeRoleName,
  planUlaClaim,
  planUlaRelease,
  readUlaClaims,
  sameJson,
  splitAutoPrefix,
  SUBNET_IDS_ANNOTATION,
} from './plan.ts';

const fixedBytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => 0x12 + i);

function alloc(name: string, address: string, node: string, uid = 'nr-uid'): NetworkAllocation {
  const family = address.includes(':') ? 'ipv6' : 'ipv4';
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'NetworkAllocation',
    metadata: {
      name,
      uid: `${name}-uid`,
      resourceVersion: '1',
      ownerReferences: [{ apiVersion: 'crowbar.dev/v1alpha1', kind: 'NodeRole', name: 'x', uid }],
    },
    spec: {
      network: 'admin',
      node,
      address,
      family,
      range: family === 'ipv4' ? 'host' : 'host-v6',
    },
  };
}

const admin: NetworkView = {
  name: 'admin',
  spec: {
    category: 'admin',
    subnet: '192.168.124.0/24',
    conduit: '1g0',
    ranges: [{ name: 'host', first: '192.168.124.81', last: '192.168.124.254' }],
    router: { address: '192.168.124.1', pref: 10 },
  },
  v6prefix: 'fd12:3456:789a:1::/64',
};

describe('RFC 4193 claims on the system deployment', () => {
  it('draws the global ID once and gives subnet IDs from 1 up', () => {
    const first = planUlaClaim(readUlaClaims(undefined), 'admin', undefined, fixedBytes);
    expect(first.globalId).toBe('1213141516');
    expect(first.subnetId).toBe(1);
    expect(first.prefix).toBe(autoPrefix('1213141516', 1));
    expect(first.write?.[GLOBAL_ID_ANNOTATION]).toBe('1213141516');
    const claims = readUlaClaims(first.write);
    const again = planUlaClaim(claims, 'admin', undefined, () => {
      throw new Error('must not draw again');
    });
    expect(again).toMatchObject({ subnetId: 1, write: undefined });
    const second = planUlaClaim(claims, 'storage', undefined, fixedBytes);
    expect(second.subnetId).toBe(2);
    expect(JSON.parse(second.write?.[SUBNET_IDS_ANNOTATION] ?? '')).toEqual({
      admin: 1,
      storage: 2,
    });
  });

  it('keeps the prefix a network status records when the annotations are lost', () => {
    const recorded = autoPrefix('abcdef0123', 7);
    expect(splitAutoPrefix(recorded)).toEqual({ globalId: 'abcdef0123', subnetId: 7 });
    const plan = planUlaClaim(readUlaClaims({}), 'admin', recorded, fixedBytes);
    expect(plan.prefix).toBe(recorded);
    // But never an ID another network holds.
    const taken = planUlaClaim(
      readUlaClaims({
        [GLOBAL_ID_ANNOTATION]: 'abcdef0123',
        [SUBNET_IDS_ANNOTATION]: '{"other":7}',
      }),
      'admin',
      recorded,
      fixedBytes,
    );
    expect(taken.subnetId).toBe(1);
  });

  it('releases a deleted network and reads malformed annotations as empty', () => {
    const claims = readUlaClaims({ [SUBNET_IDS_ANNOTATION]: '{"a":1,"b":2}' });
    expect(planUlaRelease(claims, 'a')).toEqual({ [SUBNET_IDS_ANNOTATION]: '{"b":2}' });
    expect(planUlaRelease(claims, 'c')).toBeUndefined();
    expect(
      readUlaClaims({ [SUBNET_IDS_ANNOTATION]: 'nope', [GLOBAL_ID_ANNOTATION]: 'xyz' }),
    ).toEqual({
      globalId: undefined,
      subnetIds: {},
    });
    expect(splitAutoPrefix('2001:db8::/64')).toBeUndefined();
  });
});

describe('network problems', () => {
  it('reports a subnet changed under allocations, naming what to do', () => {
    const moved: NetworkView = {
      ...admin,
      spec: {
        ...admin.spec,
        subnet: '10.0.0.0/24',
        ranges: [{ name: 'host', first: '10.0.0.10', last: '10.0.0.20' }],
        router: { address: '10.0.0.1' },
      },
    };
    const problems = networkProblems(
      moved,
      [],
      [alloc('admin.192-168-124-81', '192.168.124.81/24', 'n1')],
    );
    expect(problems.map((p) => p.message).join()).toMatch(
      /spec.subnet cannot change from 192.168.124.0\/24 to 10.0.0.0\/24 while 1 IPv4 addresses/,
    );
    expect(
      networkProblems(admin, [], [alloc('admin.192-168-124-81', '192.168.124.81/24', 'n1')]),
    ).toEqual([]);
  });
});

describe('the data a network noderole hands to jigs', () => {
  it('lists sorted addresses and details with the router of their family', () => {
    const wall = networkWall(admin, [
      {
        address: 'fd12:3456:789a:1::5/64',
        ip: 'fd12:3456:789a:1::5',
        prefixLength: 64,
        family: 'ipv6',
        range: 'host-v6',
      },
      {
        address: '192.168.124.81/24',
        ip: '192.168.124.81',
        prefixLength: 24,
        family: 'ipv4',
        range: 'host',
      },
    ]);
    expect(wall).toMatchObject({
      addresses: ['192.168.124.81/24', 'fd12:3456:789a:1::5/64'],
      conduit: '1g0',
      vlan: 0,
      useVlan: false,
      v6prefix: 'fd12:3456:789a:1::/64',
      details: [
        {
          address: '192.168.124.81',
          prefixLength: 24,
          family: 'ipv4',
          router: { address: '192.168.124.1', pref: 10 },
        },
        { address: 'fd12:3456:789a:1::5', prefixLength: 64, family: 'ipv6', router: null },
      ],
    });
    expect(sameJson({ a: 1, b: null }, { a: 1 })).toBe(true);
    expect(sameJson({ a: [1, 2] }, { a: [2, 1] })).toBe(false);
  });

  it('splits network noderole names', () => {
    expect(parseNetworkNodeRoleName('network-admin.n1.lab.example.com')).toEqual({
      network: 'admin',
      node: 'n1.lab.example.com',
    });
    expect(parseNetworkNodeRoleName('dns-server.n1.lab.example.com')).toBeUndefined();
  });
});

describe('ledger', () => {
  it('lets a node hold only what its current binding owns, and reservations exclude others', () => {
    const l = new Ledger();
    l.upsert(alloc('admin.192-168-124-81', '192.168.124.81/24', 'n1', 'old-binding'));
    const view = l.viewFor('admin', 'n1', 'new-binding');
    expect(view.heldBy('n1', 'ipv4')).toEqual([]);
    expect(view.sorted('ipv4')).toHaveLength(1);
    const ip = { family: 'ipv4' as const, value: 0xc0a87c52n };
    expect(l.reserve('admin', 'admin.192-168-124-82', ip, 'n2')).toBe(true);
    expect(l.reserve('admin', 'admin.192-168-124-82', ip, 'n3')).toBe(false);
    // Another replica won the address: the informer's object replaces the reservation.
    const theirs = alloc('admin.192-168-124-82', '192.168.124.82/24', 'n3', 'b3');
    l.heldElsewhere(theirs);
    expect(l.viewFor('admin', 'n3', 'b3').heldBy('n3', 'ipv4')).toHaveLength(1);
    expect(l.count('admin')).toBe(2);
    l.remove(theirs);
    expect(l.count('admin')).toBe(1);
    expect(l.ofNode('n1')).toHaveLength(1);
  });
});

describe("a binding's addresses (ADR 0025)", () => {
  // As the custom objects API returns it: a string, whatever client-node's type says.
  const at = (a: NetworkAllocation, t: string): NetworkAllocation => {
    const b = structuredClone(a);
    b.metadata.creationTimestamp = t as unknown as Date;
    return b;
  };
  const a10 = at(alloc('admin.192-168-124-90', '192.168.124.90/24', 'n1'), '2026-12-01T10:00:01Z');
  const a20 = at(alloc('admin.192-168-124-81', '192.168.124.81/24', 'n1'), '2026-12-01T10:00:02Z');
  const v6 = at(alloc('admin.fd12-v6', 'fd12:3456:789a:1::5/64', 'n1'), '2026-12-01T10:00:03Z');

  it('keeps one per family: the one the wall names, else the earliest, else the lowest name', () => {
    expect(bindingAddresses([a20, a10, v6], [])).toEqual({ chosen: [a10, v6], extras: [a20] });
    expect(bindingAddresses([a10, a20, v6], ['192.168.124.81/24'])).toEqual({
      chosen: [a20, v6],
      extras: [a10],
    });
    const same = at(a20, '2026-12-01T10:00:01Z');
    expect(bindingAddresses([a10, same], []).chosen).toEqual([same]); // .81 < .90 by name
    expect(bindingAddresses([v6], []).chosen).toEqual([v6]);
    expect(bindingAddresses([], ['192.168.124.81/24'])).toEqual({ chosen: [], extras: [] });
  });

  it('is the same rule for every reader: whatever order they see the allocations in', () => {
    const pool = [a10, a20, at(a20, '2026-12-01T10:00:01Z'), v6];
    fc.assert(
      fc.property(fc.shuffledSubarray(pool, { minLength: 1 }), fc.boolean(), (seen, named) => {
        const unique = [...new Map(seen.map((a) => [a.metadata.name, a])).values()];
        const wall = named ? [unique[0]?.spec.address ?? ''] : [];
        const once = bindingAddresses(unique, wall);
        const again = bindingAddresses([...unique].reverse(), wall);
        expect(again.chosen.map((a) => a.metadata.name)).toEqual(
          once.chosen.map((a) => a.metadata.name),
        );
        expect(once.chosen.length + once.extras.length).toBe(unique.length);
        expect(new Set(once.chosen.map((a) => a.spec.family)).size).toBe(once.chosen.length);
      }),
    );
  });
});

describe('Node addresses during a burst (ADR 0029)', () => {
  it('are written at once when the allocator is idle, else wait for it, never beyond the bound', () => {
    expect(addressWriteWait(false, 0)).toBe(0);
    expect(addressWriteWait(false, MAX_DEFER_MS * 2)).toBe(0);
    expect(addressWriteWait(true, 0)).toBe(MAX_DEFER_MS);
    expect(addressWriteWait(true, MAX_DEFER_MS - 1)).toBe(1);
    expect(addressWriteWait(true, MAX_DEFER_MS)).toBe(0);
  });
});
