import { describe, expect, it } from 'vitest';
import type {
  BootEnv,
  Deployment,
  DeploymentSpec,
  Network,
  NetworkAllocation,
  NetworkSpec,
  NetworkStatus,
  Node,
  NodeRole,
  NodeRoleStatus,
  NodeSpec,
  Role,
  RoleSpec,
} from '../generated/crowbar.ts';
import { allocationName } from '../operator/ipam/name.ts';
import type { AdmissionRequest, Decision, Operation } from './admission.ts';
import { decide, MAX_PROBLEMS, nameList, type ClusterSnapshot } from './decide.ts';

const N1 = 'n1.lab.example.com';
const N2 = 'n2.lab.example.com';
const N3 = 'n3.lab.example.com';

function role(name: string, spec: Partial<RoleSpec> = {}): Role {
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Role',
    metadata: { name },
    spec: { jig: 'noop', ...spec },
  };
}

function node(name: string, spec: NodeSpec = {}, labels?: Record<string, string>): Node {
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Node',
    metadata: { name, ...(labels ? { labels } : {}) },
    spec,
  };
}

/** A general network on 10.10.0.0/24 with a host range 10.10.0.10-10.10.0.99 unless given. */
function net(name: string, spec: Partial<NetworkSpec> = {}, status?: NetworkStatus): Network {
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Network',
    metadata: { name },
    spec: {
      category: 'general',
      subnet: '10.10.0.0/24',
      ranges: [{ name: 'host', first: '10.10.0.10', last: '10.10.0.99' }],
      ...spec,
    },
    ...(status ? { status } : {}),
  };
}

/** The allocation of `address` (with prefix length) to `nodeName` on `network`. */
function alloc(
  network: string,
  nodeName: string,
  address: string,
  range = 'host',
): NetworkAllocation {
  const ip = address.slice(0, address.indexOf('/'));
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'NetworkAllocation',
    metadata: { name: allocationName(network, ip) },
    spec: {
      network,
      node: nodeName,
      address,
      family: ip.includes(':') ? 'ipv6' : 'ipv4',
      range,
    },
  };
}

function dep(name: string, spec: Partial<DeploymentSpec> = {}): Deployment {
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'Deployment',
    metadata: { name },
    spec: name === 'system' ? { state: 'committed', ...spec } : { parent: 'system', ...spec },
  };
}

function nr(
  roleName: string,
  nodeName: string,
  status?: NodeRoleStatus,
  extra: { deployment?: string; data?: Record<string, unknown> } = {},
): NodeRole {
  return {
    apiVersion: 'crowbar.dev/v1alpha1',
    kind: 'NodeRole',
    metadata: { name: `${roleName}.${nodeName}` },
    spec: {
      role: roleName,
      node: nodeName,
      deployment: extra.deployment ?? 'system',
      ...(extra.data ? { data: extra.data } : {}),
    },
    ...(status ? { status } : {}),
  };
}

const PLURAL = {
  Role: 'roles',
  NodeRole: 'noderoles',
  Deployment: 'deployments',
  Network: 'networks',
  Node: 'nodes',
} as const;

type Judged = Role | NodeRole | Deployment | Network | Node;

function req(
  operation: Operation,
  obj: Judged,
  oldObject?: Judged,
  extra: Partial<AdmissionRequest> = {},
): AdmissionRequest {
  return {
    uid: 'u-1',
    kind: { group: 'crowbar.dev', version: 'v1alpha1', kind: obj.kind },
    resource: { group: 'crowbar.dev', version: 'v1alpha1', resource: PLURAL[obj.kind] },
    operation,
    ...(obj.metadata.name !== undefined ? { name: obj.metadata.name } : {}),
    ...(operation === 'DELETE' ? { oldObject: obj } : { object: obj }),
    ...(oldObject ? { oldObject } : {}),
    ...extra,
  };
}

function snap(s: Partial<ClusterSnapshot> = {}): ClusterSnapshot {
  return {
    roles: s.roles ?? [],
    nodes: s.nodes ?? [node(N1), node(N2), node(N3)],
    deployments: s.deployments ?? [dep('system'), dep('d1')],
    noderoles: s.noderoles ?? [],
    networks: s.networks ?? [],
    networkallocations: s.networkallocations ?? [],
    bootenvs: s.bootenvs ?? [bootenv('local'), bootenv('sledgehammer')],
  };
}

function bootenv(name: string): BootEnv {
  return { apiVersion: 'crowbar.dev/v1alpha1', kind: 'BootEnv', metadata: { name }, spec: {} };
}

/** 'allowed' or the refusal message, so tables read as expectations. */
const verdict = (d: Decision): string => (d.allowed ? 'allowed' : d.message);

interface Row {
  what: string;
  request: AdmissionRequest;
  snapshot: ClusterSnapshot;
  /** 'allowed', or patterns the refusal message must all match. */
  expect: 'allowed' | RegExp[];
}

function check(rows: Row[]): void {
  it.each(rows)('$what', ({ request, snapshot, expect: want }) => {
    const got = decide(request, snapshot);
    if (want === 'allowed') {
      expect(verdict(got)).toBe('allowed');
    } else {
      expect(got.allowed).toBe(false);
      for (const re of want) expect(verdict(got)).toMatch(re);
      if (!got.allowed) expect(got.code ?? 403).toBe(403);
    }
  });
}

