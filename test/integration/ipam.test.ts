/**
 * IPv4 and IPv6 address management against the real API server, with the operator as real
 * processes (issue 5): two replicas allocating at once, release on unbind, the admin network's
 * auto /64 across a restart, and every bad input refused or reported with its message.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Network, NetworkAllocation, NetworkSpec, NodeRole } from '../../generated/crowbar.ts';
import { autoPrefix } from '../../operator/ipam/index.ts';
import { apiMessage } from '../../operator/kube/errors.ts';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { startOperator, type OperatorProc } from '../harness/operator.ts';

const kubeconfig = inject('kubeconfig');
const logDir = inject('cpDir');
const client = testClient();
const FM = 'crowbar-test';
let ops: OperatorProc[] = [];

async function start(identity: string): Promise<OperatorProc> {
  const op = await startOperator({
    kubeconfig,
    logDir,
    identity,
    args: ['--leader-elect=false'],
    env: { LOG_LEVEL: 'info' },
  });
  await eventually('operator ready', async () => (await op.http('/readyz')).status === 200);
  return op;
}

beforeAll(async () => {
  ops = await Promise.all([start(`ipam-a-${uid()}`), start(`ipam-b-${uid()}`)]);
});

afterAll(async () => {
  for (const op of ops) await op.stop();
});

/** Runs `fn` over `items` with at most `n` in flight. */
async function pool<T>(items: readonly T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) {
        const x = items[i++];
        if (x !== undefined) await fn(x);
      }
    }),
  );
}

/** One test's objects: networks, nodes, bindings; removed at the end. */
class Lab {
  readonly id = uid();
  readonly networks: string[] = [];
  readonly nodes: string[] = [];
  deployment = '';
  readonly c: CrowbarClient = client;

  net(short: string): string {
    return `${short}-${this.id}`;
  }

  node(short: string): string {
    return `${short}-${this.id}.ipam.example.com`;
  }

  async createNetwork(short: string, spec: NetworkSpec): Promise<string> {
    const name = this.net(short);
    await client.create(
      'Network',
      { metadata: { name }, spec: { group: `g${this.id}`, ...spec } },
      FM,
    );
    this.networks.push(name);
    return name;
  }

  async createNode(short: string, hints?: Record<string, string>): Promise<string> {
    const name = this.node(short);
    await client.create(
      'Node',
      {
        metadata: { name, annotations: { 'crowbar.dev/auto-bound': 'true' } },
        spec: { available: true, deployment: 'system', ...(hints ? { hints } : {}) },
      },
      FM,
    );
    this.nodes.push(name);
    return name;
  }

  /** A proposed deployment: bindings are planned and allocated, nothing runs. */
  async createDeployment(): Promise<string> {
    this.deployment = `ipam-${this.id}`;
    await client.create(
      'Deployment',
      { metadata: { name: this.deployment }, spec: { parent: 'system', state: 'proposed' } },
      FM,
    );
    return this.deployment;
  }

  /** Binds network-<network> to the node; the operators' binders plan it. */
  async bind(network: string, node: string): Promise<string> {
    const name = `network-${network}.${node}`;
    await client.create(
      'NodeRole',
      {
        metadata: { name },
        spec: { role: `network-${network}`, node, deployment: this.deployment },
      },
      FM,
    );
    return name;
  }

  async waitRole(network: string): Promise<void> {
    await eventually(`role network-${network}`, () => client.get('Role', `network-${network}`));
  }

  async allocations(network: string): Promise<NetworkAllocation[]> {
    return client.list('NetworkAllocation', `crowbar.dev/network=${network}`);
  }

  async cleanup(): Promise<void> {
    const nrs = (await client.list('NodeRole')).filter((nr) => nr.metadata.name?.includes(this.id));
    await pool(nrs, 16, async (nr) => {
      await client.delete('NodeRole', nr.metadata.name ?? '');
    });
    await pool(this.nodes, 16, async (n) => {
      await client.delete('Node', n);
    });
    for (const n of this.networks) await client.delete('Network', n);
    if (this.deployment) await client.delete('Deployment', this.deployment);
  }
}

function condition(
  o: Network | NodeRole | undefined,
  type: string,
): { status: string; reason: string; message: string } | undefined {
  return o?.status?.conditions?.find((c) => c.type === type);
}

function wallAddresses(nr: NodeRole, network: string): string[] {
  const crowbar = nr.status?.wall?.['crowbar'] as
    { network?: Record<string, { addresses?: string[] } | undefined> } | undefined;
  return crowbar?.network?.[network]?.addresses ?? [];
}

