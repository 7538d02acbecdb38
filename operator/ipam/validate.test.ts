import { describe, expect, it } from 'vitest';
import type { NetworkSpec } from '../../generated/crowbar.ts';
import { ADMIN_V6, admin, bmc, outside, storage } from './fixtures.test-helper.ts';
import type { NetworkView } from './network.ts';
import type { Problem } from './validate.ts';
import {
  validateGroupSubnets,
  validateHints,
  validateNetwork,
  validateNetworkUpdate,
} from './validate.ts';

type Ranges = NonNullable<NetworkSpec['ranges']>;
const withRanges = (base: NetworkView, ranges: Ranges, extra: Partial<NetworkSpec> = {}) => ({
  ...base,
  spec: { ...base.spec, ...extra, ranges },
});

describe('validateNetwork', () => {
  it.each([admin, bmc, storage, outside])('accepts the $name network', (n) => {
    expect(validateNetwork(n)).toEqual([]);
  });

  it.each<[string, NetworkView, Problem[]]>([
    [
      'overlapping IPv4 ranges',
      withRanges(admin, [
        { name: 'host', first: '192.168.124.81', last: '192.168.124.254' },
        { name: 'dhcp', first: '192.168.124.50', last: '192.168.124.90' },
      ]),
      [
        {
          field: 'spec.ranges[1]',
          message:
            'spec.ranges[1] (dhcp 192.168.124.50-192.168.124.90) overlaps spec.ranges[0] (host 192.168.124.81-192.168.124.254): give each range its own addresses',
        },
      ],
    ],
    [
      'overlapping IPv6 ranges',
      withRanges(admin, [
        { name: 'host-v6', first: 'fd12:3456:789a:1::100', last: 'fd12:3456:789a:1::1ff' },
        { name: 'extra-v6', first: 'fd12:3456:789a:1::1ff', last: 'fd12:3456:789a:1::2ff' },
      ]),
      [
        {
          field: 'spec.ranges[1]',
          message:
            'spec.ranges[1] (extra-v6 fd12:3456:789a:1::1ff-fd12:3456:789a:1::2ff) overlaps spec.ranges[0] (host-v6 fd12:3456:789a:1::100-fd12:3456:789a:1::1ff): give each range its own addresses',
        },
      ],
    ],
    [
      'an IPv6 range starting after its end',
      withRanges(admin, [
        { name: 'host-v6', first: 'fd12:3456:789a:1::9', last: 'fd12:3456:789a:1::1' },
      ]),
      [
        {
          field: 'spec.ranges[0]',
          message:
            'spec.ranges[0] (host-v6 fd12:3456:789a:1::9-fd12:3456:789a:1::1) starts after it ends: swap first and last',
        },
      ],
    ],
    [
      'an IPv6 range outside the resolved auto prefix',
      withRanges(admin, [
        { name: 'host-v6', first: 'fd12:3456:789a:2::1', last: 'fd12:3456:789a:2::9' },
      ]),
      [
        {
          field: 'spec.ranges[0]',
          message:
            'spec.ranges[0] (host-v6 fd12:3456:789a:2::1-fd12:3456:789a:2::9) lies outside spec.v6prefix (auto, resolved to fd12:3456:789a:1::/64): keep it within fd12:3456:789a:1::1-fd12:3456:789a:1:ffff:ffff:ffff:ffff',
        },
      ],
    ],
    [
      'an IPv6 range holding the Subnet-Router anycast address',
      withRanges(storage, [{ name: 'host-v6', first: 'fd00:0:0:7::', last: 'fd00:0:0:7::ff' }], {
        v6prefix: 'fd00:0:0:7::/64',
      }),
      [
        {
          field: 'spec.ranges[0]',
          message:
            'spec.ranges[0] (host-v6 fd00:0:0:7::-fd00:0:0:7::ff) includes fd00:0:0:7::, the Subnet-Router anycast address of spec.v6prefix (fd00:0:0:7::/64): start the range at fd00:0:0:7::1 or later',
        },
      ],
    ],
    [
      'an IPv6 range without a v6prefix',
      withRanges(storage, [{ name: 'host-v6', first: 'fd00::1', last: 'fd00::9' }]),
      [
        {
          field: 'spec.ranges[0]',
          message:
            'spec.ranges[0] (host-v6 fd00::1-fd00::9) is IPv6 but the network has no spec.v6prefix: set spec.v6prefix to a /64 or auto',
        },
      ],
    ],
    [
      'an IPv4 range holding the broadcast address',
      withRanges(storage, [{ name: 'host', first: '10.10.0.200', last: '10.10.0.255' }]),
      [
        {
          field: 'spec.ranges[0]',
          message:
            'spec.ranges[0] (host 10.10.0.200-10.10.0.255) includes the network or broadcast address of spec.subnet (10.10.0.0/24): keep it within 10.10.0.1-10.10.0.254',
        },
      ],
    ],
    [
      'an IPv4 range outside the subnet',
      withRanges(storage, [{ name: 'host', first: '10.10.1.1', last: '10.10.1.9' }]),
      [
        {
          field: 'spec.ranges[0]',
          message:
            'spec.ranges[0] (host 10.10.1.1-10.10.1.9) lies outside spec.subnet (10.10.0.0/24): keep it within 10.10.0.1-10.10.0.254',
        },
      ],
    ],
    [
      'mixed families',
      withRanges(storage, [{ name: 'host', first: '10.10.0.1', last: 'fd00::1' }]),
      [
        {
          field: 'spec.ranges[0]',
          message:
            'spec.ranges[0] (host 10.10.0.1-fd00::1) mixes IPv4 and IPv6: give first and last of one family',
        },
      ],
    ],
    [
      'a bad address',
      withRanges(storage, [{ name: 'host', first: '10.10.0.1', last: '10.10.0.300' }]),
      [
        {
          field: 'spec.ranges[0].last',
          message:
            'spec.ranges[0] (host 10.10.0.1-10.10.0.300): last must be a bare IPv4 or IPv6 address, e.g. 192.168.124.81',
        },
      ],
    ],
    [
      'an IPv6 router outside the prefix',
      { ...admin, spec: { ...admin.spec, router: { address: 'fd99::1' } } },
      [
        {
          field: 'spec.router.address',
          message:
            'spec.router.address (fd99::1) lies outside spec.v6prefix (auto, resolved to fd12:3456:789a:1::/64): give a router address inside it',
        },
      ],
    ],
    [
      'an IPv4 router outside the subnet',
      { ...storage, spec: { ...storage.spec, router: { address: '10.99.0.1' } } },
      [
        {
          field: 'spec.router.address',
          message:
            'spec.router.address (10.99.0.1) lies outside spec.subnet (10.10.0.0/24): give a router address inside it',
        },
      ],
    ],
  ])('refuses %s', (_, network, problems) => {
    expect(validateNetwork(network)).toEqual(problems);
  });

  it('accepts /31 and /32 subnets using every address (RFC 3021)', () => {
    const p2p: NetworkView = {
      name: 'p2p',
      spec: {
        category: 'general',
        subnet: '10.0.0.4/31',
        ranges: [{ name: 'host', first: '10.0.0.4', last: '10.0.0.5' }],
      },
    };
    expect(validateNetwork(p2p)).toEqual([]);
    const one = {
      ...p2p,
      spec: {
        ...p2p.spec,
        subnet: '10.0.0.4/32',
        ranges: [{ name: 'host', first: '10.0.0.4', last: '10.0.0.4' }],
      },
    };
    expect(validateNetwork(one)).toEqual([]);
  });

  it('waits for an auto prefix before checking IPv6 ranges and routers', () => {
    const unresolved: NetworkView = {
      name: 'admin',
      spec: {
        ...admin.spec,
        router: { address: 'fd99::1' },
        ranges: [{ name: 'host-v6', first: 'fd99::1', last: 'fd99::9' }],
      },
    };
    expect(validateNetwork(unresolved)).toEqual([]);
  });

  it('reports every overlapping pair', () => {
    const n = withRanges(storage, [
      { name: 'a', first: '10.10.0.10', last: '10.10.0.20' },
      { name: 'b', first: '10.10.0.15', last: '10.10.0.25' },
      { name: 'c', first: '10.10.0.20', last: '10.10.0.30' },
    ]);
    const pairs = validateNetwork(n).map((p) => {
      const m = /^spec\.ranges\[(\d)\] .* overlaps spec\.ranges\[(\d)\]/.exec(p.message);
      return m ? `${m[1]}-${m[2]}` : p.message;
    });
    expect(pairs).toEqual(['1-0', '2-0', '2-1']);
  });
});

