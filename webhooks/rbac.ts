/**
 * The API access the admission webhook needs: it only reads, through one informer per kind its
 * decisions look at (state.ts), plus BootEnvs (a Node's spec.bootEnv must name one). It runs as
 * its own ServiceAccount; the chart's ClusterRole (charts/crowbar/templates/webhook.yaml) grants
 * exactly these and test/integration/rbac.test.ts fails on drift.
 */
import { GROUP, PLURALS } from '../generated/crowbar.ts';
import type { Rule } from '../operator/rbac.ts';
import { WATCHED } from './state.ts';

export const WEBHOOK_CLUSTER_RULES: Rule[] = [
  {
    apiGroups: [GROUP],
    resources: [...new Set([...WATCHED.map((k) => PLURALS[k]), PLURALS.BootEnv])].sort(),
    verbs: ['get', 'list', 'watch'],
  },
];
