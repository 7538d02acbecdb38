/** The system deployment is the root of the deployment tree and always exists (§1.5). */
import { isConflict } from '../../kube/errors.ts';
import type { CrowbarClient } from '../../kube/client.ts';

export const SYSTEM_DEPLOYMENT = 'system';

/** Creates the system deployment if it is missing; a concurrent create by another replica is fine. */
export async function ensureSystemDeployment(
  client: CrowbarClient,
  fieldManager: string,
  cached?: (name: string) => unknown,
): Promise<boolean> {
  // The informer cache answers the common case without an API round trip.
  if (cached?.(SYSTEM_DEPLOYMENT) !== undefined) return false;
  if (await client.get('Deployment', SYSTEM_DEPLOYMENT)) return false;
  try {
    await client.create(
      'Deployment',
      {
        metadata: { name: SYSTEM_DEPLOYMENT },
        spec: {
          state: 'committed',
          description: 'Root of the deployment tree; new nodes land here.',
        },
      },
      fieldManager,
    );
    return true;
  } catch (e) {
    if (isConflict(e)) return false;
    throw e;
  }
}
