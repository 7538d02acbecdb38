/**
 * The API access the DNS sidecar needs: it only reads Networks, their allocations and Nodes (aliases), through informers.
 * The chart's ClusterRole (charts/crowbar/templates/sidecar-dns.yaml) grants exactly this and
 * test/integration/rbac.test.ts fails on drift.
 */
export const DNS_CLUSTER_RULES = [
  {
    apiGroups: ['crowbar.dev'],
    resources: ['networks', 'networkallocations', 'nodes'],
    verbs: ['get', 'list', 'watch'],
  },
];
