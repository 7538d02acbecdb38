/**
 * The operator's right to create RBAC objects, bounded. The job executor gives each run a
 * ClusterRole naming one noderole, its role and node (and their networks) and binds it to the
 * run's ServiceAccount (operator/executors/job.ts), so the operator needs create and delete on
 * ClusterRoles and ClusterRoleBindings. RBAC cannot narrow those verbs to a name prefix, and the
 * API server's escalation check still lets the operator bind what it holds to anyone and delete
 * any ClusterRole in the cluster. This ValidatingAdmissionPolicy narrows the operator's account
 * to what the executor does: objects named `crowbar-jig-runner:<namespace>:...`, ClusterRoles
 * whose every rule names crowbar.dev objects by name (no aggregation), bindings of the
 * same-named ClusterRole to ServiceAccounts of its own namespace.
 *
 * The Helm chart renders the same objects (charts/crowbar/templates/rbac-policy.yaml) and
 * test/integration/rbac.test.ts fails on drift and tries each refusal against the API server.
 */
import type {
  V1ValidatingAdmissionPolicy,
  V1ValidatingAdmissionPolicyBinding,
} from '@kubernetes/client-node';
import { runnerRbacName } from '../operator/executors/job-spec.ts';
import { serviceAccountUser } from './status-policy.ts';

/** The name of the policy and of its binding. */
export function rbacPolicyName(release: string): string {
  return `${release}-operator-rbac.crowbar.dev`;
}

const lit = (s: string): string => JSON.stringify(s);

/** The policy and its binding (Deny) for the operator's ServiceAccount in `namespace`. */
export function operatorRbacPolicy(
  release: string,
  o: { namespace: string; operatorServiceAccount: string },
  labels: Record<string, string> = {},
): [V1ValidatingAdmissionPolicy, V1ValidatingAdmissionPolicyBinding] {
  const name = rbacPolicyName(release);
  const prefix = runnerRbacName(o.namespace, '');
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
              apiGroups: ['rbac.authorization.k8s.io'],
              apiVersions: ['*'],
              operations: ['CREATE', 'UPDATE', 'DELETE'],
              resources: ['clusterroles', 'clusterrolebindings'],
            },
          ],
        },
        matchConditions: [
          {
            name: 'operator',
            expression: `request.userInfo.username == ${lit(serviceAccountUser(o.namespace, o.operatorServiceAccount))}`,
          },
        ],
        variables: [
          {
            name: 'target',
            expression: "request.operation == 'DELETE' ? oldObject : object",
          },
        ],
        validations: [
          {
            expression: `variables.target.metadata.name.startsWith(${lit(prefix)})`,
            message: `the Crowbar operator may create and delete only its jig runners' ClusterRoles and ClusterRoleBindings (named ${prefix}<job>)`,
            reason: 'Forbidden',
          },
          {
            expression:
              "request.operation == 'DELETE' || request.resource.resource != 'clusterroles' || " +
              "(!has(object.aggregationRule) && has(object.rules) && object.rules.all(r, r.apiGroups == ['crowbar.dev'] && has(r.resourceNames) && size(r.resourceNames) > 0))",
            message:
              "a jig runner's ClusterRole may only name crowbar.dev objects by name (resourceNames), without aggregation",
            reason: 'Forbidden',
          },
          {
            expression:
              "request.operation == 'DELETE' || request.resource.resource != 'clusterrolebindings' || " +
              "(object.roleRef.kind == 'ClusterRole' && object.roleRef.name == object.metadata.name && " +
              `(!has(object.subjects) || object.subjects.all(s, s.kind == 'ServiceAccount' && s.namespace == ${lit(o.namespace)})))`,
            message: `a jig runner's ClusterRoleBinding may only bind its own ClusterRole to ServiceAccounts of ${o.namespace}`,
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