describe('Role create/update: requires stay acyclic (§1.3)', () => {
  check([
    {
      what: 'a role requiring nothing',
      request: req('CREATE', role('a')),
      snapshot: snap(),
      expect: 'allowed',
    },
    {
      what: 'a require naming a role that does not exist yet (late binding)',
      request: req('CREATE', role('a', { requires: ['later'] })),
      snapshot: snap(),
      expect: 'allowed',
    },
    {
      what: 'a role requiring itself',
      request: req('CREATE', role('a', { requires: ['a'] })),
      snapshot: snap(),
      expect: [/would close a dependency cycle: a -> a/, /Remove the require/],
    },
    {
      what: 'the other side of a late-bound require closing a two-role cycle',
      request: req('CREATE', role('b', { requires: ['a'] })),
      snapshot: snap({ roles: [role('a', { requires: ['b'] })] }),
      expect: [/spec\.requires of role b would close a dependency cycle: b -> a -> b\./],
    },
    {
      what: 'an update adding a require that closes two cycles names both paths',
      request: req(
        'UPDATE',
        role('c', { requires: ['a'] }),
        role('c'), // before: requires nothing
      ),
      snapshot: snap({
        roles: [
          role('a', { requires: ['b', 'x'] }),
          role('b', { requires: ['c'] }),
          role('x', { requires: ['c'] }),
          role('c'),
        ],
      }),
      expect: [/c -> a -> b -> c; c -> a -> x -> c/],
    },
    {
      what: 'an update adding an acyclic require',
      request: req('UPDATE', role('c', { requires: ['a'] }), role('c')),
      snapshot: snap({ roles: [role('a'), role('c')] }),
      expect: 'allowed',
    },
    {
      what: 'an update leaving requires alone is not re-judged (a cycle made earlier can be fixed)',
      request: req(
        'UPDATE',
        role('a', { requires: ['b'], description: 'new' }),
        role('a', { requires: ['b'] }),
      ),
      snapshot: snap({ roles: [role('a', { requires: ['b'] }), role('b', { requires: ['a'] })] }),
      expect: 'allowed',
    },
    {
      what: 'an update removing the require that closed a cycle',
      request: req('UPDATE', role('b'), role('b', { requires: ['a'] })),
      snapshot: snap({ roles: [role('a', { requires: ['b'] }), role('b', { requires: ['a'] })] }),
      expect: 'allowed',
    },
  ]);
});

describe('Role delete', () => {
  const many = Array.from({ length: 8 }, (_, i) => nr('web', `n${i}.lab.example.com`));
  check([
    {
      what: 'a role nothing binds',
      request: req('DELETE', role('web')),
      snapshot: snap({ roles: [role('web')], noderoles: [nr('db', N1)] }),
      expect: 'allowed',
    },
    {
      what: 'a role still bound names up to five noderoles and the count',
      request: req('DELETE', role('web')),
      snapshot: snap({ roles: [role('web')], noderoles: many }),
      expect: [
        /role web is still bound by 8 noderole\(s\)/,
        /web\.n0\.lab\.example\.com, .*web\.n4\.lab\.example\.com and 3 more/,
        /delete those noderoles first/,
      ],
    },
  ]);
});

