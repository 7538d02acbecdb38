import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Family } from './address.ts';
import { formatIp, parseIp } from './address.ts';
import type { AllocationDecision, AllocationRequest, NodeAllocView } from './allocate.ts';
import { decideAllocation, hintKey } from './allocate.ts';
import { ADMIN_V6, admin, bmc, outside, storage } from './fixtures.test-helper.ts';
import type { NetworkView } from './network.ts';
import { findRange } from './network.ts';
import { cidrContains, parseCidr, rangeContains } from './ranges.ts';
import type { Holding } from './taken.ts';
import { TakenIndex } from './taken.ts';

function decide(
  network: NetworkView,
  node: NodeAllocView,
  taken: Holding[] = [],
  family: Family = 'ipv4',
  range?: string,
): AllocationDecision {
  const req: AllocationRequest = { network, node, family, taken: TakenIndex.from(taken), range };
  return decideAllocation(req);
}

const n1 = { name: 'node1.example.com' };

describe('decideAllocation, IPv4 (§7.4)', () => {
  it('takes the lowest free address of host when nothing else applies', () => {
    expect(decide(admin, n1)).toEqual({
      kind: 'allocate',
      ip: parseIp('192.168.124.81'),
      address: '192.168.124.81/24',
      family: 'ipv4',
      range: 'host',
      source: 'first-free',
      name: 'admin.192-168-124-81',
    });
    const d = decide(admin, n1, [
      { address: '192.168.124.81/24', node: 'a' },
      { address: '192.168.124.82/24', node: 'b' },
      { address: '192.168.124.84', node: 'c' },
    ]);
    expect(d).toMatchObject({ kind: 'allocate', address: '192.168.124.83/24' });
  });

  it.each([
    // [case, node, taken, expected subset]
    [
      'a hint wins',
      { ...n1, hints: { 'admin-v4addr': '192.168.124.100' } },
      [],
      { kind: 'allocate', address: '192.168.124.100/24', source: 'hint' },
    ],
    [
      'the existing allocation in the range is kept, hint or not',
      { ...n1, hints: { 'admin-v4addr': '192.168.124.100' } },
      [{ address: '192.168.124.90/24', node: 'node1.example.com' }],
      { kind: 'existing', address: '192.168.124.90/24', source: 'existing' },
    ],
    [
      'a hint the node already holds is existing',
      { ...n1, hints: { 'admin-v4addr': '192.168.124.100' } },
      [{ address: '192.168.124.100/24', node: 'node1.example.com' }],
      { kind: 'existing', address: '192.168.124.100/24' },
    ],
    [
      'an admin node takes the admin range',
      { ...n1, admin: true },
      [],
      { kind: 'allocate', address: '192.168.124.10/24', range: 'admin' },
    ],
    [
      'an address in another range (dhcp) is not this range’s',
      n1,
      [{ address: '192.168.124.30/24', node: 'node1.example.com' }],
      { kind: 'allocate', address: '192.168.124.81/24', range: 'host' },
    ],
  ] as const)('%s', (_, node, taken, expected) => {
    expect(decide(admin, node, [...taken])).toMatchObject(expected);
  });

  it.each([
    [
      'outside the range',
      '192.168.124.30',
      [],
      'HintOutsideRange',
      'node node1.example.com hint admin-v4addr=192.168.124.30 is outside network admin range host (192.168.124.81-192.168.124.254): give an address inside it or remove the hint',
    ],
    [
      'taken by another node',
      '192.168.124.100',
      [{ address: '192.168.124.100/24', node: 'node2.example.com' }],
      'HintTaken',
      'node node1.example.com hint admin-v4addr=192.168.124.100 is already allocated to node node2.example.com on network admin: give another address or remove the hint',
    ],
    [
      'of the wrong family',
      'fd00::1',
      [],
      'HintInvalid',
      'node node1.example.com hint admin-v4addr="fd00::1" must be a bare ipv4 address such as 192.168.124.81',
    ],
    [
      'with a prefix length',
      '192.168.124.100/24',
      [],
      'HintInvalid',
      'node node1.example.com hint admin-v4addr="192.168.124.100/24" must be a bare ipv4 address such as 192.168.124.81',
    ],
    [
      'not a string',
      42,
      [],
      'HintInvalid',
      'node node1.example.com hint admin-v4addr=42 must be a bare ipv4 address such as 192.168.124.81',
    ],
  ] as const)('refuses a hint %s', (_, hint, taken, reason, message) => {
    const node = { ...n1, hints: { 'admin-v4addr': hint } };
    expect(decide(admin, node, [...taken])).toEqual({ kind: 'error', reason, message });
  });

  describe('octet-aligned addresses (§7.4 step 5)', () => {
    it('reuses the host part of the admin address', () => {
      const node = { ...n1, adminAddress: '192.168.124.85/24' };
      expect(decide(bmc, node)).toMatchObject({
        address: '192.168.128.85/24',
        source: 'admin-host-part',
        name: 'bmc.192-168-128-85',
      });
    });

    it.each([
      ['taken by another node', '192.168.124.85/24', [{ address: '192.168.128.85/24', node: 'x' }]],
      ['outside the range', '192.168.124.15/24', []],
      ['not fitting the subnet', '10.1.2.3/8', []],
      ['not an address', 'nonsense', []],
      ['of another family', 'fd00::85/64', []],
    ] as const)('falls back to the first free when it is %s', (_, adminAddress, taken) => {
      expect(decide(bmc, { ...n1, adminAddress }, [...taken])).toMatchObject({
        address: '192.168.128.21/24',
        source: 'first-free',
      });
    });

    it('a hint still wins over it', () => {
      const node = {
        ...n1,
        adminAddress: '192.168.124.85/24',
        hints: { 'bmc-v4addr': '192.168.128.99' },
      };
      expect(decide(bmc, node)).toMatchObject({ address: '192.168.128.99/24', source: 'hint' });
    });
  });

  it('reports a full range naming the network and range', () => {
    const taken = ['10.10.0.10', '10.10.0.11', '10.10.0.12'].map((a, i) => ({
      address: `${a}/24`,
      node: `n${i}`,
    }));
    expect(decide(storage, n1, taken)).toEqual({
      kind: 'error',
      reason: 'RangeFull',
      message:
        'network storage range host (10.10.0.10-10.10.0.12) is out of addresses: widen the range or unbind the network from nodes that no longer need it',
    });
  });

  it('reports a missing range', () => {
    expect(decide(storage, n1, [], 'ipv4', 'dhcp')).toEqual({
      kind: 'error',
      reason: 'NoSuchRange',
      message:
        'network storage range dhcp does not exist: add an ipv4 range named dhcp to spec.ranges of network storage',
    });
  });

  it('allocates from a named range on request', () => {
    expect(decide(admin, n1, [], 'ipv4', 'dhcp')).toMatchObject({
      address: '192.168.124.21/24',
      range: 'dhcp',
    });
  });

  describe('unmanaged networks (§7.8)', () => {
    it('allocate nothing without a hint', () => {
      expect(decide(outside, n1)).toEqual({
        kind: 'none',
        message:
          'network outside is unmanaged: it allocates only addresses asked for with the hint outside-v4addr',
      });
    });

    it('record a hinted address in the subnet', () => {
      const node = { ...n1, hints: { 'outside-v4addr': '172.16.3.4' } };
      expect(decide(outside, node)).toMatchObject({
        kind: 'allocate',
        address: '172.16.3.4/16',
        source: 'hint',
      });
      const again = decide(outside, node, [{ address: '172.16.3.4/16', node: n1.name }]);
      expect(again).toMatchObject({ kind: 'existing', address: '172.16.3.4/16' });
    });

    it('refuse a hint outside the subnet or held by another node', () => {
      const node = { ...n1, hints: { 'outside-v4addr': '10.0.0.1' } };
      expect(decide(outside, node)).toMatchObject({ kind: 'error', reason: 'HintOutsideRange' });
      const taken = { ...n1, hints: { 'outside-v4addr': '172.16.3.4' } };
      expect(decide(outside, taken, [{ address: '172.16.3.4', node: 'x' }])).toMatchObject({
        kind: 'error',
        reason: 'HintTaken',
      });
    });
  });
});

