/**
 * The Helm chart with the real helm against the real API server: it lints clean (--strict),
 * refuses bad values and unknown keys with a clear message, installs (here without its CRDs: the
 * shared API server has them; helm-upgrade.test.ts installs and upgrades them on a cluster of its
 * own), grants exactly the RBAC the operator declares, and uninstalls cleanly.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AppsV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { describe, expect, inject, it } from 'vitest';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { CLUSTER_RULES, NAMESPACE_RULES } from '../../operator/rbac.ts';
import { METRICS_AUTH_RULES, METRICS_READER_RULES } from '../../operator/runtime/secure-metrics.ts';
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
  it('lints clean with --strict', async () => {
    const out = await helm('lint', '--strict', CHART);
    expect(out).toMatch(/0 chart\(s\) failed/);
    expect(out).not.toMatch(/\[(WARNING|ERROR)\]/);
  });

  it('refuses a typo in any values key: every object in values.schema.json is closed', async () => {
    await expect(helm('template', 't', CHART, '--set', 'operator.replica=3')).rejects.toThrow(
      /at '\/operator': additional properties 'replica' not allowed/,
    );
    await expect(
      helm('template', 't', CHART, '--set', 'webhook.podDisruptionBudget.minAvailabe=1'),
    ).rejects.toThrow(/additional properties 'minAvailabe' not allowed/);
    await expect(helm('template', 't', CHART, '--set', 'metric.port=1')).rejects.toThrow(
      /additional properties 'metric' not allowed/,
    );
    await expect(
      helm('template', 't', CHART, '--set-json', 'dns.resources={"limit":{"memory":"1Gi"}}'),
    ).rejects.toThrow(/additional properties 'limit' not allowed/);
    await expect(
      helm('template', 't', CHART, '--set-json', 'operator.tolerations=[{"keys":"a"}]'),
    ).rejects.toThrow(/additional properties 'keys' not allowed/);
    // The schema itself: each object schema either lists its keys and refuses others, or is a map
    // whose values have a schema. Only Helm's own `global` is open.
    const open: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (typeof node !== 'object' || node === null) return;
      const o = node as Record<string, unknown>;
      const isObject =
        o['type'] === 'object' || (Array.isArray(o['type']) && o['type'].includes('object'));
      if (isObject && !path.endsWith('/global') && o['additionalProperties'] === undefined)
        open.push(path);
      for (const [k, v] of Object.entries(o)) walk(v, `${path}/${k}`);
    };
    for (const f of ['values.schema.json', 'charts/crds/values.schema.json'])
      walk(JSON.parse(readFileSync(join(CHART, f), 'utf8')), f);
    expect(open).toEqual([]);
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
    const rules = (kind: string, name: string) =>
      docs.find((d) => d.kind === kind && d.metadata.name === name)?.rules;
    expect(rules('ClusterRole', 't-operator')).toEqual(CLUSTER_RULES);
    expect(rules('Role', 't-operator')).toEqual(NAMESPACE_RULES);
    // The secure metrics server's TokenReview and SubjectAccessReview, and what a scraper needs.
    expect(rules('ClusterRole', 't-operator-metrics-auth')).toEqual(METRICS_AUTH_RULES);
    expect(rules('ClusterRole', 't-metrics-reader')).toEqual(METRICS_READER_RULES);
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
    const notes = await helm(
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
      // The shared API server's CRDs come from the harness, not from a release.
      '--set',
      'crds.enabled=false',
      // No webhook pods run here (no kubelet): Ignore keeps the shared API server writable.
      '--set',
      'webhook.failurePolicy=Ignore',
    );
    // NOTES.txt: what to do next.
    expect(notes).toContain(
      `kubectl create secret generic crowbar-ssh-key -n ${ns} \\\n       --from-file=id_ed25519=`,
    );
    expect(notes).toContain('kubectl crowbar init --wizard');
    expect(notes).toContain(`ClusterRole ${release}-metrics-reader`);
    const kc = loadKubeConfig(kubeconfig);
    const dep = await kc
      .makeApiClient(AppsV1Api)
      .readNamespacedDeployment({ name: `${release}-operator`, namespace: ns });
    const args = dep.spec?.template.spec?.containers[0]?.args ?? [];
    expect(args).toContain('--max-concurrent-runs=25');
    expect(args).toContain('--executor=job');
    expect(args).toContain('--job-image=ghcr.io/crowbar/crowbar:0.1.0');
    expect(args).toContain('--metrics-addr=0.0.0.0:8443');
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
