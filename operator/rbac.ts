/**
 * The API access the operator needs. The Helm chart's ClusterRole and Role
 * (charts/crowbar/templates/rbac.yaml) must grant exactly these; test/integration/helm.test.ts
 * fails on drift.
 */
export interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

const KINDS = [
  'nodes',
  'roles',
  'noderoles',
  'networks',
  'networkallocations',
  'deployments',
  'bootenvs',
];

export const CLUSTER_RULES: Rule[] = [
  {
    apiGroups: ['crowbar.dev'],
    resources: KINDS,
    verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  },
  {
    apiGroups: ['crowbar.dev'],
    resources: KINDS.map((k) => `${k}/status`),
    verbs: ['get', 'update', 'patch'],
  },
  // The provisioner (operator/provisioner): reads a node's installer BootEnv, creates the
  // built-in debian-12-install when absent.
  { apiGroups: ['crowbar.dev'], resources: ['bootenvs'], verbs: ['get', 'list', 'create'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
  // The job executor's per-run runner access (operator/executors/job.ts): a ClusterRole naming one
  // noderole, its role and node (resourceNames), bound to the run's ServiceAccount. The API
  // server's escalation check lets the operator grant only what it holds itself.
  {
    apiGroups: ['rbac.authorization.k8s.io'],
    resources: ['clusterroles', 'clusterrolebindings'],
    verbs: ['create', 'delete'],
  },
];

/**
 * In the release namespace: leader election, Jobs of the job executor, the SSH key Secret, script
 * ConfigMaps (and the job executor's per-run script snapshots and run Secrets), node API tokens.
 */
export const NAMESPACE_RULES: Rule[] = [
  {
    apiGroups: ['coordination.k8s.io'],
    resources: ['leases'],
    verbs: ['get', 'list', 'watch', 'create', 'update', 'patch'],
  },
  {
    apiGroups: ['batch'],
    resources: ['jobs'],
    verbs: ['get', 'list', 'watch', 'create', 'delete'],
  },
  // Secrets and ConfigMaps are read by name only (the SSH key, node API tokens, role scripts):
  // no list or watch, so the operator never holds every Secret of its namespace.
  { apiGroups: [''], resources: ['secrets', 'configmaps'], verbs: ['get'] },
  // The per-node API token Secrets (operator/api/tokens.ts): made, and rotated in place. The job
  // executor's per-run Secret of a run's secretRef values (owned by its Job) is made with the same
  // `create`: the Job namespace is this namespace.
  { apiGroups: [''], resources: ['secrets'], verbs: ['create', 'update'] },
  // The job executor: each run's ServiceAccount, and its pod's termination message.
  { apiGroups: [''], resources: ['serviceaccounts'], verbs: ['create', 'delete'] },
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] },
  // The job executor: each script run's snapshot of its script (owned by the Job, which the
  // garbage collector deletes it with).
  { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
];