describe('NodeRole create: bind-time constraints (§1.2, §6.1)', () => {
  const roles = [
    role('dns'),
    role('dns-client', { requires: ['dns'] }),
    role('unresolved', { requires: ['ghost', 'spook'] }),
    role('needs-unresolved', { requires: ['unresolved'] }),
    role('database', { flags: ['abstract'] }),
    role('postgres', { provides: ['database'] }),
    role('mysql', { provides: ['database'] }),
    role('ntp-a', { conflicts: ['ntp-b'] }),
    role('ntp-b'),
    role('cyc-a', { requires: ['cyc-b'] }),
    role('cyc-b', { requires: ['cyc-a'] }),
  ];
  check([
    {
      what: 'a role whose requires resolve',
      request: req('CREATE', nr('dns-client', N1)),
      snapshot: snap({ roles }),
      expect: 'allowed',
    },
    {
      what: 'a role that does not exist',
      request: req('CREATE', nr('nope', N1)),
      snapshot: snap({ roles }),
      expect: [
        /cannot bind role nope to node n1/,
        /role nope does not exist; create the Role first/,
      ],
    },
    {
      what: 'a node that does not exist',
      request: req('CREATE', nr('dns', 'n9.lab.example.com')),
      snapshot: snap({ roles }),
      expect: [/node n9\.lab\.example\.com does not exist; create the Node/],
    },
    {
      what: 'a deployment that does not exist',
      request: req('CREATE', nr('dns', N1, undefined, { deployment: 'd9' })),
      snapshot: snap({ roles }),
      expect: [/deployment d9 does not exist; create it first/],
    },
    {
      what: 'an abstract role names the roles that provide it',
      request: req('CREATE', nr('database', N1)),
      snapshot: snap({ roles }),
      expect: [/role database is abstract and cannot be bound/, /\(mysql, postgres\)/],
    },
    {
      what: 'a role whose requires do not resolve names them',
      request: req('CREATE', nr('unresolved', N1)),
      snapshot: snap({ roles }),
      expect: [/requires ghost, spook, which do not exist yet; create them/],
    },
    {
      what: 'a role that needs a role with unresolved requires',
      request: req('CREATE', nr('needs-unresolved', N1)),
      snapshot: snap({ roles }),
      expect: [/role unresolved \(needed by needs-unresolved\) requires ghost, spook/],
    },
    {
      what: 'a conflict with a role already on the node',
      request: req('CREATE', nr('ntp-a', N1)),
      snapshot: snap({ roles, noderoles: [nr('ntp-b', N1)] }),
      expect: [/role ntp-a conflicts with role ntp-b/, /remove it or pick another node/],
    },
    {
      what: 'a conflict in the other direction',
      request: req('CREATE', nr('ntp-b', N1)),
      snapshot: snap({ roles, noderoles: [nr('ntp-a', N1)] }),
      expect: [/role ntp-b conflicts with role ntp-a/],
    },
    {
      what: 'the conflicting role on another node is no conflict',
      request: req('CREATE', nr('ntp-a', N1)),
      snapshot: snap({ roles, noderoles: [nr('ntp-b', N2)] }),
      expect: 'allowed',
    },
    {
      what: 'a role another noderole on the node already provides',
      request: req('CREATE', nr('database', N1)),
      snapshot: snap({
        roles: [role('database'), role('postgres', { provides: ['database'] })],
        noderoles: [nr('postgres', N1)],
      }),
      expect: [/already provides database; the binding is not needed/],
    },
    {
      what: 'a role providing one already bound on the node',
      request: req('CREATE', nr('postgres', N1)),
      snapshot: snap({
        roles: [role('database'), role('postgres', { provides: ['database'] })],
        noderoles: [nr('database', N1)],
      }),
      expect: [/role postgres provides database/, /remove database\.n1\.lab\.example\.com first/],
    },
    {
      what: 'two roles with overlapping provides on one node',
      request: req('CREATE', nr('mysql', N1)),
      snapshot: snap({ roles, noderoles: [nr('postgres', N1)] }),
      expect: [/both provide database; a node can hold only one/],
    },
    {
      what: 'a role whose requires form a cycle',
      request: req('CREATE', nr('cyc-a', N1)),
      snapshot: snap({ roles }),
      expect: [/form a cycle \(cyc-a -> cyc-b -> cyc-a\)/],
    },
    {
      what: 'a noderole the cache already holds (a repeated create) is left to the API server',
      request: req('CREATE', nr('ntp-a', N1)),
      snapshot: snap({ roles, noderoles: [nr('ntp-a', N1)] }),
      expect: 'allowed',
    },
  ]);
});

describe('NodeRole update: spec.data is editable only while proposed (§1.4)', () => {
  const data1 = { port: 53 };
  const data2 = { port: 5353 };
  const committed =
    /spec\.data can change only while it is proposed; set spec\.proposed: true on it/;
  check([
    {
      what: 'data change while proposed',
      request: req(
        'UPDATE',
        nr('dns', N1, { state: 'proposed' }, { data: data2 }),
        nr('dns', N1, { state: 'proposed' }, { data: data1 }),
      ),
      snapshot: snap(),
      expect: 'allowed',
    },
    {
      what: 'data change while unbound (no status yet)',
      request: req(
        'UPDATE',
        nr('dns', N1, undefined, { data: data2 }),
        nr('dns', N1, undefined, { data: data1 }),
      ),
      snapshot: snap(),
      expect: 'allowed',
    },
    ...(['todo', 'blocked', 'transition', 'active', 'error'] as const).map((state): Row => ({
      what: `data change while ${state}`,
      request: req(
        'UPDATE',
        nr('dns', N1, { state }, { data: data2, deployment: 'd1' }),
        nr('dns', N1, { state }, { data: data1, deployment: 'd1' }),
      ),
      snapshot: snap(),
      expect: [new RegExp(`is ${state}:`), committed, /deployment d1/],
    })),
    {
      what: 'data added where there was none, while active',
      request: req(
        'UPDATE',
        nr('dns', N1, { state: 'active' }, { data: data1 }),
        nr('dns', N1, { state: 'active' }),
      ),
      snapshot: snap(),
      expect: [committed],
    },
    {
      what: 'metadata-only change while active',
      request: req(
        'UPDATE',
        {
          ...nr('dns', N1, { state: 'active' }, { data: data1 }),
          metadata: { name: `dns.${N1}`, labels: { a: 'b' } },
        },
        nr('dns', N1, { state: 'active' }, { data: data1 }),
      ),
      snapshot: snap(),
      expect: 'allowed',
    },
    {
      what: 'retry raised while in error (other spec fields may change)',
      request: req(
        'UPDATE',
        {
          ...nr('dns', N1, { state: 'error' }, { data: data1 }),
          spec: { role: 'dns', node: N1, deployment: 'system', data: data1, retry: 1 },
        },
        nr('dns', N1, { state: 'error' }, { data: data1 }),
      ),
      snapshot: snap(),
      expect: 'allowed',
    },
    {
      what: 'an empty data object is the same as none',
      request: req(
        'UPDATE',
        nr('dns', N1, { state: 'active' }, { data: {} }),
        nr('dns', N1, { state: 'active' }),
      ),
      snapshot: snap(),
      expect: 'allowed',
    },
  ]);
});