describe('decideAllocation, IPv6 (§7.5)', () => {
  it('gives the md5 interface ID in the resolved /64', () => {
    expect(decide(admin, n1, [], 'ipv6')).toEqual({
      kind: 'allocate',
      ip: parseIp('fd12:3456:789a:1:7264:46a8:b448:1fa'),
      address: 'fd12:3456:789a:1:7264:46a8:b448:1fa/64',
      family: 'ipv6',
      range: 'host-v6',
      source: 'interface-id',
      name: 'admin.fd12-3456-789a-0001-7264-46a8-b448-01fa',
    });
  });

  it('steps past a colliding address held by another node', () => {
    const taken = [
      { address: 'fd12:3456:789a:1:7264:46a8:b448:1fa/64', node: 'twin' },
      { address: 'fd12:3456:789a:1:7264:46a8:b448:1fb/64', node: 'twin2' },
    ];
    expect(decide(admin, n1, taken, 'ipv6')).toMatchObject({
      address: 'fd12:3456:789a:1:7264:46a8:b448:1fc/64',
      source: 'interface-id-next-free',
    });
  });

  it('keeps the existing address, and a hint wins over the interface ID', () => {
    const mine = [{ address: 'fd12:3456:789a:1::99/64', node: n1.name }];
    expect(decide(admin, n1, mine, 'ipv6')).toMatchObject({ kind: 'existing' });
    const hinted = { ...n1, hints: { 'admin-v6addr': 'fd12:3456:789a:1::42' } };
    expect(decide(admin, hinted, [], 'ipv6')).toMatchObject({
      address: 'fd12:3456:789a:1::42/64',
      source: 'hint',
    });
    const outsideHint = { ...n1, hints: { 'admin-v6addr': 'fd12:3456:789a:2::42' } };
    expect(decide(admin, outsideHint, [], 'ipv6')).toMatchObject({
      reason: 'HintOutsideRange',
      message: expect.stringContaining(
        'is outside network admin range host-v6 (fd12:3456:789a:1::1-fd12:3456:789a:1:ffff:ffff:ffff:ff7f)',
      ) as unknown,
    });
  });

  it('uses a defined host-v6 range, from its start when the md5 address lies outside it', () => {
    const narrow: NetworkView = {
      name: 'lab',
      spec: {
        category: 'general',
        subnet: '10.0.0.0/24',
        v6prefix: 'fd00:0:0:7::/64',
        ranges: [{ name: 'host-v6', first: 'fd00:0:0:7::100', last: 'fd00:0:0:7::1ff' }],
      },
    };
    expect(decide(narrow, n1, [], 'ipv6')).toMatchObject({
      address: 'fd00:0:0:7::100/64',
      source: 'first-free',
    });
  });

  it('allocates nothing on a network without a v6 prefix, or before auto is resolved', () => {
    expect(decide(storage, n1, [], 'ipv6')).toEqual({
      kind: 'none',
      message: 'network storage has no IPv6 prefix',
    });
    const unresolved: NetworkView = { name: 'admin', spec: admin.spec };
    expect(decide(unresolved, n1, [], 'ipv6')).toMatchObject({ kind: 'none' });
  });
});

