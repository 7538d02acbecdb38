/**
 * The API access the DNS sidecar needs: it only reads Networks and their allocations (informers).
 * The chart's ClusterRole (charts/crowbar/templates/sidecar-dns.yaml) grants exactly this and
 * test/integration/rbac.test.ts fails on drift.
 */
export const DNS_CLUSTER_RULES = [
  {
    apiGroups: ['crowbar.dev'],
    resources: ['networks', 'networkallocations'],
    verbs: ['get', 'list', 'watch'],
  },
];
