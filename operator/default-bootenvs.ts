/**
 * The boot environments that exist from the start (issue 9): `local` and `sledgehammer`, the
 * Node CRD's default. The admission webhook refuses a Node whose spec.bootEnv names no BootEnv,
 * so they must exist before the first Node whether or not a DHCP sidecar runs; the operator
 * creates them when it starts leading, as it does the system deployment (the DHCP sidecar does
 * the same at its start; whoever comes second gets 409 and leaves them alone). Their content is
 * the DHCP sidecar's, which serves them.
 */
import { DEFAULT_BOOTENVS } from '../dhcp-sidecar/backend.ts';
import type { CrowbarClient } from './kube/client.ts';
import { isConflict } from './kube/errors.ts';

/** Creates each default BootEnv that is missing; returns the names it created. */
export async function ensureDefaultBootEnvs(
  client: CrowbarClient,
  fieldManager: string,
): Promise<string[]> {
  const created: string[] = [];
  for (const [name, spec] of Object.entries(DEFAULT_BOOTENVS)) {
    if (await client.get('BootEnv', name)) continue;
    try {
      await client.create('BootEnv', { metadata: { name }, spec: { ...spec } }, fieldManager);
      created.push(name);
    } catch (e) {
      if (!isConflict(e)) throw e;
    }
  }
  return created;
}
