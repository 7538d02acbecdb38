/**
 * Least privilege, as the real API server grants it: the chart's RBAC is applied to a fresh
 * namespace and every account's rights are read back with SelfSubjectRulesReview (as that
 * account, by impersonation), less what any ServiceAccount gets anyway, and compared with what
 * its component declares (operator/rbac.ts, webhooks/rbac.ts, dns-sidecar/rbac.ts,
 * dhcp-sidecar/rbac.ts). No account may list or watch Secrets or read one outside its namespace.
 * The chart's operator-rbac policy (webhooks/rbac-policy.ts) is applied too and each way past
 * it is tried as the operator's account (dry runs: nothing is stored).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { KubernetesObjectApi, type KubernetesObject } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DHCP_CLUSTER_RULES } from '../../dhcp-sidecar/rbac.ts';
import { DNS_CLUSTER_RULES } from '../../dns-sidecar/rbac.ts';
import { runnerRbacName, runnerRules, jobName } from '../../operator/executors/job-spec.ts';
import { CLUSTER_RULES, NAMESPACE_RULES, type Rule } from '../../operator/rbac.ts';
import { METRICS_AUTH_RULES } from '../../operator/runtime/secure-metrics.ts';
import { applyManifests } from '../../lab/apply.ts';
import { operatorRbacPolicy, rbacPolicyName } from '../../webhooks/rbac-policy.ts';
import { WEBHOOK_CLUSTER_RULES } from '../../webhooks/rbac.ts';
import { serviceAccountUser } from '../../webhooks/status-policy.ts';
import { bin } from '../harness/bins.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { asUser, serviceAccountGroups } from '../harness/impersonate.ts';
import { ROOT } from '../harness/operator.ts';

const kc = testClient().kc;
const id = uid();
const release = `rb${id}`;
const ns = `rb-${id}`;
const FM = 'rbac-test';

type Doc = KubernetesObject & { spec?: Record<string, unknown>; rules?: Rule[] };
let docs: Doc[] = [];
const applied: KubernetesObject[] = [];

interface RulesReview {
  status?: {
    resourceRules?: {
      verbs: string[];
      apiGroups?: string[];
      resources?: string[];
      resourceNames?: string[];
    }[];
  };
}

/** Rules flattened to `group/resource verb[name]` strings. */
function flatten(rules: readonly (Rule & { resourceNames?: string[] })[]): Set<string> {
  const out = new Set<string>();
  for (const r of rules)
    for (const g of r.apiGroups)
      for (const res of r.resources)
        for (const v of r.verbs)
          for (const n of r.resourceNames ?? ['*']) out.add(`${g}/${res} ${v}[${n}]`);
  return out;
}

/** What the API server grants `user` (a ServiceAccount of `ns`) in `namespace`. */
async function granted(user: string, namespace: string): Promise<Set<string>> {
  const a = await asUser(
    kc,
    user,
    serviceAccountGroups(ns),
    'POST',
    '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews',
    {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SelfSubjectRulesReview',
      spec: { namespace },
    },
  );
  expect(a.status).toBe(201);
  const rules = (a.body as RulesReview).status?.resourceRules ?? [];
  return flatten(
    rules.map((r) => ({
      apiGroups: r.apiGroups ?? [''],
      resources: r.resources ?? [],
      verbs: r.verbs,
      ...(r.resourceNames ? { resourceNames: r.resourceNames } : {}),
    })),
  );
}

/** Granted to `sa` beyond what every ServiceAccount of the namespace gets. */
async function own(sa: string, namespace: string): Promise<string[]> {
  const [mine, base] = await Promise.all([
    granted(serviceAccountUser(ns, sa), namespace),
    granted(serviceAccountUser(ns, `nobody-${id}`), namespace),
  ]);
  return [...mine].filter((r) => !base.has(r)).sort();
}

async function allowed(sa: string, attrs: Record<string, string>): Promise<boolean> {
  const a = await asUser(
    kc,
    serviceAccountUser(ns, sa),
    serviceAccountGroups(ns),
    'POST',
    '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
    {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SelfSubjectAccessReview',
      spec: { resourceAttributes: attrs },
    },
  );
  expect(a.status).toBe(201);
  return (a.body as { status?: { allowed?: boolean } }).status?.allowed === true;
}