describe('allocation properties', () => {
  const names = fc.uniqueArray(fc.domain(), { minLength: 1, maxLength: 40 });

  /** Allocates each node in turn, recording each decision as the API server would. */
  function allocateAll(
    network: NetworkView,
    nodes: readonly NodeAllocView[],
    family: Family,
  ): { decisions: AllocationDecision[]; taken: TakenIndex } {
    const taken = new TakenIndex();
    const decisions = nodes.map((node) => {
      const d = decideAllocation({ network, node, family, taken });
      if (d.kind === 'allocate') taken.add(d.ip, node.name);
      return d;
    });
    return { decisions, taken };
  }

  it('never gives one IPv4 address to two nodes, stays in range, and fails only when full', () => {
    fc.assert(
      fc.property(
        names,
        fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 40 }),
        fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 40 }),
        (fqdns, hintOctets, adminOctets) => {
          const nodes = fqdns.map((name, i): NodeAllocView => {
            const h = hintOctets[i];
            const a = adminOctets[i];
            return {
              name,
              ...(h === undefined
                ? {}
                : { hints: { [hintKey('bmc', 'ipv4')]: `192.168.128.${h}` } }),
              ...(a === undefined ? {} : { adminAddress: `192.168.124.${a}/24` }),
            };
          });
          const { decisions, taken } = allocateAll(bmc, nodes, 'ipv4');
          const host = findRange(bmc, 'ipv4', 'host')!.range;
          const given = decisions.flatMap((d) => (d.kind === 'allocate' ? [d.ip.value] : []));
          expect(new Set(given).size).toBe(given.length);
          for (const v of given)
            expect(rangeContains(host, { family: 'ipv4', value: v })).toBe(true);
          decisions.forEach((d, i) => {
            if (d.kind !== 'error') return;
            // Only hints can fail here: the host range (234 addresses) outlasts 40 nodes.
            expect(['HintOutsideRange', 'HintTaken']).toContain(d.reason);
            expect(nodes[i]!.hints).toBeDefined();
          });
          expect(taken.size).toBe(given.length);
        },
      ),
    );
  });

  it('fills a small range exactly, then reports it full', () => {
    fc.assert(
      fc.property(names, (fqdns) => {
        const { decisions } = allocateAll(
          storage,
          fqdns.map((name) => ({ name })),
          'ipv4',
        );
        const ok = decisions.filter((d) => d.kind === 'allocate');
        expect(ok.length).toBe(Math.min(3, fqdns.length));
        for (const d of decisions.slice(3)) expect(d).toMatchObject({ reason: 'RangeFull' });
      }),
    );
  });

  it('never gives one IPv6 address to two nodes, even in a range of 16 where IDs collide', () => {
    const tiny: NetworkView = {
      name: 'tiny',
      spec: {
        category: 'general',
        subnet: '10.0.0.0/24',
        v6prefix: 'fd00:0:0:7::/64',
        ranges: [{ name: 'host-v6', first: 'fd00:0:0:7::1', last: 'fd00:0:0:7::10' }],
      },
    };
    fc.assert(
      fc.property(names, (fqdns) => {
        const { decisions } = allocateAll(
          tiny,
          fqdns.map((name) => ({ name })),
          'ipv6',
        );
        const given = decisions.flatMap((d) => (d.kind === 'allocate' ? [formatIp(d.ip)] : []));
        expect(new Set(given).size).toBe(given.length);
        expect(given.length).toBe(Math.min(16, fqdns.length));
      }),
    );
  });

  it('gives each node its md5 address in a /64 and is stable on a second pass', () => {
    fc.assert(
      fc.property(names, (fqdns) => {
        const nodes = fqdns.map((name) => ({ name }));
        const prefix = parseCidr(ADMIN_V6);
        const { decisions, taken } = allocateAll(admin, nodes, 'ipv6');
        for (const d of decisions) expect(d).toMatchObject({ source: 'interface-id' });
        for (const node of nodes) {
          const again = decideAllocation({ network: admin, node, family: 'ipv6', taken });
          expect(again).toMatchObject({ kind: 'existing', source: 'existing' });
          if (again.kind === 'existing') expect(cidrContains(prefix, again.ip)).toBe(true);
        }
      }),
    );
  });
});
