import { describe, expect, it } from 'vitest';
import { MalformedReview, deny, parseReview, reviewResponse } from './admission.ts';

const good = {
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
    kind: { group: 'crowbar.dev', version: 'v1alpha1', kind: 'Role' },
    resource: { group: 'crowbar.dev', version: 'v1alpha1', resource: 'roles' },
    requestKind: { group: 'crowbar.dev', version: 'v1alpha1', kind: 'Role' },
    name: 'dns',
    operation: 'DELETE',
    userInfo: { username: 'admin', groups: ['system:masters'] },
    object: null,
    oldObject: { metadata: { name: 'dns' }, spec: { jig: 'noop' } },
    dryRun: false,
    options: { kind: 'DeleteOptions', apiVersion: 'meta.k8s.io/v1' },
  },
};

describe('parseReview', () => {
  it('reads the fields the decisions use', () => {
    expect(parseReview(good)).toEqual({
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: { group: 'crowbar.dev', version: 'v1alpha1', kind: 'Role' },
      resource: { group: 'crowbar.dev', version: 'v1alpha1', resource: 'roles' },
      name: 'dns',
      operation: 'DELETE',
      oldObject: { metadata: { name: 'dns' }, spec: { jig: 'noop' } },
      userInfo: { username: 'admin' },
    });
  });

  it('keeps subResource and dryRun', () => {
    const r = parseReview({
      ...good,
      request: { ...good.request, subResource: 'status', dryRun: true },
    });
    expect(r).toMatchObject({ subResource: 'status', dryRun: true });
  });

  const bad: [string, unknown, RegExp][] = [
    ['not an object', [], /JSON object/],
    ['null', null, /JSON object/],
    [
      'v1beta1',
      { ...good, apiVersion: 'admission.k8s.io/v1beta1' },
      /admissionReviewVersions \[v1\]/,
    ],
    ['no request', { ...good, request: undefined }, /request must be an object/],
    ['no uid', { ...good, request: { ...good.request, uid: '' } }, /request\.uid/],
    ['uid not a string', { ...good, request: { ...good.request, uid: 7 } }, /request\.uid/],
    ['bad operation', { ...good, request: { ...good.request, operation: 'PATCH' } }, /operation/],
    [
      'no resource',
      { ...good, request: { ...good.request, resource: 'roles' } },
      /request\.resource/,
    ],
    [
      'kind without kind',
      { ...good, request: { ...good.request, kind: { group: '', version: 'v1' } } },
      /request\.kind/,
    ],
    ['name not a string', { ...good, request: { ...good.request, name: 1 } }, /request\.name/],
  ];
  it.each(bad)('refuses %s', (_what, body, re) => {
    expect(() => parseReview(body)).toThrow(MalformedReview);
    expect(() => parseReview(body)).toThrow(re);
  });
});

describe('reviewResponse', () => {
  it('echoes the uid when allowing', () => {
    expect(reviewResponse('u', { allowed: true })).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: 'u', allowed: true },
    });
  });

  it('carries a 403 status with the message when denying', () => {
    expect(reviewResponse('u', deny('no: do this instead'))).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: {
        uid: 'u',
        allowed: false,
        status: { code: 403, reason: 'Forbidden', message: 'no: do this instead' },
      },
    });
  });

  it('marks a bad object as a bad request', () => {
    expect(reviewResponse('u', deny('no spec', 400))).toMatchObject({
      response: { allowed: false, status: { code: 400, reason: 'BadRequest' } },
    });
  });

  it('marks a webhook failure as an internal error', () => {
    expect(reviewResponse('u', deny('broken', 500))).toMatchObject({
      response: { allowed: false, status: { code: 500, reason: 'InternalError' } },
    });
  });
});