describe('NodeRole delete: test_if_destroyable (§1.4)', () => {
  const p = (r: string, n: string) => `${r}.${n}`;
  const parent = nr('dns', N1, { state: 'active', runCount: 1, cohort: 0 });
  const child = (n: string, status: Partial<NodeRoleStatus>) =>
    nr('dns-client', n, { parents: [p('dns', N1)], cohort: 1, ...status });
  const grandchild = (n: string, status: Partial<NodeRoleStatus>) =>
    nr('app', n, { parents: [p('dns-client', N1)], cohort: 2, ...status });
  check([
    {
      what: 'no children',
      request: req('DELETE', parent),
      snapshot: snap({ noderoles: [parent, nr('other', N2, { parents: [] })] }),
      expect: 'allowed',
    },
    {
      what: 'all transitive children on the same node',
      request: req('DELETE', parent),
      snapshot: snap({
        noderoles: [
          parent,
          child(N1, { state: 'active', runCount: 3 }),
          grandchild(N1, { state: 'active', runCount: 1 }),
        ],
      }),
      expect: 'allowed',
    },
    {
      what: 'all transitive children proposed and never run',
      request: req('DELETE', parent),
      snapshot: snap({
        noderoles: [
          parent,
          child(N2, { state: 'proposed', runCount: 0 }),
          nr('app', N3, { parents: [p('dns-client', N2)], state: 'proposed', runCount: 0 }),
        ],
      }),
      expect: 'allowed',
    },
    {
      what: 'a live child on another node',
      request: req('DELETE', parent),
      snapshot: snap({ noderoles: [parent, child(N2, { state: 'active', runCount: 1 })] }),
      expect: [
        /noderole dns\.n1\.lab\.example\.com has 1 live child noderole\(s\)/,
        /dns-client\.n2\.lab\.example\.com \(active, 1 run\(s\)\)/,
        /delete those children first/,
      ],
    },
    {
      what: 'a proposed child on another node that has run before is live',
      request: req('DELETE', parent),
      snapshot: snap({ noderoles: [parent, child(N2, { state: 'proposed', runCount: 2 })] }),
      expect: [/dns-client\.n2\.lab\.example\.com \(proposed, 2 run\(s\)\)/],
    },
    {
      what: 'a live grandchild on another node, through a child on the same node',
      request: req('DELETE', parent),
      snapshot: snap({
        noderoles: [
          parent,
          child(N1, { state: 'proposed', runCount: 0 }),
          nr('app', N2, { parents: [p('dns-client', N1)], state: 'todo', cohort: 2 }),
        ],
      }),
      expect: [/app\.n2\.lab\.example\.com \(todo, 0 run\(s\)\)/],
    },
    {
      what: 'mixed: names only the live children, deepest first',
      request: req('DELETE', parent),
      snapshot: snap({
        noderoles: [
          parent,
          child(N2, { state: 'proposed', runCount: 0 }),
          child(N3, { state: 'active', runCount: 1 }),
          grandchild(N3, { state: 'active', runCount: 1 }),
          nr('app', N3, {
            parents: [p('dns-client', N3)],
            state: 'active',
            cohort: 2,
            runCount: 1,
          }),
        ],
      }),
      expect: [
        /has 2 live child/,
        /: app\.n3\.lab\.example\.com \(active, 1 run\(s\)\), dns-client\.n3/,
      ],
    },
  ]);
});

describe('Deployment update and delete (§1.5)', () => {
  check([
    {
      what: 'proposing the system deployment',
      request: req('UPDATE', dep('system', { state: 'proposed' }), dep('system')),
      snapshot: snap(),
      expect: [/the system deployment cannot be proposed/, /create a child deployment/],
    },
    {
      what: 'proposing another deployment',
      request: req('UPDATE', dep('d1', { state: 'proposed' }), dep('d1', { state: 'committed' })),
      snapshot: snap(),
      expect: 'allowed',
    },
    {
      what: 'editing the system deployment while committed',
      request: req('UPDATE', dep('system', { description: 'x' }), dep('system')),
      snapshot: snap(),
      expect: 'allowed',
    },
    {
      what: 'deleting the system deployment',
      request: req('DELETE', dep('system')),
      snapshot: snap(),
      expect: [/the system deployment cannot be deleted/],
    },
    {
      what: 'deleting an empty deployment',
      request: req('DELETE', dep('d1')),
      snapshot: snap({ noderoles: [nr('dns', N1)] }),
      expect: 'allowed',
    },
    {
      what: 'deleting a deployment with noderoles and child deployments names both',
      request: req('DELETE', dep('d1')),
      snapshot: snap({
        deployments: [dep('system'), dep('d1'), dep('d2', { parent: 'd1' })],
        noderoles: [
          nr('dns', N1, undefined, { deployment: 'd1' }),
          nr('dns', N2, undefined, { deployment: 'd1' }),
        ],
      }),
      expect: [
        /deployment d1 cannot be deleted/,
        /it still has 2 noderole\(s\) \(dns\.n1\.lab\.example\.com, dns\.n2\.lab\.example\.com\): delete them first/,
        /parent of 1 deployment\(s\) \(d2\)/,
      ],
    },
  ]);
});