describe('validateGroupSubnets', () => {
  const twin = (name: string, spec: Partial<NetworkSpec>, v6prefix?: string): NetworkView => ({
    name,
    spec: { category: 'general', ...spec },
    v6prefix,
  });

  it('refuses a subnet overlapping another network of the group', () => {
    const mine = twin('lab', { group: 'internal', subnet: '192.168.0.0/16' });
    expect(validateGroupSubnets(mine, [admin, bmc, mine, storage])).toEqual([
      {
        field: 'spec.subnet',
        message:
          "spec.subnet (192.168.0.0/16) overlaps network admin's subnet 192.168.124.0/24 in group internal: choose a subnet no other network of the group uses, or set spec.group",
      },
      {
        field: 'spec.subnet',
        message:
          "spec.subnet (192.168.0.0/16) overlaps network bmc's subnet 192.168.128.0/24 in group internal: choose a subnet no other network of the group uses, or set spec.group",
      },
    ]);
  });

  it('allows the same subnet in another group', () => {
    const mine = twin('lab', { group: 'other', subnet: '192.168.124.0/24' });
    expect(validateGroupSubnets(mine, [admin, bmc])).toEqual([]);
  });

  it('uses group default when none is set', () => {
    const mine = twin('lab', { subnet: '10.10.0.128/25' });
    expect(validateGroupSubnets(mine, [storage])).toHaveLength(1);
  });

  it('refuses the same /64 as another network of the group', () => {
    const mine = twin('lab', { group: 'internal', subnet: '10.0.0.0/24', v6prefix: ADMIN_V6 });
    expect(validateGroupSubnets(mine, [admin])).toEqual([
      {
        field: 'spec.v6prefix',
        message:
          "spec.v6prefix (fd12:3456:789a:1::/64) overlaps network admin's v6 prefix fd12:3456:789a:1::/64 in group internal: choose another /64 or use auto",
      },
    ]);
  });
});