async function invalid(network: string, pattern: RegExp): Promise<string> {
  const n = await eventually(`network ${network} reported invalid`, async () => {
    const got = await client.get('Network', network);
    const c = condition(got, 'Valid');
    return c?.status === 'False' && pattern.test(c.message) ? got : undefined;
  });
  return condition(n, 'Valid')?.message ?? '';
}

async function refused(spec: NetworkSpec, name: string): Promise<string> {
  try {
    await client.create('Network', { metadata: { name }, spec }, FM);
  } catch (e) {
    return apiMessage(e);
  }
  await client.delete('Network', name);
  throw new Error(`network ${name} was admitted`);
}

describe('IPAM', () => {
  it('gives 200 nodes bound at once through two replicas 200 distinct v4 and v6 addresses, and releases exactly the unbound half', async () => {
    const lab = new Lab();
    try {
      const net = await lab.createNetwork('wide', {
        category: 'general',
        subnet: '10.77.0.0/22',
        v6prefix: 'auto',
        ranges: [{ name: 'host', first: '10.77.0.10', last: '10.77.3.250' }],
      });
      await lab.createDeployment();
      await lab.waitRole(net);
      const nodes = Array.from({ length: 200 }, (_, i) => lab.node(`n${i}`));
      await pool(nodes, 16, async (n) => {
        await lab.createNode(n.slice(0, n.indexOf('-')));
      });
      await pool(nodes, 16, async (n) => {
        await lab.bind(net, n);
      });

      // Settled: one v4 and one v6 per node (a racing replica's extra released), each listed in
      // its Node's status, and any wall written (the racing replicas' tie-break) names the same.
      const settled = await eventually(
        'every node holds exactly one v4 and one v6 address, listed on its Node',
        async () => {
          const allocs = await lab.allocations(net);
          if (allocs.length !== 400) return undefined;
          const nrs = (await client.list('NodeRole')).filter(
            (nr) => nr.spec.role === `network-${net}`,
          );
          const walls = new Map(nrs.map((nr) => [nr.spec.node, wallAddresses(nr, net)]));
          const listed = new Map(
            (await client.list('Node'))
              .filter((n) => n.metadata.name?.includes(lab.id))
              .map((n) => [
                n.metadata.name ?? '',
                (n.status?.addresses ?? []).map((a) => a.address),
              ]),
          );
          const ok = nodes.every((n) => {
            const mine = allocs.filter((a) => a.spec.node === n).map((a) => a.spec.address);
            const wall = walls.get(n) ?? [];
            const onNode = listed.get(n) ?? [];
            return (
              mine.length === 2 &&
              onNode.length === 2 &&
              mine.every((a) => onNode.includes(a)) &&
              (wall.length === 0 || mine.every((a) => wall.includes(a)))
            );
          });
          return ok ? allocs : undefined;
        },
        // Bound by two binders, allocated by two allocators, listed by two Node writers: at a
        // load average of 27 on 2 cores this took 150 s.
        300_000,
        500,
      );
      const v4 = settled.filter((a) => a.spec.family === 'ipv4').map((a) => a.spec.address);
      const v6 = settled.filter((a) => a.spec.family === 'ipv6').map((a) => a.spec.address);
      expect(new Set(v4).size).toBe(200);
      expect(new Set(v6).size).toBe(200);
      for (const a of settled) {
        expect(a.metadata.finalizers).toContain('crowbar.dev/address-held');
        expect(a.metadata.ownerReferences?.[0]).toMatchObject({
          kind: 'NodeRole',
          name: `network-${net}.${a.spec.node}`,
        });
      }
      const network = await client.get('Network', net);
      const prefix = network?.status?.v6prefix ?? '';
      expect(prefix).toMatch(/^fd[0-9a-f]{2}:/);
      expect(
        v6.every((a) => a.startsWith(prefix.replace(/::\/64$/, ':')) && a.endsWith('/64')),
      ).toBe(true);
      expect(v4.every((a) => a.startsWith('10.77.') && a.endsWith('/22'))).toBe(true);

      // The node's status lists its addresses on the network.
      const sample = nodes[7] ?? '';
      const node = await eventually('node addresses', async () => {
        const n = await client.get('Node', sample);
        return (n?.status?.addresses ?? []).length === 2 ? n : undefined;
      });
      expect(node.status?.addresses?.map((a) => a.address).sort()).toEqual(
        settled
          .filter((a) => a.spec.node === sample)
          .map((a) => a.spec.address)
          .sort(),
      );

      // Unbind half: exactly their allocations go; the others keep theirs unchanged.
      const gone = nodes.filter((_, i) => i % 2 === 0);
      const kept = new Set(nodes.filter((_, i) => i % 2 === 1));
      await pool(gone, 16, async (n) => {
        await client.delete('NodeRole', `network-${net}.${n}`);
      });
      const after = await eventually(
        'the unbound half released',
        async () => {
          const allocs = await lab.allocations(net);
          return allocs.length === 200 ? allocs : undefined;
        },
        60_000,
        500,
      );
      expect(after.every((a) => kept.has(a.spec.node))).toBe(true);
      const before = new Set(
        settled.filter((a) => kept.has(a.spec.node)).map((a) => a.metadata.name),
      );
      expect(new Set(after.map((a) => a.metadata.name))).toEqual(before);
      await eventually('usage follows', async () => {
        const n = await client.get('Network', net);
        return n?.status?.allocated === 200 &&
          n.status.usage?.find((u) => u.range === 'host')?.allocated === 100
          ? n
          : undefined;
      });
    } finally {
      await lab.cleanup();
    }
  }, 480_000);

  it('commits an address with its create: a racing replica’s extra goes and the first stays; the network noderole’s run names it in its wall', async () => {
    const lab = new Lab();
    try {
      const net = await lab.createNetwork('one', {
        category: 'general',
        subnet: '10.79.0.0/24',
        ranges: [{ name: 'host', first: '10.79.0.10', last: '10.79.0.250' }],
      });
      const dep = await lab.createDeployment();
      await lab.waitRole(net);
      const node = await lab.createNode('racer');
      const calm = await lab.createNode('calm');
      for (const x of [node, calm])
        await client.mergePatchStatus('Node', x, { status: { alive: true } }, FM);
      const nrName = await lab.bind(net, node);
      const first = await eventually('the node holds an address, listed on its Node', async () => {
        const mine = (await lab.allocations(net)).filter((a) => a.spec.node === node);
        const n = await client.get('Node', node);
        const listed = (n?.status?.addresses ?? []).map((a) => a.address);
        return mine.length === 1 && mine[0] && listed.includes(mine[0].spec.address)
          ? mine[0]
          : undefined;
      });
      expect(first.spec.address).toBe('10.79.0.10/24');
      const nrCalm = await lab.bind(net, calm);
      const calmAddress = await eventually('the calm node holds an address', async () => {
        const mine = (await lab.allocations(net)).filter((a) => a.spec.node === calm);
        return mine.length === 1 ? mine[0]?.spec.address : undefined;
      });

      // What a second replica racing the first leaves: another address for the same binding,
      // created later and with a higher name, so the rule (earliest, then lowest name) keeps the
      // first whichever second each was created in.
      const nr = await client.get('NodeRole', nrName);
      const extra = await client.create(
        'NetworkAllocation',
        {
          metadata: {
            name: `${net}.10-79-0-200`,
            labels: { 'crowbar.dev/network': net },
            finalizers: ['crowbar.dev/address-held'],
            ownerReferences: [
              {
                apiVersion: 'crowbar.dev/v1alpha1',
                kind: 'NodeRole',
                name: nrName,
                uid: nr?.metadata.uid ?? '',
              },
            ],
          },
          spec: { network: net, node, address: '10.79.0.200/24', family: 'ipv4', range: 'host' },
        },
        FM,
      );
      expect(extra.metadata.uid).toBeDefined();
      const settled = await eventually('the extra released, the first kept', async () => {
        const mine = (await lab.allocations(net)).filter((a) => a.spec.node === node);
        const cur = await client.get('NodeRole', nrName);
        return mine.length === 1 && cur && wallAddresses(cur, net).length === 1
          ? { mine, cur }
          : undefined;
      });
      expect(settled.mine[0]?.metadata.uid).toBe(first.metadata.uid);
      expect(wallAddresses(settled.cur, net)).toEqual(['10.79.0.10/24']);
      const n = await eventually('the Node lists only the first', async () => {
        const got = await client.get('Node', node);
        const listed = (got?.status?.addresses ?? []).map((a) => a.address);
        return listed.length === 1 ? got : undefined;
      });
      expect(n.status?.addresses).toEqual([
        { network: net, address: '10.79.0.10/24', family: 'ipv4' },
      ]);

      // Committed, the network noderoles run; the write recording a run names the addresses.
      await client.mergePatch('Deployment', dep, { spec: { state: 'committed' } }, FM);
      const active = await eventually(
        'the network noderoles active',
        async () => {
          const got = await Promise.all([nrName, nrCalm].map((x) => client.get('NodeRole', x)));
          return got.every((x) => x?.status?.state === 'active') ? got : undefined;
        },
        60_000,
      );
      expect(active.map((x) => (x ? wallAddresses(x, net) : []))).toEqual([
        ['10.79.0.10/24'],
        [calmAddress],
      ]);
      const held = await lab.allocations(net);
      expect(held.map((a) => a.spec.address).sort()).toEqual(['10.79.0.10/24', calmAddress].sort());
    } finally {
      await lab.cleanup();
    }
  });

  it('reports a hint outside the range and a full range on the NodeRole, and recovers when an address frees up', async () => {
    const lab = new Lab();
    try {
      const net = await lab.createNetwork('tiny', {
        category: 'general',
        subnet: '10.78.0.0/24',
        ranges: [{ name: 'host', first: '10.78.0.10', last: '10.78.0.11' }],
      });
      await lab.createDeployment();
      await lab.waitRole(net);
      const hinted = await lab.createNode('hinted', { [`${net}-v4addr`]: '10.78.0.200' });
      const nrHinted = await lab.bind(net, hinted);
      const bad = await eventually('hint refused', async () => {
        const nr = await client.get('NodeRole', nrHinted);
        return condition(nr, 'Addressed')?.reason === 'HintOutsideRange' ? nr : undefined;
      });
      expect(condition(bad, 'Addressed')?.message).toMatch(
        /hint .*-v4addr=10\.78\.0\.200 is outside network .* range host \(10\.78\.0\.10-10\.78\.0\.11\): give an address inside it or remove the hint/,
      );
      // The annealer writes the noderole's message, quoting the condition, in its next pass.
      await eventually('the message says why', async () =>
        /outside network/.test((await client.get('NodeRole', nrHinted))?.status?.message ?? ''),
      );
      await client.delete('NodeRole', nrHinted);

      const [a, b, c] = [
        await lab.createNode('a'),
        await lab.createNode('b'),
        await lab.createNode('c'),
      ];
      await lab.bind(net, a);
      await lab.bind(net, b);
      await eventually('two allocated', async () => (await lab.allocations(net)).length === 2);
      const nrC = await lab.bind(net, c);
      await eventually('range full reported', async () => {
        const nr = await client.get('NodeRole', nrC);
        return condition(nr, 'Addressed')?.reason === 'RangeFull' ? nr : undefined;
      });
      await eventually('the message says the range is full', async () =>
        /range host \(10\.78\.0\.10-10\.78\.0\.11\) is out of addresses: widen the range/.test(
          (await client.get('NodeRole', nrC))?.status?.message ?? '',
        ),
      );
      const events = await eventually('a warning event', async () => {
        const list = await client.kc
          .makeApiClient((await import('@kubernetes/client-node')).CoreV1Api)
          .listEventForAllNamespaces({ fieldSelector: `involvedObject.name=${nrC}` });
        return list.items.some((e) => e.reason === 'RangeFull') ? list.items : undefined;
      });
      expect(events.length).toBeGreaterThan(0);
      // Unbinding a frees an address; c gets it without anyone touching c.
      await client.delete('NodeRole', `network-${net}.${a}`);
      await eventually(
        'c allocated after a was released',
        async () => {
          const allocs = await lab.allocations(net);
          const nr = await client.get('NodeRole', nrC);
          return allocs.some((x) => x.spec.node === c) &&
            condition(nr, 'Addressed')?.status === 'True'
            ? true
            : undefined;
        },
        40_000,
      );
    } finally {
      await lab.cleanup();
    }
  });

  it('reports overlapping ranges, v6 ranges and routers outside the prefix, overlapping subnets in a group, and a subnet changed under allocations; the API refuses a v4 range or router outside the subnet', async () => {
    const lab = new Lab();
    try {
      const overlap = await lab.createNetwork('overlap', {
        category: 'general',
        subnet: '10.79.0.0/24',
        ranges: [
          { name: 'host', first: '10.79.0.10', last: '10.79.0.50' },
          { name: 'dhcp', first: '10.79.0.40', last: '10.79.0.60' },
        ],
      });
      expect(await invalid(overlap, /overlaps/)).toMatch(
        /spec.ranges\[1\] \(dhcp 10.79.0.40-10.79.0.60\) overlaps spec.ranges\[0\] \(host 10.79.0.10-10.79.0.50\): give each range its own addresses/,
      );

      const v6out = await lab.createNetwork('v6out', {
        category: 'general',
        subnet: '10.80.0.0/24',
        v6prefix: 'auto',
        ranges: [
          { name: 'host', first: '10.80.0.10', last: '10.80.0.50' },
          { name: 'host-v6', first: 'fd00:1::1', last: 'fd00:1::ff' },
        ],
        router: { address: 'fd00:2::1' },
      });
      const msg = await invalid(v6out, /outside spec.v6prefix/);
      expect(msg).toMatch(
        /host-v6 fd00:1::1-fd00:1::ff\) lies outside spec.v6prefix \(auto, resolved to fd/,
      );
      expect(msg).toMatch(/spec.router.address \(fd00:2::1\) lies outside spec.v6prefix/);

      const g1 = await lab.createNetwork('g1', { category: 'general', subnet: '10.81.0.0/23' });
      const g2 = await lab.createNetwork('g2', { category: 'general', subnet: '10.81.1.0/24' });
      expect(await invalid(g1, /overlaps network/)).toMatch(
        new RegExp(
          `spec.subnet \\(10.81.0.0/23\\) overlaps network ${g2}'s subnet 10.81.1.0/24 in group g${lab.id}`,
        ),
      );
      await invalid(g2, /overlaps network/);

      expect(
        await refused(
          {
            category: 'general',
            subnet: '10.82.0.0/24',
            ranges: [{ name: 'host', first: '10.82.1.10', last: '10.82.1.20' }],
          },
          lab.net('outside'),
        ),
      ).toMatch(/every IPv4 range in spec.ranges must lie inside spec.subnet/);
      expect(
        await refused(
          { category: 'general', subnet: '10.82.0.0/24', router: { address: '10.83.0.1' } },
          lab.net('router'),
        ),
      ).toMatch(/spec.router.address must lie inside spec.subnet/);

      // A subnet changed under allocations.
      const moving = await lab.createNetwork('moving', {
        category: 'general',
        subnet: '10.84.0.0/24',
        ranges: [{ name: 'host', first: '10.84.0.10', last: '10.84.0.50' }],
      });
      await lab.createDeployment();
      await lab.waitRole(moving);
      const n = await lab.createNode('m1');
      await lab.bind(moving, n);
      await eventually('allocated', async () => (await lab.allocations(moving)).length === 1);
      await client.mergePatch(
        'Network',
        moving,
        {
          spec: {
            subnet: '10.85.0.0/24',
            ranges: [{ name: 'host', first: '10.85.0.10', last: '10.85.0.50' }],
          },
        },
        FM,
      );
      expect(await invalid(moving, /cannot change/)).toMatch(
        new RegExp(
          `spec.subnet cannot change from 10.84.0.0/24 to 10.85.0.0/24 while 1 IPv4 addresses are allocated on network ${moving} \\(10.84.0.10 \\(${n}\\)\\): unbind network-${moving} from those nodes first`,
        ),
      );
      // The allocation stays where it was; nothing new is allocated on the invalid network.
      const allocs = await lab.allocations(moving);
      expect(allocs.map((a) => a.spec.address)).toEqual(['10.84.0.10/24']);
    } finally {
      await lab.cleanup();
    }
  });

  it("keeps the admin network's auto v6 prefix across an operator restart", async () => {
    const lab = new Lab();
    try {
      const admin = await lab.createNetwork('admin', {
        category: 'admin',
        subnet: '10.86.0.0/24',
        ranges: [{ name: 'host', first: '10.86.0.10', last: '10.86.0.50' }],
      });
      const before = await eventually('auto prefix', async () => {
        const n = await client.get('Network', admin);
        return n?.status?.v6prefix !== undefined && n.status.subnetId !== undefined ? n : undefined;
      });
      expect(before.status?.v6prefix).toMatch(
        /^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/64$/,
      );
      const system = await client.get('Deployment', 'system');
      const gid = system?.metadata.annotations?.['crowbar.dev/ula-global-id'] ?? '';
      expect(gid).toMatch(/^[0-9a-f]{10}$/);
      expect(before.status?.v6prefix).toBe(autoPrefix(gid, before.status?.subnetId ?? -1));

      for (const op of ops.splice(0)) await op.stop();
      ops.push(await start(`ipam-c-${uid()}`));
      // A spec change makes the new process write the status again.
      await client.mergePatch('Network', admin, { spec: { description: 'after restart' } }, FM);
      const after = await eventually('status observed after the restart', async () => {
        const n = await client.get('Network', admin);
        return n?.status?.observedGeneration === n?.metadata.generation &&
          (n?.metadata.generation ?? 0) > (before.metadata.generation ?? 0)
          ? n
          : undefined;
      });
      expect(after.status?.v6prefix).toBe(before.status?.v6prefix);
      expect(after.status?.subnetId).toBe(before.status?.subnetId);
      expect(
        (await client.get('Deployment', 'system'))?.metadata.annotations?.[
          'crowbar.dev/ula-global-id'
        ],
      ).toBe(gid);
    } finally {
      await lab.cleanup();
    }
  });
});