const ACCOUNTS = {
  // The operator's own rules, and the TokenReview/SubjectAccessReview its secure /metrics asks.
  operator: {
    sa: `${release}-operator`,
    cluster: [...CLUSTER_RULES, ...METRICS_AUTH_RULES],
    namespaced: NAMESPACE_RULES,
  },
  webhook: { sa: `${release}-webhook`, cluster: WEBHOOK_CLUSTER_RULES, namespaced: [] },
  dns: { sa: `${release}-dns`, cluster: DNS_CLUSTER_RULES, namespaced: [] },
  dhcp: { sa: `${release}-operator-dhcp`, cluster: DHCP_CLUSTER_RULES, namespaced: [] },
} as const;

beforeAll(async () => {
  const { stdout } = await promisify(execFile)(
    bin('helm'),
    [
      'template',
      release,
      join(ROOT, 'charts', 'crowbar'),
      '--namespace',
      ns,
      '--set',
      'dhcp.enabled=true',
      '--set',
      'dhcp.serverIp=192.0.2.1',
    ],
    {
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(inject('cpDir'), 'helm-cache'),
        HELM_CONFIG_HOME: join(inject('cpDir'), 'helm-config'),
        HELM_DATA_HOME: join(inject('cpDir'), 'helm-data'),
      },
    },
  );
  docs = (loadAll(stdout) as (Doc | null)[]).filter((d): d is Doc => d !== null);
  const rbacKinds = ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'];
  const policy = rbacPolicyName(release);
  applied.push(
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
    ...docs.filter((d) => rbacKinds.includes(d.kind ?? '')),
    // Judges only this release's operator account: safe in the shared API server.
    ...docs.filter(
      (d) =>
        d.metadata?.name === policy &&
        ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'].includes(d.kind ?? ''),
    ),
  );
  await applyManifests(kc, applied, FM);
}, 60_000);

afterAll(async () => {
  const api = KubernetesObjectApi.makeApiClient(kc);
  for (const o of [...applied].reverse()) await api.delete(o).catch(() => undefined);
});

describe('RBAC per account: granted equals declared', () => {
  for (const [component, a] of Object.entries(ACCOUNTS)) {
    it(`${component}: in its namespace and cluster-wide`, async () => {
      expect(await own(a.sa, ns)).toEqual([...flatten([...a.cluster, ...a.namespaced])].sort());
      // Another namespace: only the cluster-wide rules reach there.
      expect(await own(a.sa, 'default')).toEqual([...flatten(a.cluster)].sort());
    });
  }

  it('lets no account list or watch Secrets, or read one outside its namespace', async () => {
    for (const [component, a] of Object.entries(ACCOUNTS)) {
      const secretRights = [...(await own(a.sa, ns))].filter((r) => r.startsWith('/secrets '));
      expect({ component, secretRights }).toEqual({
        component,
        secretRights:
          component === 'operator'
            ? ['/secrets create[*]', '/secrets get[*]', '/secrets update[*]']
            : [],
      });
      for (const [verb, namespace] of [
        ['list', ns],
        ['watch', ns],
        ['get', 'default'],
        ['list', ''],
      ] as const) {
        expect({
          component,
          verb,
          namespace,
          allowed: await allowed(a.sa, { verb, namespace, resource: 'secrets' }),
        }).toEqual({ component, verb, namespace, allowed: false });
      }
    }
    expect(
      await allowed(ACCOUNTS.operator.sa, { verb: 'get', namespace: ns, resource: 'secrets' }),
    ).toBe(true);
  });

  it('renders the operator-rbac policy webhooks/rbac-policy.ts declares', () => {
    const [policy, binding] = operatorRbacPolicy(release, {
      namespace: ns,
      operatorServiceAccount: `${release}-operator`,
    });
    const find = (kind: string) =>
      docs.find((d) => d.kind === kind && d.metadata?.name === rbacPolicyName(release));
    expect(find('ValidatingAdmissionPolicy')?.spec).toEqual(policy.spec);
    expect(find('ValidatingAdmissionPolicyBinding')?.spec).toEqual(binding.spec);
  });
});