describe('free-form data: depth and size limits', () => {
  let deep: Record<string, unknown> = { leaf: 1 };
  for (let i = 0; i < 5000; i++) deep = { d: deep };
  check([
    {
      what: 'a noderole whose data is nested thousands of levels deep',
      request: req('CREATE', nr('dns', N1, undefined, { data: deep })),
      snapshot: snap(),
      expect: [/^noderole dns\.n1\.lab\.example\.com: spec\.data is nested more than 32 levels/],
    },
    {
      what: 'a role whose template is larger than the size limit',
      request: req('CREATE', role('big', { template: { s: 'x'.repeat(300 * 1024) } })),
      snapshot: snap(),
      expect: [/^role big: spec\.template is larger than 256 KiB/],
    },
    {
      what: 'a node whose hints are too deep, on update',
      request: req('UPDATE', node(N1, { hints: deep }), node(N1)),
      snapshot: snap(),
      expect: [/spec\.hints is nested more than 32 levels/],
    },
  ]);
});

describe('Node delete: never the last admin node (§10.3)', () => {
  check([
    {
      what: 'deleting the only admin node',
      request: req('DELETE', node('admin.lab.example.com', { admin: true })),
      snapshot: snap({ nodes: [node('admin.lab.example.com', { admin: true }), node(N1)] }),
      expect: [/is the last admin node and cannot be deleted/, /spec\.admin: true/],
    },
    {
      what: 'deleting one of two admin nodes',
      request: req('DELETE', node('admin.lab.example.com', { admin: true })),
      snapshot: snap({
        nodes: [node('admin.lab.example.com', { admin: true }), node(N1, { admin: true })],
      }),
      expect: 'allowed',
    },
    {
      what: 'deleting a node that is not an admin node',
      request: req('DELETE', node(N1)),
      snapshot: snap({ nodes: [node('admin.lab.example.com', { admin: true }), node(N1)] }),
      expect: 'allowed',
    },
  ]);
});

