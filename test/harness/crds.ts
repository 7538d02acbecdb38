/** Applies crds/*.yaml to a cluster and waits until each is Established and served. */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  ApiextensionsV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { load } from 'js-yaml';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { waitFor } from './process.ts';

export const CRD_DIR = join(import.meta.dirname, '..', '..', 'crds');

export function readCrds(): V1CustomResourceDefinition[] {
  return readdirSync(CRD_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => load(readFileSync(join(CRD_DIR, f), 'utf8')) as V1CustomResourceDefinition);
}

export async function applyCrds(kubeconfig: string): Promise<void> {
  const api = loadKubeConfig(kubeconfig).makeApiClient(ApiextensionsV1Api);
  const crds = readCrds();
  for (const crd of crds) {
    await api.patchCustomResourceDefinition(
      { name: crd.metadata?.name ?? '', body: crd, fieldManager: 'crowbar-harness', force: true },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  }
  for (const crd of crds) {
    const name = crd.metadata?.name ?? '';
    await waitFor(
      `CRD ${name} Established`,
      async () => {
        const got = await api.readCustomResourceDefinition({ name });
        return (
          got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ??
          false
        );
      },
      30_000,
    );
  }
}
