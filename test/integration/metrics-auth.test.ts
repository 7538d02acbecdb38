/**
 * The operator's metrics behind TLS and Kubernetes authentication/authorization (as
 * controller-runtime's secure serving): real ServiceAccount tokens from the real API server, a
 * real TokenReview and SubjectAccessReview per caller, RBAC on the non-resource URL /metrics.
 */
import { request } from 'node:https';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { METRICS_READER_RULES } from '../../operator/runtime/secure-metrics.ts';
import { eventually, uid } from '../harness/context.ts';
import { startOperator, type OperatorProc } from '../harness/operator.ts';
import { issueLeaf, makeCa } from '../harness/pki.ts';
import { freePort } from '../harness/process.ts';

const kubeconfig = inject('kubeconfig');
const kc = loadKubeConfig(kubeconfig);
const core = kc.makeApiClient(CoreV1Api);
const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
const id = uid();
const NS = 'default';
const READER = `cha-reader-${id}`;
const STRANGER = `cha-stranger-${id}`;
const ROLE = `cha-metrics-reader-${id}`;
const dir = mkdtempSync(join(tmpdir(), 'cha-metrics-'));
let op: OperatorProc | undefined;
let port = 0;
let ca: Buffer;

interface Answer {
  status: number;
  body: string;
}

function get(token?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/metrics',
        ca,
        servername: 'localhost',
        timeout: 5000,
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function token(sa: string): Promise<string> {
  const tr = await core.createNamespacedServiceAccountToken({
    name: sa,
    namespace: NS,
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [] } },
  });
  return tr.status?.token ?? '';
}

beforeAll(async () => {
  makeCa(dir, '/CN=cha-metrics-ca');
  const leaf = issueLeaf(dir, 'metrics', '/CN=localhost', true);
  ca = readFileSync(join(dir, 'ca.crt'));
  for (const name of [READER, STRANGER])
    await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name } } });
  await rbac.createClusterRole({ body: { metadata: { name: ROLE }, rules: METRICS_READER_RULES } });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: ROLE },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: ROLE },
      subjects: [{ kind: 'ServiceAccount', name: READER, namespace: NS }],
    },
  });
  port = await freePort();
  op = await startOperator({
    kubeconfig,
    logDir: inject('cpDir'),
    identity: `cha-metrics-${id}`,
    args: [
      `--lease-name=cha-metrics-${id}`,
      `--metrics-addr=127.0.0.1:${String(port)}`,
      `--metrics-cert=${leaf.crt}`,
      `--metrics-key=${leaf.key}`,
    ],
  });
});

afterAll(async () => {
  await op?.stop();
  await rbac.deleteClusterRoleBinding({ name: ROLE }).catch(() => undefined);
  await rbac.deleteClusterRole({ name: ROLE }).catch(() => undefined);
  for (const name of [READER, STRANGER])
    await core.deleteNamespacedServiceAccount({ name, namespace: NS }).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

describe('secure metrics', () => {
  it('serves /metrics over TLS only to a token whose user may get /metrics', async () => {
    await eventually(
      'the metrics server',
      async () => (await get().catch(() => undefined))?.status,
    );
    const none = await get();
    expect(none.status).toBe(401);
    expect(none.body).toMatch(/no bearer token/);
    expect((await get('not-a-token')).status).toBe(401);
    const stranger = await get(await token(STRANGER));
    expect(stranger.status).toBe(403);
    expect(stranger.body).toContain(`system:serviceaccount:${NS}:${STRANGER}`);
    const reader = await token(READER);
    // RBAC reaches the API server's authorizer through its informers: wait for the binding.
    const ok = await eventually('the reader allowed', async () => {
      const a = await get(reader);
      return a.status === 200 ? a : undefined;
    });
    expect(ok.body).toMatch(/^# TYPE crowbar_reconcile_total counter$/m);
    // Process metrics under their standard names.
    expect(ok.body).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(ok.body).toMatch(/^process_resident_memory_bytes \d/m);
    expect(ok.body).toMatch(/^nodejs_heap_size_total_bytes \d/m);
    // Not over plain HTTP, and not on the health server any more.
    await expect(fetch(`http://127.0.0.1:${String(port)}/metrics`)).rejects.toThrow();
    expect((await op?.http('/metrics'))?.status).toBe(404);
    await eventually('ready', async () => (await op?.http('/readyz'))?.status === 200);
  });
});