describe('Network create/update: ranges, group overlaps, allocations (§7.3, issue 5)', () => {
  const other = net('other', { subnet: '10.10.0.0/16', ranges: [] });
  const held = alloc('n1', N1, '10.10.0.11/24');
  check([
    {
      what: 'a network with good ranges',
      request: req('CREATE', net('n1')),
      snapshot: snap(),
      expect: 'allowed',
    },
    {
      what: 'ranges sharing addresses',
      request: req(
        'CREATE',
        net('n1', {
          ranges: [
            { name: 'host', first: '10.10.0.10', last: '10.10.0.99' },
            { name: 'dhcp', first: '10.10.0.90', last: '10.10.0.120' },
          ],
        }),
      ),
      snapshot: snap(),
      expect: [
        /^invalid network n1: spec\.ranges\[1\] \(dhcp 10\.10\.0\.90-10\.10\.0\.120\) overlaps spec\.ranges\[0\] \(host 10\.10\.0\.10-10\.10\.0\.99\): give each range its own addresses$/,
      ],
    },
    {
      what: 'a range holding the broadcast address',
      request: req(
        'CREATE',
        net('n1', { ranges: [{ name: 'host', first: '10.10.0.200', last: '10.10.0.255' }] }),
      ),
      snapshot: snap(),
      expect: [
        /spec\.ranges\[0\] \(host 10\.10\.0\.200-10\.10\.0\.255\) includes the network or broadcast address of spec\.subnet \(10\.10\.0\.0\/24\): keep it within 10\.10\.0\.1-10\.10\.0\.254/,
      ],
    },
    {
      what: 'an IPv6 range on a network without a v6prefix',
      request: req(
        'CREATE',
        net('n1', { ranges: [{ name: 'host-v6', first: 'fd00::10', last: 'fd00::20' }] }),
      ),
      snapshot: snap(),
      expect: [
        /is IPv6 but the network has no spec\.v6prefix: set spec\.v6prefix to a \/64 or auto/,
      ],
    },
    {
      what: 'a subnet overlapping another network of the same group',
      request: req('CREATE', net('n1')),
      snapshot: snap({ networks: [other] }),
      expect: [
        /^invalid network n1: spec\.subnet \(10\.10\.0\.0\/24\) overlaps network other's subnet 10\.10\.0\.0\/16 in group default: choose a subnet no other network of the group uses, or set spec\.group$/,
      ],
    },
    {
      what: 'a v6prefix overlapping another network of the same group',
      request: req(
        'CREATE',
        net('n1', { subnet: '10.20.0.0/24', ranges: [], v6prefix: 'fd00:1::/64' }),
      ),
      snapshot: snap({ networks: [net('other', { v6prefix: 'fd00:1::/64' })] }),
      expect: [
        /spec\.v6prefix \(fd00:1::\/64\) overlaps network other's v6 prefix fd00:1::\/64 in group default: choose another \/64 or use auto/,
      ],
    },
    {
      what: 'the same subnet in another group',
      request: req('CREATE', net('n1', { group: 'storage' })),
      snapshot: snap({ networks: [other] }),
      expect: 'allowed',
    },
    {
      what: 'an update of a network, whose own old version is in the snapshot',
      request: req('UPDATE', net('n1', { description: 'x' }), net('n1')),
      snapshot: snap({ networks: [net('n1')] }),
      expect: 'allowed',
    },
    {
      what: 'every problem joined into one message',
      request: req(
        'CREATE',
        net('n1', {
          ranges: [
            { name: 'host', first: '10.10.0.10', last: '10.10.0.99' },
            { name: 'dhcp', first: '10.10.0.90', last: '10.10.0.255' },
          ],
        }),
      ),
      snapshot: snap({ networks: [other] }),
      expect: [
        /^invalid network n1: spec\.ranges\[1\] .* includes the network or broadcast address .*; spec\.ranges\[1\] .* overlaps spec\.ranges\[0\] .*; spec\.subnet \(10\.10\.0\.0\/24\) overlaps network other's/,
      ],
    },
    {
      what: 'a subnet change while addresses are allocated',
      request: req(
        'UPDATE',
        net('n1', {
          subnet: '10.20.0.0/24',
          ranges: [{ name: 'host', first: '10.20.0.10', last: '10.20.0.99' }],
        }),
        net('n1'),
      ),
      snapshot: snap({ networks: [net('n1')], networkallocations: [held] }),
      expect: [
        /^invalid network n1: spec\.subnet cannot change from 10\.10\.0\.0\/24 to 10\.20\.0\.0\/24 while 1 IPv4 addresses are allocated on network n1 \(10\.10\.0\.11 \(n1\.lab\.example\.com\)\): unbind network-n1 from those nodes first, or create a new network$/,
      ],
    },
    {
      what: 'a subnet change when only other networks hold addresses',
      request: req(
        'UPDATE',
        net('n1', {
          subnet: '10.20.0.0/24',
          ranges: [{ name: 'host', first: '10.20.0.10', last: '10.20.0.99' }],
        }),
        net('n1'),
      ),
      snapshot: snap({
        networks: [net('n1')],
        networkallocations: [alloc('n2', N1, '10.10.0.11/24')],
      }),
      expect: 'allowed',
    },
    {
      what: 'a range shrunk so that it no longer holds an allocation (field named)',
      request: req(
        'UPDATE',
        net('n1', { ranges: [{ name: 'host', first: '10.10.0.50', last: '10.10.0.99' }] }),
        net('n1'),
      ),
      snapshot: snap({ networks: [net('n1')], networkallocations: [held] }),
      expect: [
        /^invalid network n1: spec\.ranges: range host no longer contains 1 allocated addresses \(10\.10\.0\.11 \(n1\.lab\.example\.com\)\): keep them in range host, or unbind network-n1 from those nodes first$/,
      ],
    },
    {
      what: 'a range grown around its allocations',
      request: req(
        'UPDATE',
        net('n1', { ranges: [{ name: 'host', first: '10.10.0.2', last: '10.10.0.200' }] }),
        net('n1'),
      ),
      snapshot: snap({ networks: [net('n1')], networkallocations: [held] }),
      expect: 'allowed',
    },
    {
      what: 'a spec edit of an auto-prefix network whose request carries no status (old status used)',
      request: req(
        'UPDATE',
        net('n1', { v6prefix: 'auto', description: 'edited' }),
        net('n1', { v6prefix: 'auto' }, { v6prefix: 'fd12:3456:789a:1::/64' }),
      ),
      snapshot: snap({
        networkallocations: [alloc('n1', N1, 'fd12:3456:789a:1::10/64', 'host-v6')],
      }),
      expect: 'allowed',
    },
    {
      what: 'an update leaving the spec alone, on a network that overlaps another',
      request: req(
        'UPDATE',
        { ...net('n1'), metadata: { name: 'n1', finalizers: [] } },
        { ...net('n1'), metadata: { name: 'n1', finalizers: ['x'] } },
      ),
      snapshot: snap({ networks: [net('n1'), other] }),
      expect: 'allowed',
    },
    {
      what: 'a delete (not judged)',
      request: req('DELETE', net('n1')),
      snapshot: snap({ networkallocations: [held] }),
      expect: 'allowed',
    },
  ]);

  it(`spells out at most ${MAX_PROBLEMS} problems and counts the rest`, () => {
    const ranges = Array.from({ length: 8 }, (_, i) => ({
      name: `r${i}`,
      first: '10.10.0.10',
      last: '10.10.0.20',
    }));
    const got = decide(req('CREATE', net('n1', { ranges })), snap());
    expect(got.allowed).toBe(false);
    expect(verdict(got).split('; ')).toHaveLength(MAX_PROBLEMS + 1);
    expect(verdict(got)).toMatch(/; and 23 more problem\(s\)$/);
  });

  it('refuses with 400 a network without a category, or an update without oldObject', () => {
    const bad = { ...req('CREATE', net('n1')), object: { metadata: { name: 'n1' }, spec: {} } };
    expect(decide(bad, snap())).toMatchObject({ allowed: false, code: 400 });
    const ranges = {
      ...req('CREATE', net('n1')),
      object: { ...net('n1'), spec: { category: 'general', ranges: [{ name: 'host' }] } },
    };
    expect(decide(ranges, snap())).toMatchObject({ allowed: false, code: 400 });
    expect(decide(req('UPDATE', net('n1')), snap())).toMatchObject({ allowed: false, code: 400 });
  });

  it('leaves /status writes alone', () => {
    const bad = net('n1', { ranges: [{ name: 'host', first: '10.10.0.0', last: '10.10.0.9' }] });
    const got = decide(req('UPDATE', bad, net('n1'), { subResource: 'status' }), snap());
    expect(verdict(got)).toBe('allowed');
  });
});

