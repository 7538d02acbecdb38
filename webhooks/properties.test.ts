/** Properties: nothing a client sends makes the parser or the decisions throw. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MalformedReview, parseReview, type AdmissionRequest } from './admission.ts';
import { decide, type ClusterSnapshot } from './decide.ts';

const empty: ClusterSnapshot = { roles: [], noderoles: [], nodes: [], deployments: [] };

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
          ),
          fc.oneof(fc.string(), fc.array(fc.string()), fc.jsonValue()),
        ),
        status: fc.jsonValue(),
      }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom('roles', 'noderoles', 'deployments', 'nodes'),
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
          const d = decide(request, empty);
          expect(typeof d.allowed).toBe('boolean');
        },
      ),
      { numRuns: 500 },
    );
  });
});
