/**
 * The CRD schemas reject bad input on the real API server with a message naming the field, and
 * the status subresource separates what people write from what the framework observes.
 */
import { describe, expect, it } from 'vitest';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { apiCode, apiMessage } from '../../operator/kube/errors.ts';
import type { NodeRole } from '../../generated/crowbar.ts';
import { testClient, uid } from '../harness/context.ts';

const client = testClient();
const api = client.kc.makeApiClient(CustomObjectsApi);
const G = { group: 'crowbar.dev', version: 'v1alpha1' };

async function createRaw(plural: string, body: Record<string, unknown>): Promise<unknown> {
  const kind = {
    nodes: 'Node',
    roles: 'Role',
    noderoles: 'NodeRole',
    networks: 'Network',
    deployments: 'Deployment',
  }[plural];
  return api.createClusterCustomObject({
    ...G,
    plural,
    body: { apiVersion: 'crowbar.dev/v1alpha1', kind, ...body },
  });
}

async function rejection(plural: string, body: Record<string, unknown>): Promise<string> {
  try {
    await createRaw(plural, body);
  } catch (e) {
    expect(apiCode(e)).toBe(422);
    return apiMessage(e);
  }
  throw new Error(`the API server accepted a bad ${plural} object: ${JSON.stringify(body)}`);
}

const id = uid();
const fqdn = (n: string) => `${n}-${id}.lab.example.com`;

interface Bad {
  what: string;
  plural: string;
  body: Record<string, unknown>;
  /** Text the message must contain: the field path and what to fix. */
  expect: RegExp[];
}