describe('Node create/update: address hints inside their range (§7.4)', () => {
  const n1 = net('n1', {
    ranges: [
      { name: 'admin', first: '10.10.0.2', last: '10.10.0.9' },
      { name: 'host', first: '10.10.0.10', last: '10.10.0.99' },
    ],
  });
  const networks = [n1];
  check([
    {
      what: 'a node without hints',
      request: req('CREATE', node(N1)),
      snapshot: snap({ networks }),
      expect: 'allowed',
    },
    {
      what: 'a hint inside the host range',
      request: req('CREATE', node(N1, { hints: { 'n1-v4addr': '10.10.0.50' } })),
      snapshot: snap({ networks }),
      expect: 'allowed',
    },
    {
      what: 'a hint outside the host range',
      request: req('CREATE', node(N1, { hints: { 'n1-v4addr': '10.10.0.150' } })),
      snapshot: snap({ networks }),
      expect: [
        /^invalid address hints on node n1\.lab\.example\.com: spec\.hints\["n1-v4addr"\] \(10\.10\.0\.150\) is outside network n1's range host \(10\.10\.0\.10-10\.10\.0\.99\): give an address inside it or remove the hint$/,
      ],
    },
    {
      what: "an admin node's hint outside the admin range",
      request: req('CREATE', node(N1, { admin: true, hints: { 'n1-v4addr': '10.10.0.50' } })),
      snapshot: snap({ networks }),
      expect: [/is outside network n1's range admin \(10\.10\.0\.2-10\.10\.0\.9\)/],
    },
    {
      what: 'a hint that is not an address of its family',
      request: req('CREATE', node(N1, { hints: { 'n1-v4addr': 'fd00::1', 'n1-v6addr': 7 } })),
      snapshot: snap({ networks }),
      expect: [
        /spec\.hints\["n1-v4addr"\] \("fd00::1"\) must be a bare ipv4 address such as 192\.168\.124\.81; spec\.hints\["n1-v6addr"\] \(7\) must be a bare ipv6 address/,
      ],
    },
    {
      what: 'a hint naming a network that does not exist yet',
      request: req('CREATE', node(N1, { hints: { 'later-v4addr': '1.2.3.4' } })),
      snapshot: snap({ networks }),
      expect: 'allowed',
    },
    {
      what: 'an update moving a hint out of its range',
      request: req(
        'UPDATE',
        node(N1, { hints: { 'n1-v4addr': '10.10.0.150' } }),
        node(N1, { hints: { 'n1-v4addr': '10.10.0.50' } }),
      ),
      snapshot: snap({ networks }),
      expect: [/spec\.hints\["n1-v4addr"\] \(10\.10\.0\.150\) is outside network n1's range host/],
    },
    {
      what: 'an update making the node an admin node, so its hint must lie in the admin range',
      request: req(
        'UPDATE',
        node(N1, { admin: true, hints: { 'n1-v4addr': '10.10.0.50' } }),
        node(N1, { hints: { 'n1-v4addr': '10.10.0.50' } }),
      ),
      snapshot: snap({ networks }),
      expect: [/range admin/],
    },
    {
      what: 'an update leaving hints and admin alone, though the range moved under them',
      request: req(
        'UPDATE',
        node(N1, { hints: { 'n1-v4addr': '10.10.0.150' } }, { touched: 'yes' }),
        node(N1, { hints: { 'n1-v4addr': '10.10.0.150' } }),
      ),
      snapshot: snap({ networks }),
      expect: 'allowed',
    },
    {
      what: 'a delete (not judged)',
      request: req('DELETE', node(N1, { hints: { 'n1-v4addr': '10.10.0.150' } })),
      snapshot: snap({ networks }),
      expect: 'allowed',
    },
  ]);

  it('refuses with 400 a node whose hints are not an object', () => {
    const bad = { ...req('CREATE', node(N1)), object: { ...node(N1), spec: { hints: 'x' } } };
    expect(decide(bad, snap())).toMatchObject({ allowed: false, code: 400 });
  });
});

describe('Node create/update: spec.bootEnv names a BootEnv that exists', () => {
  const envs = { bootenvs: [bootenv('local'), bootenv('sledgehammer')] };
  check([
    {
      what: 'a node with the default boot environment',
      request: req('CREATE', node(N1, { bootEnv: 'sledgehammer' })),
      snapshot: snap(envs),
      expect: 'allowed',
    },
    {
      what: 'a node naming a BootEnv that does not exist',
      request: req('CREATE', node(N1, { bootEnv: 'ubuntu-24.04-install' })),
      snapshot: snap(envs),
      expect: [
        /^spec\.bootEnv of node n1\.lab\.example\.com names BootEnv ubuntu-24\.04-install, which does not exist; create BootEnv ubuntu-24\.04-install first, or name one that exists: local, sledgehammer \(kubectl get cbbootenv\)$/,
      ],
    },
    {
      what: 'a node when no BootEnv exists at all',
      request: req('CREATE', node(N1, { bootEnv: 'sledgehammer' })),
      snapshot: snap({ bootenvs: [] }),
      expect: [
        /names BootEnv sledgehammer, which does not exist; create BootEnv sledgehammer first \(no BootEnv exists: the chart and the DHCP sidecar create local and sledgehammer\)$/,
      ],
    },
    {
      what: 'an update moving the node to a missing BootEnv',
      request: req(
        'UPDATE',
        node(N1, { bootEnv: 'debian-13-install' }),
        node(N1, { bootEnv: 'sledgehammer' }),
      ),
      snapshot: snap(envs),
      expect: [/names BootEnv debian-13-install, which does not exist/],
    },
    {
      what: 'an update moving the node to an existing BootEnv',
      request: req('UPDATE', node(N1, { bootEnv: 'local' }), node(N1, { bootEnv: 'sledgehammer' })),
      snapshot: snap(envs),
      expect: 'allowed',
    },
    {
      what: 'an update leaving a bootEnv whose BootEnv was deleted alone',
      request: req(
        'UPDATE',
        node(N1, { bootEnv: 'gone-install', available: false }),
        node(N1, { bootEnv: 'gone-install' }),
      ),
      snapshot: snap(envs),
      expect: 'allowed',
    },
    {
      what: 'a missing BootEnv is reported before bad hints',
      request: req('CREATE', node(N1, { bootEnv: 'x-install', hints: { 'n1-v4addr': 'bad' } })),
      snapshot: snap(envs),
      expect: [/names BootEnv x-install, which does not exist/],
    },
  ]);

  it('refuses with 400 a node whose bootEnv is not a string', () => {
    const bad = { ...req('CREATE', node(N1)), object: { ...node(N1), spec: { bootEnv: 7 } } };
    expect(decide(bad, snap())).toMatchObject({ allowed: false, code: 400 });
  });
});

describe('Node create/update: DNS aliases have one owner (issue 11)', () => {
  const n2 = node(N2, { aliases: ['www.lab.example.com'] });
  check([
    {
      what: 'an alias no one has',
      request: req('CREATE', node(N1, { aliases: ['db.lab.example.com'] })),
      snapshot: snap({ nodes: [n2] }),
      expect: 'allowed',
    },
    {
      what: "an alias that is another node's alias",
      request: req('CREATE', node(N1, { aliases: ['www.lab.example.com'] })),
      snapshot: snap({ nodes: [n2] }),
      expect: [
        /^node n1\.lab\.example\.com: spec\.aliases: www\.lab\.example\.com is an alias of node n2\.lab\.example\.com; a DNS name has one owner: remove it from spec\.aliases$/,
      ],
    },
    {
      what: "an alias that is another node's name, or its own",
      request: req('UPDATE', node(N1, { aliases: [N2, N1] }), node(N1)),
      snapshot: snap({ nodes: [n2] }),
      expect: [
        /n2\.lab\.example\.com is the name of node n2\.lab\.example\.com, n1\.lab\.example\.com is the node's own name/,
      ],
    },
    {
      what: 'an update leaving the aliases alone',
      request: req(
        'UPDATE',
        node(N1, { aliases: ['www.lab.example.com'] }, { touched: 'yes' }),
        node(N1, { aliases: ['www.lab.example.com'] }),
      ),
      snapshot: snap({ nodes: [n2] }),
      expect: 'allowed',
    },
  ]);
});

describe('requests that are not ours', () => {
  check([
    {
      what: 'a status subresource write',
      request: req(
        'UPDATE',
        nr('dns', N1, { state: 'active' }, { data: { a: 2 } }),
        nr('dns', N1, { state: 'active' }, { data: { a: 1 } }),
        { subResource: 'status' },
      ),
      snapshot: snap(),
      expect: 'allowed',
    },
    {
      what: 'another group',
      request: {
        ...req('DELETE', dep('system')),
        resource: { group: 'apps', version: 'v1', resource: 'deployments' },
      },
      snapshot: snap(),
      expect: 'allowed',
    },
    {
      what: 'another crowbar.dev resource',
      request: {
        ...req('DELETE', dep('system')),
        resource: { group: 'crowbar.dev', version: 'v1alpha1', resource: 'networkallocations' },
      },
      snapshot: snap(),
      expect: 'allowed',
    },
  ]);

  it('refuses with 400 a request whose object is not of the kind', () => {
    const bad: AdmissionRequest = {
      ...req('CREATE', nr('dns', N1)),
      object: { metadata: { name: 'x' } },
    };
    expect(decide(bad, snap())).toMatchObject({ allowed: false, code: 400 });
  });

  it('judges a DELETE by request.name when oldObject is absent', () => {
    const r = req('DELETE', dep('system'));
    const bare: AdmissionRequest = {
      uid: r.uid,
      kind: r.kind,
      resource: r.resource,
      operation: 'DELETE',
      name: 'system',
    };
    expect(decide(bare, snap())).toMatchObject({ allowed: false });
  });
});

describe('nameList', () => {
  it.each([
    [[], ''],
    [['a'], 'a'],
    [['a', 'b', 'c', 'd', 'e'], 'a, b, c, d, e'],
    [['a', 'b', 'c', 'd', 'e', 'f', 'g'], 'a, b, c, d, e and 2 more'],
  ])('%j -> %s', (names, want) => {
    expect(nameList(names)).toBe(want);
  });
});
