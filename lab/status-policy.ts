/**
 * The lab's status policy: the chart's ValidatingAdmissionPolicy (webhooks/status-policy.ts) and
 * its viewer/editor ClusterRoles, applied to the lab's API server. Every lab component runs as
 * the control plane's admin (a client certificate named `admin`), so that is the one name allowed
 * to write status besides the accounts a chart install would have; anyone else, a cluster admin
 * included, is refused (try it: `kubectl patch cbnode <name> --subresource=status --as=someone
 * --as-group=system:masters --type=merge -p '{"status":{"alive":false}}'`).
 */
import {
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { GROUP, PLURALS, VERSION } from '../generated/crowbar.ts';
import { statusPolicy, userClusterRoles } from '../webhooks/status-policy.ts';
import { waitFor } from '../test/harness/process.ts';
import { applyManifests } from './apply.ts';
import { dryRunAnswer } from './webhook.ts';

/** The lab's "release": object names start with it. */
export const LAB_RELEASE = 'lab';
/** The lab's own identity (test/harness/pki.ts issues the admin certificate as CN=admin). */
export const LAB_USER = 'admin';

type Kind = keyof typeof PLURALS;

/**
 * A dry-run merge patch of `kind`/`name`'s status as `user` in group system:masters (RBAC lets
 * it through, so only admission can refuse it). Stored nowhere.
 */
export function dryRunStatusAs(
  kc: KubeConfig,
  user: string,
  kind: Kind,
  name: string,
  patch: object,
): Promise<unknown> {
  return kc.makeApiClient(CustomObjectsApi).patchClusterCustomObjectStatus(
    {
      group: GROUP,
      version: VERSION,
      plural: PLURALS[kind],
      name,
      body: patch,
      fieldManager: 'crowbar-lab',
      dryRun: 'All',
    },
    setHeaderOptions(
      'Impersonate-User',
      user,
      setHeaderOptions(
        'Impersonate-Group',
        'system:masters',
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    ),
  );
}

/**
 * Applies the policy and the user roles and waits until the API server enforces the policy (it
 * compiles a new policy a moment after it is created): a dry-run status write by another user on
 * `probeNode` is refused.
 */
export async function applyStatusPolicy(kc: KubeConfig, probeNode: string): Promise<void> {
  const labels = { 'app.kubernetes.io/name': 'crowbar', 'app.kubernetes.io/instance': 'lab' };
  await applyManifests(kc, [
    ...statusPolicy(
      LAB_RELEASE,
      { namespace: 'default', operatorServiceAccount: 'crowbar-operator', extraUsers: [LAB_USER] },
      labels,
    ),
    ...userClusterRoles(LAB_RELEASE, labels),
  ]);
  await waitFor(
    'the status policy to be enforced',
    async () => {
      const a = await dryRunAnswer(() =>
        dryRunStatusAs(kc, 'lab-policy-probe', 'Node', probeNode, { status: { alive: false } }),
      );
      return !a.allowed && a.code === 403 && /written only by/.test(a.message);
    },
    30_000,
  );
}