describe('validateHints', () => {
  it.each<[string, Record<string, unknown>, boolean, Problem[]]>([
    ['a hint inside host', { 'admin-v4addr': '192.168.124.90' }, false, []],
    ['an admin node inside admin', { 'admin-v4addr': '192.168.124.10' }, true, []],
    ['hints for networks that do not exist yet', { 'future-v4addr': '1.2.3.4' }, false, []],
    ['other hints', { 'admin-macs': ['52:54:00:00:00:01'] }, false, []],
    [
      'a hint outside the host range',
      { 'admin-v4addr': '192.168.124.30' },
      false,
      [
        {
          field: 'spec.hints["admin-v4addr"]',
          message:
            'spec.hints["admin-v4addr"] (192.168.124.30) is outside network admin\'s range host (192.168.124.81-192.168.124.254): give an address inside it or remove the hint',
        },
      ],
    ],
    [
      'an admin node hint outside the admin range',
      { 'admin-v4addr': '192.168.124.90' },
      true,
      [
        {
          field: 'spec.hints["admin-v4addr"]',
          message:
            'spec.hints["admin-v4addr"] (192.168.124.90) is outside network admin\'s range admin (192.168.124.10-192.168.124.11): give an address inside it or remove the hint',
        },
      ],
    ],
    [
      'a v6 hint outside the /64',
      { 'admin-v6addr': 'fd00::1' },
      false,
      [
        {
          field: 'spec.hints["admin-v6addr"]',
          message:
            'spec.hints["admin-v6addr"] (fd00::1) is outside network admin\'s range host-v6 (fd12:3456:789a:1::1-fd12:3456:789a:1:ffff:ffff:ffff:ff7f): give an address inside it or remove the hint',
        },
      ],
    ],
    [
      'a hint of the wrong family',
      { 'bmc-v4addr': 'fd00::1' },
      false,
      [
        {
          field: 'spec.hints["bmc-v4addr"]',
          message:
            'spec.hints["bmc-v4addr"] ("fd00::1") must be a bare ipv4 address such as 192.168.124.81',
        },
      ],
    ],
    [
      'a hint on an unmanaged network outside its subnet',
      { 'outside-v4addr': '10.0.0.1' },
      false,
      [
        {
          field: 'spec.hints["outside-v4addr"]',
          message:
            'spec.hints["outside-v4addr"] (10.0.0.1) is outside network outside\'s subnet 172.16.0.0/16: give an address inside it or remove the hint',
        },
      ],
    ],
  ])('%s', (_, hints, isAdmin, problems) => {
    const node = { name: 'node1.example.com', admin: isAdmin, hints };
    expect(validateHints(node, [admin, bmc, outside])).toEqual(problems);
  });
});

