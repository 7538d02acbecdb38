/** Properties: nothing a client sends makes the parser or the decisions throw. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MalformedReview, parseReview, type AdmissionRequest } from './admission.ts';
import { decide, reads, type ClusterSnapshot } from './decide.ts';
import type { WatchedKind } from './state.ts';

const FIELD: Record<WatchedKind, keyof ClusterSnapshot> = {
  Role: 'roles',
  NodeRole: 'noderoles',
  Node: 'nodes',
  Deployment: 'deployments',
  Network: 'networks',
  NetworkAllocation: 'networkallocations',
  BootEnv: 'bootenvs',
};

const empty: ClusterSnapshot = {
  roles: [],
  noderoles: [],
  nodes: [],
  deployments: [],
  networks: [],
  networkallocations: [],
  bootenvs: [],
};

describe('properties', () => {
  it('parseReview returns a request or throws MalformedReview, for any JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (body) => {
        try {
          parseReview(body);
        } catch (e) {
          expect(e).toBeInstanceOf(MalformedReview);
        }
      }),
    );
  });

  it('decide answers any object and oldObject for every resource and operation', () => {
    const object = fc.oneof(
      fc.jsonValue(),
      fc.record({
        metadata: fc.record({ name: fc.oneof(fc.string(), fc.constant(1)) }, { requiredKeys: [] }),
        spec: fc.dictionary(
          fc.constantFrom(
            'jig',
            'role',
            'node',
            'deployment',
            'requires',
            'data',
            'state',
            'parent',
            'category',
            'subnet',
            'v6prefix',
            'ranges',
            'router',
            'admin',
            'hints',
          ),
          fc.oneof(fc.string(), fc.array(fc.string()), fc.jsonValue()),
        ),
        status: fc.jsonValue(),
      }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom('roles', 'noderoles', 'deployments', 'nodes', 'networks'),
        fc.constantFrom('CREATE', 'UPDATE', 'DELETE', 'CONNECT' as const),
        object,
        object,
        fc.option(fc.string(), { nil: undefined }),
        (resource, operation, obj, old, name) => {
          const request: AdmissionRequest = {
            uid: 'u',
            kind: { group: 'crowbar.dev', version: 'v1alpha1', kind: 'X' },
            resource: { group: 'crowbar.dev', version: 'v1alpha1', resource },
            operation,
            object: obj,
            oldObject: old,
            ...(name !== undefined ? { name } : {}),
          };
          const read = new Set<string>();
          const watched = new Proxy(empty, {
            get(target, prop, receiver) {
              if (typeof prop === 'string') read.add(prop);
              return Reflect.get(target, prop, receiver) as unknown;
            },
          });
          const d = decide(request, watched);
          expect(typeof d.allowed).toBe('boolean');
          // A fresh re-check lists only reads(request): decide must read nothing else.
          const listed = new Set<string>(reads(request).map((k) => FIELD[k]));
          for (const field of read)
            expect({ resource, operation, field }).toSatisfy(() => listed.has(field));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('decide answers any network, allocation and node hint without throwing', () => {
    const addr = fc.oneof(fc.ipV4(), fc.ipV6(), fc.string({ maxLength: 12 }));
    const cidr = fc.oneof(
      fc.ipV4().map((ip) => `${ip}/24`),
      fc.constantFrom('10.0.0.0/8', '10.0.0.0/31', 'fd00::/64', 'auto'),
      fc.string({ maxLength: 12 }),
    );
    const network = fc.record({
      apiVersion: fc.constant('crowbar.dev/v1alpha1'),
      kind: fc.constant('Network'),
      metadata: fc.record({ name: fc.constantFrom('a', 'b') }),
      spec: fc.record(
        {
          category: fc.constantFrom('general', 'admin', 'unmanaged'),
          group: fc.constantFrom('default', 'g'),
          subnet: cidr,
          v6prefix: cidr,
          ranges: fc.array(
            fc.record({
              name: fc.constantFrom('host', 'admin', 'host-v6'),
              first: addr,
              last: addr,
            }),
            { maxLength: 4 },
          ),
          router: fc.record({ address: addr }),
        },
        { requiredKeys: ['category'] },
      ),
      status: fc.record({ v6prefix: cidr }, { requiredKeys: [] }),
    });
    const allocation = fc.record({
      metadata: fc.record({ name: fc.string() }),
      spec: fc.record({
        network: fc.constantFrom('a', 'b'),
        node: fc.constant('n'),
        address: fc.oneof(addr, cidr),
        family: fc.constantFrom('ipv4', 'ipv6'),
        range: fc.constantFrom('host', 'admin', 'host-v6'),
      }),
    });
    const node = fc.record({
      metadata: fc.record({ name: fc.constant('n') }),
      spec: fc.record(
        {
          admin: fc.boolean(),
          hints: fc.dictionary(
            fc.constantFrom('a-v4addr', 'a-v6addr', 'b-v4addr'),
            fc.oneof(addr, fc.jsonValue()),
          ),
        },
        { requiredKeys: [] },
      ),
    });
    fc.assert(
      fc.property(
        fc.constantFrom('CREATE', 'UPDATE' as const),
        fc.oneof(
          fc.tuple(fc.constant('networks'), network, network),
          fc.tuple(fc.constant('nodes'), node, node),
        ),
        fc.array(network, { maxLength: 3 }),
        fc.array(allocation, { maxLength: 3 }),
        (operation, [resource, obj, old], networks, allocations) => {
          const request: AdmissionRequest = {
            uid: 'u',
            kind: { group: 'crowbar.dev', version: 'v1alpha1', kind: 'X' },
            resource: { group: 'crowbar.dev', version: 'v1alpha1', resource },
            operation,
            object: obj,
            oldObject: old,
          };
          const snapshot = {
            ...empty,
            networks: networks as unknown as ClusterSnapshot['networks'],
            networkallocations: allocations as unknown as ClusterSnapshot['networkallocations'],
          };
          const d = decide(request, snapshot);
          expect(typeof d.allowed).toBe('boolean');
        },
      ),
      { numRuns: 500 },
    );
  });
});
