/**
 * The Helm chart with the real helm against the real API server: it lints, refuses bad values
 * with a clear message, installs (CRDs already present are kept), grants exactly the RBAC the
 * operator declares, and uninstalls cleanly.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AppsV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { describe, expect, inject, it } from 'vitest';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { CLUSTER_RULES, NAMESPACE_RULES } from '../../operator/rbac.ts';
import { WEBHOOK_RULES } from '../../webhooks/manifests.ts';
import { bin } from '../harness/bins.ts';
import { uid } from '../harness/context.ts';
import { ROOT } from '../harness/operator.ts';

const CHART = join(ROOT, 'charts', 'crowbar');
const kubeconfig = inject('kubeconfig');
const helm = async (...args: string[]): Promise<string> =>
  (
    await promisify(execFile)(bin('helm'), args, {
      env: {
        ...process.env,
        KUBECONFIG: kubeconfig,
        HELM_CACHE_HOME: join(inject('cpDir'), 'helm-cache'),
        HELM_CONFIG_HOME: join(inject('cpDir'), 'helm-config'),
        HELM_DATA_HOME: join(inject('cpDir'), 'helm-data'),
      },
    })
  ).stdout;

interface K8sDoc {
  kind: string;
  metadata: { name: string };
  rules?: unknown;
  spec?: { template?: { spec?: { containers?: { args?: string[] }[] } } };
}

describe('helm chart', () => {
  it('lints', async () => {
    expect(await helm('lint', CHART)).toMatch(/0 chart\(s\) failed/);
  });

  it('refuses bad values with a message naming the value', async () => {
    await expect(helm('template', 't', CHART, '--set', 'operator.executor=ssh')).rejects.toThrow(
      /operator\/executor.*one of 'inline', 'job'/s,
    );
    await expect(
      helm('template', 't', CHART, '--set', 'operator.maxConcurrentRuns=0'),
    ).rejects.toThrow(/maxConcurrentRuns/);
  });

  it('renders the RBAC the operator declares in operator/rbac.ts', async () => {
    const docs = loadAll(await helm('template', 't', CHART)) as K8sDoc[];
    expect(docs.find((d) => d.kind === 'ClusterRole')?.rules).toEqual(CLUSTER_RULES);
    expect(docs.find((d) => d.kind === 'Role')?.rules).toEqual(NAMESPACE_RULES);
  });

  it('renders the admission webhook with a generated certificate the API server can trust', async () => {
    const docs = loadAll(await helm('template', 't', CHART)) as (K8sDoc & {
      webhooks?: {
        name: string;
        failurePolicy: string;
        clientConfig: { caBundle: string; service: { name: string } };
        rules: { resources: string[]; operations: string[] }[];
      }[];
    })[];
    const vwc = docs.find((d) => d.kind === 'ValidatingWebhookConfiguration');
    expect(vwc?.webhooks?.map((w) => w.name)).toEqual([
      'roles.crowbar.dev',
      'noderoles.crowbar.dev',
      'deployments.crowbar.dev',
      'networks.crowbar.dev',
      'nodes.crowbar.dev',
    ]);
    // The chart renders the same rules as webhooks/manifests.ts.
    expect(
      vwc?.webhooks?.map((w) => ({
        resource: w.rules[0]?.resources[0],
        operations: w.rules[0]?.operations,
      })),
    ).toEqual(WEBHOOK_RULES);
    for (const w of vwc?.webhooks ?? []) {
      expect(w.failurePolicy).toBe('Fail');
      expect(Buffer.from(w.clientConfig.caBundle, 'base64').toString()).toMatch(
        /BEGIN CERTIFICATE/,
      );
      expect(w.clientConfig.service.name).toBe('t-webhook');
    }
    const off = loadAll(
      await helm('template', 't', CHART, '--set', 'webhook.enabled=false'),
    ) as K8sDoc[];
    expect(off.some((d) => d.kind === 'ValidatingWebhookConfiguration')).toBe(false);
  });

  it('installs into the real API server with values applied, and uninstalls', async () => {
    const release = `cb-${uid()}`;
    const ns = `crowbar-${uid()}`;
    await helm(
      'install',
      release,
      CHART,
      '--namespace',
      ns,
      '--create-namespace',
      '--set',
      'operator.maxConcurrentRuns=25',
      '--set',
      'operator.executor=job',
      // No webhook pods run here (no kubelet): Ignore keeps the shared API server writable.
      '--set',
      'webhook.failurePolicy=Ignore',
      // The status policy would refuse every other file's status writes (they write as the
      // admin); status-policy.test.ts applies the chart's policy scoped to its own objects.
      '--set',
      'statusPolicy.enabled=false',
    );
    const kc = loadKubeConfig(kubeconfig);
    const dep = await kc
      .makeApiClient(AppsV1Api)
      .readNamespacedDeployment({ name: `${release}-operator`, namespace: ns });
    const args = dep.spec?.template.spec?.containers[0]?.args ?? [];
    expect(args).toContain('--max-concurrent-runs=25');
    expect(args).toContain('--executor=job');
    expect(args).toContain('--job-image=ghcr.io/crowbar/crowbar:0.1.0');
    const role = await kc
      .makeApiClient(RbacAuthorizationV1Api)
      .readClusterRole({ name: `${release}-operator` });
    expect(role.rules?.map((r) => r.resources)).toContainEqual(CLUSTER_RULES[1]?.resources);
    expect(await helm('list', '--namespace', ns)).toContain(release);
    await helm('uninstall', release, '--namespace', ns, '--wait');
    await expect(
      kc
        .makeApiClient(AppsV1Api)
        .readNamespacedDeployment({ name: `${release}-operator`, namespace: ns }),
    ).rejects.toMatchObject({ code: 404 });
  });
});
