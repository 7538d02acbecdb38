import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { CoordinationV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeRequest } from './request.ts';
import { deadline, defaultDeadline, isTimeout } from './timeout.ts';

// An API server that takes every connection and never answers: a lost answer, on loopback.
let server: Server;
const sockets = new Set<Socket>();
let url = '';

beforeAll(async () => {
  server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => server.close(r));
});

function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

describe('API request deadlines', () => {
  it('gives every request of every API client a deadline by default', async () => {
    const kc = kubeConfig();
    defaultDeadline(kc, 150);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const lease = kc.makeApiClient(CoordinationV1Api);
    const err1: unknown = await custom
      .getClusterCustomObject({
        group: 'crowbar.dev',
        version: 'v1alpha1',
        plural: 'nodes',
        name: 'a',
      })
      .catch((e: unknown) => e);
    const err2: unknown = await lease
      .readNamespacedLease({ name: 'l', namespace: 'default' })
      .catch((e: unknown) => e);
    expect(isTimeout(err1)).toBe(true);
    expect(isTimeout(err2)).toBe(true);
  });

  it('gives the lean request path the same default deadline', async () => {
    const kc = kubeConfig();
    defaultDeadline(kc, 150);
    const err: unknown = await kubeRequest(kc, 'PATCH', '/apis/crowbar.dev/v1alpha1/nodes/a', {
      contentType: 'application/merge-patch+json',
      json: '{}',
    }).catch((e: unknown) => e);
    expect(isTimeout(err)).toBe(true);
  });

  it('lets a call set its own deadline instead of the default', async () => {
    const kc = kubeConfig();
    defaultDeadline(kc, 60_000);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const err: unknown = await custom
      .listClusterCustomObject(
        { group: 'crowbar.dev', version: 'v1alpha1', plural: 'nodes' },
        deadline(100),
      )
      .catch((e: unknown) => e);
    // Answered by the call's 100 ms, not the default minute (the test's own timeout is 5 s).
    expect(isTimeout(err)).toBe(true);
  });

  it('tells a deadline from other errors', () => {
    expect(isTimeout(new DOMException('x', 'TimeoutError'))).toBe(true);
    expect(isTimeout(new Error('wrapped', { cause: new DOMException('x', 'TimeoutError') }))).toBe(
      true,
    );
    expect(isTimeout(new Error('HTTP 500'))).toBe(false);
  });
});
