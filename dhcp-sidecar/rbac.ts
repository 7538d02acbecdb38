/**
 * The API access the DHCP sidecar needs: informers on Nodes, Networks, NetworkAllocations and
 * BootEnvs, its acknowledgement on a Node's status.bootEnv (server-side apply), and the boot
 * environments that exist from the start (created if absent). The chart's ClusterRole
 * (charts/crowbar/templates/dhcp-sidecar.yaml) grants exactly this and
 * test/integration/rbac.test.ts fails on drift.
 */
export const DHCP_CLUSTER_RULES = [
  {
    apiGroups: ['crowbar.dev'],
    resources: ['nodes', 'networks', 'networkallocations', 'bootenvs'],
    verbs: ['get', 'list', 'watch'],
  },
  { apiGroups: ['crowbar.dev'], resources: ['nodes/status'], verbs: ['patch'] },
  { apiGroups: ['crowbar.dev'], resources: ['bootenvs'], verbs: ['create'] },
];