describe('validateNetworkUpdate', () => {
  const allocations = [
    { address: '192.168.124.81/24', node: 'node1', range: 'host' },
    { address: '192.168.124.82/24', node: 'node2', range: 'host' },
    { address: '192.168.124.83/24', node: 'node3', range: 'host' },
    { address: '192.168.124.84/24', node: 'node4', range: 'host' },
    { address: 'fd12:3456:789a:1::5/64', node: 'node1', range: 'host-v6' },
  ];

  it('allows any change to a network without allocations', () => {
    expect(
      validateNetworkUpdate('admin', admin.spec, { ...admin.spec, subnet: '10.0.0.0/8' }, []),
    ).toEqual([]);
  });

  it('allows unrelated changes and equal spellings of the same subnet', () => {
    const next = { ...admin.spec, vlan: 10, description: 'x' };
    expect(validateNetworkUpdate('admin', admin.spec, next, allocations, ADMIN_V6)).toEqual([]);
    const literal = { ...admin.spec, v6prefix: 'fd12:3456:789a:0001::/64' };
    expect(validateNetworkUpdate('admin', admin.spec, literal, allocations, ADMIN_V6)).toEqual([]);
  });

  it('refuses a subnet change while addresses are allocated', () => {
    const next = { ...admin.spec, subnet: '192.168.0.0/16' };
    expect(validateNetworkUpdate('admin', admin.spec, next, allocations, ADMIN_V6)).toEqual([
      {
        field: 'spec.subnet',
        message:
          'spec.subnet cannot change from 192.168.124.0/24 to 192.168.0.0/16 while 4 IPv4 addresses are allocated on network admin (192.168.124.81 (node1), 192.168.124.82 (node2), 192.168.124.83 (node3) and 1 more): unbind network-admin from those nodes first, or create a new network',
      },
    ]);
  });

  it('refuses a v6prefix change while IPv6 addresses are allocated', () => {
    const next = { ...admin.spec, v6prefix: 'fd00:0:0:9::/64' };
    expect(validateNetworkUpdate('admin', admin.spec, next, allocations, ADMIN_V6)).toEqual([
      {
        field: 'spec.v6prefix',
        message:
          'spec.v6prefix cannot change from fd12:3456:789a:1::/64 to fd00:0:0:9::/64 while 1 IPv6 addresses are allocated on network admin (fd12:3456:789a:1::5 (node1)): unbind network-admin from those nodes first, or create a new network',
      },
    ]);
  });

  it('refuses range edits that strand allocations', () => {
    const shrunk = withRanges(admin, [
      { name: 'admin', first: '192.168.124.10', last: '192.168.124.11' },
      { name: 'host', first: '192.168.124.83', last: '192.168.124.254' },
    ]).spec;
    expect(validateNetworkUpdate('admin', admin.spec, shrunk, allocations, ADMIN_V6)).toEqual([
      {
        field: 'spec.ranges',
        message:
          'range host no longer contains 2 allocated addresses (192.168.124.81 (node1), 192.168.124.82 (node2)): keep them in range host, or unbind network-admin from those nodes first',
      },
    ]);
    const dhcp = [{ address: '192.168.124.30/24', node: 'node9', range: 'dhcp' }];
    expect(validateNetworkUpdate('admin', admin.spec, shrunk, dhcp, ADMIN_V6)).toEqual([
      {
        field: 'spec.ranges',
        message:
          'range dhcp is removed but holds 1 allocated addresses (192.168.124.30 (node9)): keep them in range dhcp, or unbind network-admin from those nodes first',
      },
    ]);
  });
});