describe("the operator's RBAC-creating rights, bounded by admission", () => {
  const op = serviceAccountUser(ns, ACCOUNTS.operator.sa);
  const groups = serviceAccountGroups(ns);
  const job = jobName(`web.node1-${id}.example.com.run-2`);
  const runner = runnerRbacName(ns, job);
  const rules = runnerRules({
    noderole: `web.node1-${id}.example.com`,
    role: 'web',
    node: `node1-${id}.example.com`,
    script: true,
  });
  const RBAC = '/apis/rbac.authorization.k8s.io/v1';
  const clusterRole = (name: string, r: object[]) => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name },
    rules: r,
  });
  const binding = (name: string, roleName: string, subject: object) => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: roleName },
    subjects: [subject],
  });
  const dry = (method: string, path: string, body?: object) =>
    asUser(kc, op, groups, method, `${RBAC}${path}?dryRun=All`, body);

  it("allows the job executor's own objects and refuses everything else", async () => {
    // The API server enforces a new policy a moment after it is created.
    await eventually(
      'the operator-rbac policy to be enforced',
      async () =>
        (await dry('POST', '/clusterroles', clusterRole(`evil-${id}`, rules))).status === 403,
      30_000,
      200,
    );
    const sa = { kind: 'ServiceAccount', name: job, namespace: ns };
    expect((await dry('POST', '/clusterroles', clusterRole(runner, rules))).status).toBe(201);
    // A binding's escalation check needs its ClusterRole to exist: made for real, as the
    // executor makes it, and deleted by the operator's account at the end.
    const made = await asUser(
      kc,
      op,
      groups,
      'POST',
      `${RBAC}/clusterroles`,
      clusterRole(runner, rules),
    );
    expect(made.status).toBe(201);
    applied.push(clusterRole(runner, rules));
    expect((await dry('POST', '/clusterrolebindings', binding(runner, runner, sa))).status).toBe(
      201,
    );
    const refusals: [string, Promise<{ status: number; message: string }>, RegExp][] = [
      [
        'a ClusterRole not named as a runner',
        dry('POST', '/clusterroles', clusterRole(`evil-${id}`, rules)),
        /only its jig runners' ClusterRoles and ClusterRoleBindings \(named crowbar-jig-runner:/,
      ],
      [
        'a runner ClusterRole over every noderole',
        dry(
          'POST',
          '/clusterroles',
          clusterRole(runner, [
            { apiGroups: ['crowbar.dev'], resources: ['noderoles'], verbs: ['get'] },
          ]),
        ),
        /only name crowbar\.dev objects by name/,
      ],
      [
        'a runner ClusterRole aggregating others',
        dry('POST', '/clusterroles', {
          ...clusterRole(runner, []),
          aggregationRule: { clusterRoleSelectors: [{ matchLabels: { x: id } }] },
        }),
        // The API server refuses it before the policy does; the policy refuses it too.
        /without aggregation|must have cluster-admin privileges to use the aggregationRule/,
      ],
      [
        "a runner-named binding of the operator's own ClusterRole",
        dry('POST', '/clusterrolebindings', binding(runner, ACCOUNTS.operator.sa, sa)),
        /may only bind its own ClusterRole/,
      ],
      [
        'a runner binding to a user',
        dry(
          'POST',
          '/clusterrolebindings',
          binding(runner, runner, {
            apiGroup: 'rbac.authorization.k8s.io',
            kind: 'User',
            name: `mallory-${id}`,
          }),
        ),
        /may only bind its own ClusterRole to ServiceAccounts of/,
      ],
      [
        "deleting a ClusterRole that is not a runner's",
        dry('DELETE', `/clusterroles/${ACCOUNTS.webhook.sa}`),
        /only its jig runners' ClusterRoles/,
      ],
    ];
    for (const [what, answer, pattern] of refusals) {
      const a = await answer;
      expect({ what, status: a.status }).toEqual({ what, status: 403 });
      expect(a.message).toMatch(pattern);
    }
    const gone = await asUser(kc, op, groups, 'DELETE', `${RBAC}/clusterroles/${runner}`);
    expect(gone.status).toBe(200);
  });
});
