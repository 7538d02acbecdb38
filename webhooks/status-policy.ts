/**
 * Who may write the status of crowbar.dev objects, enforced by the API server itself: a
 * ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA since Kubernetes 1.30) and its
 * binding. Status is the operator's record of what it observed and did; an account that can
 * write it could mark a node alive, a noderole active or point two noderoles' parents at each
 * other. RBAC alone cannot say "only these accounts" once a cluster admin hands out `*` rights,
 * and the policy applies to every user, `system:masters` included.
 *
 * Allowed: the operator's ServiceAccount, the job executor's per-run runner accounts (one
 * ServiceAccount per run, named as its Job: {@link RUNNER_NAME_PATTERN}), the DHCP sidecar's
 * account (its acknowledgement on a Node's status.bootEnv) and any extra usernames the installer
 * names (e.g. a break-glass admin). Everyone else is refused with a message that says so.
 *
 * The Helm chart renders the same objects (charts/crowbar/templates/status-policy.yaml) and
 * test/integration/status-policy.test.ts fails on drift; the lab applies them for its own
 * identities (lab/main.ts).
 */
import type {
  V1ClusterRole,
  V1ValidatingAdmissionPolicy,
  V1ValidatingAdmissionPolicyBinding,
} from '@kubernetes/client-node';
import { GROUP } from '../generated/crowbar.ts';

/**
 * The name of a job executor run's ServiceAccount (its Job's name, operator/executors/job-spec.ts
 * `jobName`): a DNS-1123 label ending in `-r<run>-<8 hex>`. Anchored; RE2 syntax (CEL `matches`).
 */
export const RUNNER_NAME_PATTERN = '[a-z0-9]([-a-z0-9]*[a-z0-9])?-r[0-9]+-[0-9a-f]{8}';

/** A ServiceAccount's username as the API server authenticates it. */
export function serviceAccountUser(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

export interface StatusWriters {
  /** The namespace the operator, its Jobs and the sidecars run in. */
  readonly namespace: string;
  /** The operator's ServiceAccount. */
  readonly operatorServiceAccount: string;
  /** The DHCP sidecar's ServiceAccount (it acknowledges boot environments on Node status). */
  readonly dhcpServiceAccount?: string;
  /** Further usernames allowed to write status (break-glass admins, the lab's own identity). */
  readonly extraUsers?: readonly string[];
}

/** The usernames allowed outright, in a fixed order. */
export function allowedUsers(w: StatusWriters): string[] {
  return [
    serviceAccountUser(w.namespace, w.operatorServiceAccount),
    ...(w.dhcpServiceAccount ? [serviceAccountUser(w.namespace, w.dhcpServiceAccount)] : []),
    ...(w.extraUsers ?? []),
  ];
}

/** The anchored pattern matching the job executor's run accounts in `namespace`. */
export function runnerUserPattern(namespace: string): string {
  return `^system:serviceaccount:${namespace}:${RUNNER_NAME_PATTERN}$`;
}

/** The CEL expression the policy validates (true: the write is allowed). */
export function statusWriterExpression(w: StatusWriters): string {
  return (
    `variables.user in ${JSON.stringify(allowedUsers(w))} || ` +
    `variables.user.matches(${JSON.stringify(runnerUserPattern(w.namespace))})`
  );
}

/** The refusal's message (a CEL expression so it can name the resource and the user). */
export const STATUS_REFUSAL_MESSAGE =
  "'the status of crowbar.dev ' + request.resource.resource + ' is written only by the Crowbar " +
  "operator, its jig runners and its sidecars, not by ' + variables.user + ': change its spec " +
  "instead (kubectl crowbar retry re-runs a noderole in error)'";

/** The name of the policy and of its binding. */
export function statusPolicyName(release: string): string {
  return `${release}-status-writers.${GROUP}`;
}

/** The ValidatingAdmissionPolicy and its binding (Deny). */
export function statusPolicy(
  release: string,
  w: StatusWriters,
  labels: Record<string, string> = {},
): [V1ValidatingAdmissionPolicy, V1ValidatingAdmissionPolicyBinding] {
  const name = statusPolicyName(release);
  return [
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name, labels },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [GROUP],
              apiVersions: ['*'],
              // PATCH and UPDATE of a subresource both arrive as UPDATE.
              operations: ['UPDATE'],
              resources: ['*/status'],
            },
          ],
        },
        variables: [{ name: 'user', expression: 'request.userInfo.username' }],
        validations: [
          {
            expression: statusWriterExpression(w),
            messageExpression: STATUS_REFUSAL_MESSAGE,
            reason: 'Forbidden',
          },
        ],
      },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name, labels },
      spec: { policyName: name, validationActions: ['Deny'] },
    },
  ];
}

/** Every crowbar.dev kind, as RBAC resources. */
export const CROWBAR_RESOURCES = [
  'bootenvs',
  'deployments',
  'networkallocations',
  'networks',
  'noderoles',
  'nodes',
  'roles',
];

/** Kinds people edit; NetworkAllocations are the allocator's (read-only to editors). */
export const EDITABLE_RESOURCES = CROWBAR_RESOURCES.filter((r) => r !== 'networkallocations');

const READ = ['get', 'list', 'watch'];
const WRITE = ['create', 'update', 'patch', 'delete'];

/**
 * ClusterRoles for people: a viewer reads every crowbar.dev object (status included: reading
 * status is part of reading the object), an editor also writes their specs. Neither names a
 * `*`/status resource, so status writes are refused by RBAC before the policy sees them.
 */
export function userClusterRoles(
  release: string,
  labels: Record<string, string> = {},
): [V1ClusterRole, V1ClusterRole] {
  const role = (suffix: string, rules: V1ClusterRole['rules']): V1ClusterRole => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: `${release}-crowbar-${suffix}`, labels },
    rules: rules ?? [],
  });
  return [
    role('viewer', [{ apiGroups: [GROUP], resources: CROWBAR_RESOURCES, verbs: READ }]),
    role('editor', [
      { apiGroups: [GROUP], resources: CROWBAR_RESOURCES, verbs: READ },
      { apiGroups: [GROUP], resources: EDITABLE_RESOURCES, verbs: WRITE },
    ]),
  ];
}