const bad: Bad[] = [
  {
    what: 'node name that is not an FQDN of three labels',
    plural: 'nodes',
    body: { metadata: { name: `short-${id}.lab` }, spec: {} },
    expect: [/metadata\.name must be the node's FQDN with at least three/],
  },
  {
    what: 'node MAC in the wrong format',
    plural: 'nodes',
    body: { metadata: { name: fqdn('mac') }, spec: { macs: ['52-54-00-12-34-56'] } },
    expect: [/spec\.macs\[0\]/, /should match/],
  },
  {
    what: 'node bootEnv that names no boot environment',
    plural: 'nodes',
    body: { metadata: { name: fqdn('boot') }, spec: { bootEnv: 'Windows' } },
    expect: [/spec\.bootEnv/],
  },
  {
    what: 'node hints of the wrong type',
    plural: 'nodes',
    body: { metadata: { name: fqdn('hints') }, spec: { hints: 'admin' } },
    expect: [/spec\.hints/, /must be of type object/],
  },
  {
    what: 'role with an unknown jig',
    plural: 'roles',
    body: { metadata: { name: `r-${id}-jig` }, spec: { jig: 'chef' } },
    expect: [/spec\.jig/, /Unsupported value: "chef"/],
  },
  {
    what: 'role missing its jig',
    plural: 'roles',
    body: { metadata: { name: `r-${id}-nojig` }, spec: { requires: [] } },
    expect: [/spec\.jig/, /Required value/],
  },
  {
    what: 'script role without a script',
    plural: 'roles',
    body: { metadata: { name: `r-${id}-noscript` }, spec: { jig: 'script' } },
    expect: [/spec\.script/, /required when spec\.jig is script/],
  },
  {
    what: 'role both implicit and cluster',
    plural: 'roles',
    body: {
      metadata: { name: `r-${id}-flags` },
      spec: { jig: 'noop', flags: ['implicit', 'cluster'] },
    },
    expect: [/spec\.flags/, /cannot hold both implicit and cluster/],
  },
  {
    what: 'role requiring a badly named role',
    plural: 'roles',
    body: { metadata: { name: `r-${id}-req` }, spec: { jig: 'noop', requires: ['Not A Role'] } },
    expect: [/spec\.requires\[0\]/],
  },
  {
    what: 'noderole missing its role',
    plural: 'noderoles',
    body: {
      metadata: { name: `x.${fqdn('nr')}` },
      spec: { node: fqdn('nr'), deployment: 'system' },
    },
    expect: [/spec\.role/, /Required value/],
  },
  {
    what: 'noderole whose name is not <role>.<node>',
    plural: 'noderoles',
    body: {
      metadata: { name: `wrong.${fqdn('nr')}` },
      spec: { node: fqdn('nr'), role: 'right', deployment: 'system' },
    },
    expect: [/metadata\.name must be <spec\.role>\.<spec\.node>/],
  },
  {
    what: 'noderole retry of the wrong type',
    plural: 'noderoles',
    body: {
      metadata: { name: `r.${fqdn('nr2')}` },
      spec: { node: fqdn('nr2'), role: 'r', deployment: 'system', retry: 'now' },
    },
    expect: [/spec\.retry/, /must be of type integer/],
  },
  {
    what: 'network subnet that is not a CIDR',
    plural: 'networks',
    body: {
      metadata: { name: `n-${id}-cidr` },
      spec: { category: 'general', subnet: '192.168.300.0/24' },
    },
    expect: [/spec\.subnet/, /must be an IPv4 CIDR/],
  },
  {
    what: 'network subnet with host bits set',
    plural: 'networks',
    body: {
      metadata: { name: `n-${id}-host` },
      spec: { category: 'general', subnet: '192.168.124.5/24' },
    },
    expect: [/spec\.subnet/, /host bits zero/],
  },
  {
    what: 'network range whose first address is after its last',
    plural: 'networks',
    body: {
      metadata: { name: `n-${id}-rev` },
      spec: {
        category: 'admin',
        subnet: '192.168.124.0/24',
        ranges: [{ name: 'host', first: '192.168.124.200', last: '192.168.124.10' }],
      },
    },
    expect: [/spec\.ranges\[0\]/, /first address must not be after its last/],
  },
  {
    what: 'network range outside its subnet',
    plural: 'networks',
    body: {
      metadata: { name: `n-${id}-out` },
      spec: {
        category: 'admin',
        subnet: '192.168.124.0/24',
        ranges: [{ name: 'host', first: '192.168.125.10', last: '192.168.125.20' }],
      },
    },
    expect: [/spec\.ranges/, /must lie inside spec\.subnet/],
  },
  {
    what: 'network range with a bad address',
    plural: 'networks',
    body: {
      metadata: { name: `n-${id}-badip` },
      spec: {
        category: 'admin',
        subnet: '192.168.124.0/24',
        ranges: [{ name: 'host', first: '192.168.124.x', last: '192.168.124.20' }],
      },
    },
    expect: [/spec\.ranges\[0\]\.first/, /must be an IPv4 or IPv6 address/],
  },
  {
    what: 'network v6prefix that is not a /64',
    plural: 'networks',
    body: {
      metadata: { name: `n-${id}-v6` },
      spec: { category: 'admin', subnet: '10.9.0.0/24', v6prefix: 'fd00:1:2::/48' },
    },
    expect: [/spec\.v6prefix/, /auto or an IPv6 \/64/],
  },
  {
    what: 'network router outside its subnet',
    plural: 'networks',
    body: {
      metadata: { name: `n-${id}-rtr` },
      spec: { category: 'admin', subnet: '10.9.0.0/24', router: { address: '10.9.1.1' } },
    },
    expect: [/spec\.router\.address/, /must lie inside spec\.subnet/],
  },
  {
    what: 'network VLAN out of range',
    plural: 'networks',
    body: {
      metadata: { name: `n-${id}-vlan` },
      spec: { category: 'general', subnet: '10.9.0.0/24', vlan: 5000 },
    },
    expect: [/spec\.vlan/, /less than or equal to 4094/],
  },
  {
    what: 'network with an unknown category',
    plural: 'networks',
    body: {
      metadata: { name: `n-${id}-cat` },
      spec: { category: 'storage', subnet: '10.9.0.0/24' },
    },
    expect: [/spec\.category/, /Unsupported value: "storage"/],
  },
  {
    what: 'deployment without a parent',
    plural: 'deployments',
    body: { metadata: { name: `d-${id}-orphan` }, spec: { state: 'proposed' } },
    expect: [/spec\.parent/, /spec\.parent is required/],
  },
  {
    what: 'deployment in an unknown state',
    plural: 'deployments',
    body: { metadata: { name: `d-${id}-state` }, spec: { parent: 'system', state: 'running' } },
    expect: [/spec\.state/, /Unsupported value: "running"/],
  },
];

describe('CRD schemas reject bad objects with a message naming the field', () => {
  it.each(bad)('rejects $what', async ({ plural, body, expect: patterns }) => {
    const msg = await rejection(plural, body);
    for (const p of patterns) expect(msg).toMatch(p);
  });

  it('covers at least 12 distinct bad inputs', () => {
    expect(bad.length).toBeGreaterThanOrEqual(12);
  });

  it('accepts a good object of every kind (the rejections are not blanket)', async () => {
    const node = fqdn('good');
    await createRaw('nodes', { metadata: { name: node }, spec: { macs: ['52:54:00:12:34:56'] } });
    await createRaw('roles', {
      metadata: { name: `r-${id}-good` },
      spec: { jig: 'noop', flags: ['implicit'] },
    });
    await createRaw('networks', {
      metadata: { name: `n-${id}-good` },
      spec: {
        category: 'admin',
        subnet: '192.168.124.0/24',
        v6prefix: 'auto',
        router: { address: '192.168.124.1' },
        ranges: [
          { name: 'host', first: '192.168.124.10', last: '192.168.124.200' },
          { name: 'host-v6', first: 'fd00::10', last: 'fd00::ffff' },
        ],
      },
    });
    await createRaw('deployments', {
      metadata: { name: `d-${id}-good` },
      spec: { parent: 'system' },
    });
    await createRaw('noderoles', {
      metadata: { name: `r-${id}-good.${node}` },
      spec: { node, role: `r-${id}-good`, deployment: `d-${id}-good` },
    });
    const got = await client.get('Node', node);
    // Defaults from the schema are applied by the API server.
    expect(got?.spec).toMatchObject({
      admin: false,
      available: false,
      bootEnv: 'sledgehammer',
      deployment: 'system',
    });
  });

  it('refuses to change a noderole binding', async () => {
    const node = fqdn('imm');
    const name = `r.${node}`;
    await createRaw('noderoles', {
      metadata: { name },
      spec: { node, role: 'r', deployment: 'system' },
    });
    try {
      await client.mergePatch('NodeRole', name, { spec: { deployment: 'other' } }, 'test');
      throw new Error('binding change was accepted');
    } catch (e) {
      expect(apiCode(e)).toBe(422);
      expect(apiMessage(e)).toMatch(/spec\.deployment cannot change/);
    }
  });
});

describe('status subresource', () => {
  it('drops status written through the main resource', async () => {
    const name = fqdn('st1');
    await createRaw('nodes', { metadata: { name }, spec: {}, status: { alive: true } });
    const created = await client.get('Node', name);
    expect(created?.status?.alive).toBeUndefined();
    await client.mergePatch('Node', name, { status: { alive: true } }, 'test');
    expect((await client.get('Node', name))?.status?.alive).toBeUndefined();
    // The status subresource is the way in.
    await client.mergePatchStatus('Node', name, { status: { alive: true } }, 'test');
    expect((await client.get('Node', name))?.status?.alive).toBe(true);
  });

  it('ignores spec written through /status', async () => {
    const name = fqdn('st2');
    await createRaw('nodes', { metadata: { name }, spec: { available: false } });
    await client.mergePatchStatus(
      'Node',
      name,
      { spec: { available: true }, status: { alive: false } },
      'test',
    );
    const got = await client.get('Node', name);
    expect(got?.spec.available).toBe(false);
    expect(got?.status?.alive).toBe(false);
  });

  it('refuses a status write computed from a stale resourceVersion', async () => {
    const name = fqdn('st3');
    await createRaw('nodes', { metadata: { name }, spec: {} });
    const first = await client.get('Node', name);
    const rv = first?.metadata.resourceVersion ?? '';
    await client.applyStatus('Node', name, { alive: true }, 'test', rv);
    try {
      await client.applyStatus('Node', name, { alive: false }, 'test', rv);
      throw new Error('stale write accepted');
    } catch (e) {
      expect(apiCode(e)).toBe(409);
    }
    expect((await client.get('Node', name))?.status?.alive).toBe(true);
  });
});

describe('free-form NodeRole status (ADR 0030)', () => {
  /** The fields a manager owns under status, as the API server tracks them. */
  const owned = (nr: NodeRole | undefined, manager: string): Record<string, unknown> => {
    const e = nr?.metadata.managedFields?.find(
      (m) => m.manager === manager && m.subresource === 'status',
    );
    return ((e?.fieldsV1 as Record<string, unknown> | undefined)?.['f:status'] ?? {}) as Record<
      string,
      unknown
    >;
  };
  const many = (n: number): Record<string, unknown> =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${String(i)}`, { v: i, w: [i] }]));

  it('tracks wall, committed data and run input as one field each, and still merges patches', async () => {
    const node = fqdn('atomic');
    const name = `r.${node}`;
    await createRaw('noderoles', {
      metadata: { name },
      spec: { node, role: 'r', deployment: 'system' },
    });
    await client.mergePatchStatus(
      'NodeRole',
      name,
      {
        status: {
          committedData: many(50),
          wall: { ...many(200), keep: { a: 1, b: 2 }, drop: true },
          run: { number: 1, input: many(200) },
        },
      },
      'jig-test',
    );
    // Another manager's merge patch: a key nulled, a nested one added, as the allocator's is.
    await client.mergePatchStatus(
      'NodeRole',
      name,
      {
        status: {
          wall: { drop: null, keep: { b: null, c: 3 }, crowbar: { network: { admin: {} } } },
        },
      },
      'allocator-test',
    );
    const got = await client.get('NodeRole', name);
    expect(got?.status?.wall).toMatchObject({
      keep: { a: 1, c: 3 },
      crowbar: { network: { admin: {} } },
    });
    expect(got?.status?.wall).not.toHaveProperty('drop');
    expect(got?.status?.wall?.['keep']).not.toHaveProperty('b');
    expect(Object.keys(got?.status?.run?.input ?? {})).toHaveLength(200);
    // Ownership is of the whole map, not of its 450 leaves: what the API server stores and
    // processes on every later write of the object does not grow with the data.
    const jig = owned(got, 'jig-test');
    expect(jig['f:committedData']).toEqual({});
    // ADR 0031: the whole run record is one field too.
    expect(jig['f:run']).toEqual({});
    expect(owned(got, 'allocator-test')['f:wall']).toEqual({});
    expect(JSON.stringify(got?.metadata.managedFields).length).toBeLessThan(2000);
  });

  it('tracks the run record and the conditions as one field each (ADR 0031)', async () => {
    const node = fqdn('atomic-run');
    const name = `r.${node}`;
    await createRaw('noderoles', {
      metadata: { name },
      spec: { node, role: 'r', deployment: 'system' },
    });
    const cond = (type: string, status: 'True' | 'False') => ({
      type,
      status,
      reason: 'Test',
      message: `${type} ${status}`,
      lastTransitionTime: '2026-12-01T00:00:00Z',
    });
    await client.mergePatchStatus(
      'NodeRole',
      name,
      {
        status: {
          run: { number: 1, id: 'r-1', started: '2026-12-01T00:00:00Z', result: 'running' },
          conditions: [cond('Active', 'False'), cond('Ready', 'False')],
        },
      },
      'annealer-test',
    );
    // A run's end as the annealer writes it: a merge into the record, not a replacement of it.
    await client.mergePatchStatus(
      'NodeRole',
      name,
      { status: { run: { result: 'succeeded', finished: '2026-12-01T00:00:01Z', exitCode: 0 } } },
      'annealer-test',
    );
    // Another manager replaces the list with one more condition, as the binder does.
    const before = await client.get('NodeRole', name);
    await client.mergePatchStatus(
      'NodeRole',
      name,
      { status: { conditions: [...(before?.status?.conditions ?? []), cond('Bound', 'True')] } },
      'binder-test',
    );
    const got = await client.get('NodeRole', name);
    expect(got?.status?.run).toMatchObject({
      number: 1,
      id: 'r-1',
      result: 'succeeded',
      exitCode: 0,
    });
    expect(got?.status?.conditions?.map((c) => c.type)).toEqual(['Active', 'Ready', 'Bound']);
    expect(owned(got, 'annealer-test')['f:run']).toEqual({});
    // The list's last writer owns all of it; no per-type entries are kept.
    expect(owned(got, 'binder-test')['f:conditions']).toEqual({});
    expect(owned(got, 'annealer-test')).not.toHaveProperty('f:conditions');
  });
});
