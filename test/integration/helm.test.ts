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

  it('gives every pod its placement, pull secrets and resources', async () => {
    const set: string[] = ['--set', 'dhcp.enabled=true', '--set', 'dhcp.serverIp=10.0.0.2'];
    set.push('--set-json', 'imagePullSecrets=[{"name":"regcred"}]');
    for (const c of ['operator', 'webhook', 'dns', 'dhcp'])
      set.push(
        '--set',
        `${c}.nodeSelector.pool=${c}`,
        '--set-json',
        `${c}.tolerations=[{"key":"${c}","operator":"Exists"}]`,
        '--set-json',
        `${c}.affinity={"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":1,"podAffinityTerm":{"topologyKey":"${c}"}}]}}`,
      );
    type Pod = {
      imagePullSecrets?: unknown;
      nodeSelector?: Record<string, string>;
      tolerations?: { key: string }[];
      affinity?: unknown;
      containers: { name: string; resources?: { requests?: object } }[];
    };
    const docs = loadAll(await helm('template', 't', CHART, ...set)) as (K8sDoc & {
      spec?: { template?: { spec?: Pod } };
    })[];
    const pods = docs.filter((d) => d.kind === 'Deployment');
    expect(pods.map((d) => d.metadata.name).sort()).toEqual([
      't-dns',
      't-operator',
      't-operator-dhcp-admin',
      't-webhook',
    ]);
    for (const d of pods) {
      const pod = d.spec?.template?.spec;
      const c =
        pod?.containers[0]?.name === 'operator' ? 'operator' : (pod?.containers[0]?.name ?? '');
      expect(pod?.imagePullSecrets, d.metadata.name).toEqual([{ name: 'regcred' }]);
      expect(pod?.nodeSelector, d.metadata.name).toEqual({ pool: c });
      expect(pod?.tolerations?.[0]?.key, d.metadata.name).toBe(c);
      expect(JSON.stringify(pod?.affinity), d.metadata.name).toContain(`"topologyKey":"${c}"`);
      for (const ct of pod?.containers ?? [])
        expect(ct.resources?.requests, `${d.metadata.name}/${ct.name}`).toBeDefined();
    }
  });

  it('gives the DHCP sidecar the node API’s CA, and only the CA, to serve as an initrd', async () => {
    type Pod = {
      containers: { env?: { name: string; value?: string }[] }[];
      volumes?: {
        name: string;
        secret?: { secretName: string; items?: { key: string; path: string }[] };
        configMap?: { name: string; items?: { key: string; path: string }[] };
      }[];
    };
    const pod = async (...set: string[]) => {
      const docs = loadAll(
        await helm(
          'template',
          't',
          CHART,
          '--set',
          'dhcp.enabled=true',
          '--set',
          'dhcp.serverIp=10.0.0.2',
          ...set,
        ),
      ) as (K8sDoc & { spec?: { template?: { spec?: Pod } } })[];
      const p = docs.find((d) => d.metadata.name === 't-operator-dhcp-admin')?.spec?.template?.spec;
      return {
        env: p?.containers[0]?.env?.find((e) => e.name === 'CROWBAR_API_CA_FILE')?.value,
        vol: p?.volumes?.find((v) => v.name === 'api-ca'),
      };
    };
    const byDefault = await pod();
    expect(byDefault.env).toBe('/etc/crowbar/api-ca/ca.crt');
    expect(byDefault.vol?.secret).toEqual({
      secretName: 't-operator-api-tls',
      items: [{ key: 'ca.crt', path: 'ca.crt' }],
    });
    const own = await pod('--set', 'api.tlsSecret=site-api-tls');
    expect(own.vol?.secret?.secretName).toBe('site-api-tls');
    const cm = await pod(
      '--set',
      'dhcp.apiCa.configMap=site-ca',
      '--set',
      'dhcp.apiCa.key=root.pem',
    );
    expect(cm.vol?.secret).toBeUndefined();
    expect(cm.vol?.configMap).toEqual({
      name: 'site-ca',
      items: [{ key: 'root.pem', path: 'ca.crt' }],
    });
  });

  it('renders an optional ServiceMonitor that scrapes the metrics Service over TLS with a token', async () => {
    const plain = loadAll(await helm('template', 't', CHART)) as K8sDoc[];
    expect(plain.some((d) => d.kind === 'ServiceMonitor')).toBe(false);
    const docs = loadAll(
      await helm('template', 't', CHART, '--set', 'metrics.serviceMonitor.enabled=true'),
    ) as (K8sDoc & {
      metadata: { labels?: Record<string, string> };
      spec?: {
        selector?: { matchLabels?: Record<string, string> };
        endpoints?: {
          port: string;
          scheme: string;
          bearerTokenFile: string;
          tlsConfig: { serverName: string; ca: { secret: { name: string } } };
        }[];
        ports?: { name: string }[];
      };
    })[];
    const sm = docs.find((d) => d.kind === 'ServiceMonitor');
    const svc = docs.find((d) => d.kind === 'Service' && d.metadata.name === 't-operator-metrics');
    // It selects exactly the metrics Service, by that Service's labels.
    expect(svc?.metadata.labels).toMatchObject(sm?.spec?.selector?.matchLabels ?? { none: '' });
    for (const d of docs.filter((x) => x.kind === 'Service' && x !== svc))
      expect(d.metadata.labels).not.toMatchObject(sm?.spec?.selector?.matchLabels ?? {});
    const ep = sm?.spec?.endpoints?.[0];
    expect(svc?.spec?.ports?.map((p) => p.name)).toContain(ep?.port);
    expect(ep).toMatchObject({
      scheme: 'https',
      bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
      tlsConfig: { serverName: 't-operator-metrics.default.svc' },
    });
    const secret = docs.find(
      (d) => d.kind === 'Secret' && d.metadata.name === ep?.tlsConfig.ca.secret.name,
    );
    expect(secret).toBeDefined();
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
      // The status policy would refuse every other file's status writes (they write as the
      // admin); status-policy.test.ts applies the chart's policy scoped to its own objects.
      '--set',
      'statusPolicy.enabled=false',
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
