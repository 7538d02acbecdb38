/** Server-side applies YAML manifests (multi-document) with a field manager of our own. */
import { readFileSync } from 'node:fs';
import {
  KubernetesObjectApi,
  PatchStrategy,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';

export function readManifests(files: string[]): KubernetesObject[] {
  return files.flatMap((f) =>
    loadAll(readFileSync(f, 'utf8')).filter(
      (d): d is KubernetesObject => typeof d === 'object' && d !== null,
    ),
  );
}

export async function applyManifests(
  kc: KubeConfig,
  objs: KubernetesObject[],
  fieldManager = 'crowbar-lab',
): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  for (const o of objs) {
    try {
      await api.patch(o, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply);
    } catch (e) {
      throw new Error(`applying ${o.kind ?? '?'} ${o.metadata?.name ?? '?'} failed`, { cause: e });
    }
  }
}
