/**
 * Day two with the chart, on a cluster of its own (a fresh etcd and kube-apiserver without CRDs,
 * so the release owns them and changing them touches no other test): `helm install` creates the
 * CRDs from the crowbar-crds sub-chart; `helm upgrade` to a chart whose CRD changed updates the
 * CRD in the API server (a chart's crds/ folder would not); generated certificates survive the
 * upgrade; `helm uninstall` keeps the CRDs (helm.sh/resource-policy: keep).
 */
import { execFile } from 'node:child_process';
import { cpSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  ApiextensionsV1Api,
  CoreV1Api,
  PolicyV1Api,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { bin } from '../harness/bins.ts';
import { eventually, uid } from '../harness/context.ts';
import { startControlPlane, type ControlPlane } from '../harness/control-plane.ts';
import { ROOT } from '../harness/operator.ts';

const id = uid();
const RELEASE = `cha-${id}`;
const NS = `cha-${id}`;
const tmp = mkdtempSync(join(tmpdir(), 'cha-helm-'));
let cp: ControlPlane;

const helm = async (...args: string[]): Promise<string> =>
  (
    await promisify(execFile)(bin('helm'), args, {
      env: {
        ...process.env,
        KUBECONFIG: cp.kubeconfig,
        HELM_CACHE_HOME: join(tmp, 'cache'),
        HELM_CONFIG_HOME: join(tmp, 'config'),
        HELM_DATA_HOME: join(tmp, 'data'),
      },
    })
  ).stdout;

beforeAll(async () => {
  cp = await startControlPlane({ crds: false, controllerManager: false });
}, 120_000);

afterAll(async () => {
  await cp.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const columns = (crd: V1CustomResourceDefinition | undefined) =>
  crd?.spec.versions[0]?.additionalPrinterColumns?.map((c) => c.name);

describe('helm install, upgrade with a changed CRD, uninstall', () => {
  it('installs the CRDs, updates them on upgrade, keeps them on uninstall', async () => {
    const kc = loadKubeConfig(cp.kubeconfig);
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    expect((await ext.listCustomResourceDefinition()).items).toEqual([]);
    // No webhook pods run here (no kubelet): Ignore keeps the API server writable.
    const common = ['--namespace', NS, '--set', 'webhook.failurePolicy=Ignore'];
    await helm(
      'install',
      RELEASE,
      join(ROOT, 'charts', 'crowbar'),
      '--create-namespace',
      ...common,
    );
    const crds = (await ext.listCustomResourceDefinition()).items;
    expect(crds.map((c) => c.metadata?.name).sort()).toEqual([
      'bootenvs.crowbar.dev',
      'deployments.crowbar.dev',
      'networkallocations.crowbar.dev',
      'networks.crowbar.dev',
      'noderoles.crowbar.dev',
      'nodes.crowbar.dev',
      'roles.crowbar.dev',
    ]);
    for (const c of crds) {
      expect(c.metadata?.annotations?.['helm.sh/resource-policy']).toBe('keep');
      expect(c.metadata?.annotations?.['meta.helm.sh/release-name']).toBe(RELEASE);
    }
    const roles = await ext.readCustomResourceDefinition({ name: 'roles.crowbar.dev' });
    expect(columns(roles)).not.toContain('Upgraded');
    const pdb = await kc
      .makeApiClient(PolicyV1Api)
      .readNamespacedPodDisruptionBudget({ name: `${RELEASE}-webhook`, namespace: NS });
    expect(pdb.spec?.minAvailable).toBe(1);
    const tls = async () =>
      (await core.readNamespacedSecret({ name: `${RELEASE}-operator-metrics-tls`, namespace: NS }))
        .data?.['tls.crt'];
    const cert = await tls();
    expect(Buffer.from(cert ?? '', 'base64').toString()).toMatch(/BEGIN CERTIFICATE/);

    // The next version of the chart: one CRD has a new printer column.
    const next = join(tmp, 'crowbar');
    cpSync(join(ROOT, 'charts', 'crowbar'), next, { recursive: true });
    // files/ links to the repository's crds/: the copy gets files of its own, so crds/ is untouched.
    const files = join(next, 'charts', 'crds', 'files');
    rmSync(files);
    cpSync(join(ROOT, 'crds'), files, { recursive: true });
    const file = join(files, 'roles.crowbar.dev.yaml');
    expect(lstatSync(file).isSymbolicLink()).toBe(false);
    const text = readFileSync(file, 'utf8');
    const changed = text.replace(
      '        - { name: Jig, type: string, jsonPath: .spec.jig }\n',
      '        - { name: Jig, type: string, jsonPath: .spec.jig }\n' +
        '        - { name: Upgraded, type: string, jsonPath: .spec.description, priority: 1 }\n',
    );
    expect(changed).not.toBe(text);
    writeFileSync(file, changed);
    await helm('upgrade', RELEASE, next, ...common);
    const upgraded = await eventually('the CRD upgraded', async () => {
      const r = await ext.readCustomResourceDefinition({ name: 'roles.crowbar.dev' });
      return columns(r)?.includes('Upgraded') ? r : undefined;
    });
    const before = columns(roles) ?? [];
    expect(columns(upgraded)).toEqual([before[0], 'Upgraded', ...before.slice(1)]);
    expect(await tls()).toBe(cert);

    await helm('uninstall', RELEASE, '--namespace', NS, '--wait');
    const left = (await ext.listCustomResourceDefinition()).items.map((c) => c.metadata?.name);
    expect(left).toHaveLength(7);
    expect(left).toContain('roles.crowbar.dev');
  });
});
