/**
 * Status is the operator's, enforced by the real API server: the chart's
 * ValidatingAdmissionPolicy (charts/crowbar/templates/status-policy.yaml, mirroring
 * webhooks/status-policy.ts) refuses status writes by every account but the operator's, the job
 * executor's runner accounts and the DHCP sidecar's, cluster admins included; the chart's viewer
 * and editor ClusterRoles leave status out. Accounts are impersonated by the admin (the
 * Impersonate-User and Impersonate-Group headers), so each request is judged as that account.
 *
 * The API server is shared with the other test files, which write status as the admin: the
 * binding applied here is the chart's with one addition, an objectSelector on a label only this
 * file's objects carry, so the policy judges exactly these objects.
 */
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { KubernetesObject, V1ClusterRoleBinding } from '@kubernetes/client-node';
import { loadAll } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GROUP, PLURALS, VERSION, type CrowbarKind } from '../../generated/crowbar.ts';
import { jobName } from '../../operator/executors/job-spec.ts';
import { CLUSTER_RULES } from '../../operator/rbac.ts';
import { applyManifests } from '../../lab/apply.ts';
import {
  serviceAccountUser,
  statusPolicy,
  userClusterRoles,
} from '../../webhooks/status-policy.ts';
import { bin } from '../harness/bins.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { asUser, serviceAccountGroups, type Answer } from '../harness/impersonate.ts';
import { ROOT } from '../harness/operator.ts';

const client = testClient();
const kc = client.kc;
const id = uid();
const release = `sp${id}`;
const ns = `sp-${id}`;
const LABEL = 'crowbar.dev/status-policy-test';
const FM = 'status-policy-test';
const node = `n-${id}.sp.example.com`;
const dep = `sp-${id}`;
const role = `sp-${id}`;
const noderole = `${role}.${node}`;

/** One request as `user` (with `groups`), impersonated by the admin. */
const as = (
  user: string,
  groups: readonly string[],
  method: string,
  path: string,
  body?: object,
): Promise<Answer> => asUser(kc, user, groups, method, path, body);

const path = (kind: CrowbarKind, name: string, sub = ''): string =>
  `/apis/${GROUP}/${VERSION}/${PLURALS[kind]}/${name}${sub}`;
const MASTERS = ['system:masters', 'system:authenticated'];
const SA_GROUPS = serviceAccountGroups(ns);
const operatorUser = serviceAccountUser(ns, `${release}-operator`);

/** A rendered manifest, as plain data. */
type Doc = KubernetesObject & { spec?: Record<string, unknown>; rules?: unknown };
const helmTemplate = async (): Promise<Doc[]> => {
  const { stdout } = await promisify(execFile)(
    bin('helm'),
    ['template', release, join(ROOT, 'charts', 'crowbar'), '--namespace', ns],
    {
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(inject('cpDir'), 'helm-cache'),
        HELM_CONFIG_HOME: join(inject('cpDir'), 'helm-config'),
        HELM_DATA_HOME: join(inject('cpDir'), 'helm-data'),
      },
    },
  );
  return (loadAll(stdout) as (Doc | null)[]).filter((d): d is Doc => d !== null);
};

const applied: KubernetesObject[] = [];
let docs: Doc[] = [];
const find = (kind: string, name: string): Doc => {
  const d = docs.find((x) => x.kind === kind && x.metadata?.name === name);
  if (!d) throw new Error(`the chart renders no ${kind} ${name}`);
  return d;
};

beforeAll(async () => {
  docs = await helmTemplate();
  const policyName = `${release}-status-writers.crowbar.dev`;
  const binding = find('ValidatingAdmissionPolicyBinding', policyName);
  // Scoped to this file's objects (see the header); everything else is the chart's.
  const scoped: Doc = {
    ...binding,
    spec: {
      ...binding.spec,
      matchResources: { objectSelector: { matchLabels: { [LABEL]: id } } },
    },
  };
  const editorBinding = (user: string, cr: string): V1ClusterRoleBinding => ({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: `${cr}-${user}` },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: cr },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
  });
  applied.push(
    find('ValidatingAdmissionPolicy', policyName),
    scoped,
    find('ClusterRole', `${release}-crowbar-viewer`),
    find('ClusterRole', `${release}-crowbar-editor`),
    find('ClusterRole', `${release}-operator`),
    find('ClusterRoleBinding', `${release}-operator`),
    editorBinding(`ed-${id}`, `${release}-crowbar-editor`),
    editorBinding(`vi-${id}`, `${release}-crowbar-viewer`),
  );
  await applyManifests(kc, applied, FM);
  const labels = { [LABEL]: id };
  await client.create('Node', { metadata: { name: node, labels }, spec: {} }, FM);
  await client.create(
    'Deployment',
    { metadata: { name: dep, labels }, spec: { parent: 'system' } },
    FM,
  );
  await client.create('Role', { metadata: { name: role, labels }, spec: { jig: 'noop' } }, FM);
  await client.create(
    'NodeRole',
    { metadata: { name: noderole, labels }, spec: { node, role, deployment: dep } },
    FM,
  );
  // The API server compiles a new policy and starts enforcing it a moment after it is created.
  // The probe is a dry run: one let through before then must not change the object.
  await eventually(
    'the status policy to be enforced',
    async () => {
      const probe = `${path('Node', node, '/status')}?dryRun=All`;
      const a = await as(`mallory-${id}`, MASTERS, 'PATCH', probe, {
        status: { alive: true },
      });
      return a.status === 403;
    },
    30_000,
    200,
  );
}, 90_000);

afterAll(async () => {
  for (const [kind, name] of [
    ['NodeRole', noderole],
    ['Role', role],
    ['Deployment', dep],
    ['Node', node],
  ] as const) {
    await client.delete(kind, name).catch(() => undefined);
  }
  const { KubernetesObjectApi } = await import('@kubernetes/client-node');
  const api = KubernetesObjectApi.makeApiClient(kc);
  for (const o of applied.reverse()) {
    await api.delete(o).catch(() => undefined);
  }
});

describe('status policy (ValidatingAdmissionPolicy) and user roles against the real API server', () => {
  it('renders what webhooks/status-policy.ts declares', () => {
    const [policy, binding] = statusPolicy(release, {
      namespace: ns,
      operatorServiceAccount: `${release}-operator`,
      dhcpServiceAccount: `${release}-operator-dhcp`,
    });
    const name = policy.metadata?.name ?? '';
    expect(find('ValidatingAdmissionPolicy', name).spec).toEqual(policy.spec);
    expect(find('ValidatingAdmissionPolicyBinding', name).spec).toEqual(binding.spec);
    for (const r of userClusterRoles(release)) {
      expect(find('ClusterRole', r.metadata?.name ?? '').rules).toEqual(r.rules);
    }
  });

  it('refuses status writes by any other account, cluster admins included, and changes nothing', async () => {
    for (const [kind, name, patch] of [
      ['Node', node, { status: { alive: true } }],
      ['Deployment', dep, { status: { state: 'active' } }],
      ['NodeRole', noderole, { status: { state: 'active', parents: [noderole] } }],
    ] as const) {
      const a = await as(`mallory-${id}`, MASTERS, 'PATCH', path(kind, name, '/status'), patch);
      expect(a.status).toBe(403);
      expect(a.message).toContain(
        `the status of crowbar.dev ${PLURALS[kind]} is written only by the Crowbar operator, its jig runners and its sidecars, not by mallory-${id}`,
      );
      expect(a.message).toContain(
        `ValidatingAdmissionPolicy '${release}-status-writers.crowbar.dev'`,
      );
      expect((await client.get(kind, name))?.status).toBeUndefined();
    }
    // The admin itself (system:masters, not impersonated) is refused too.
    await expect(
      client.mergePatchStatus('Node', node, { status: { alive: true } }, FM),
    ).rejects.toMatchObject({ code: 403 });
  });

  it("lets the operator's ServiceAccount write status with the chart's own RBAC", async () => {
    // The chart's ClusterRole for the operator is operator/rbac.ts's.
    expect(find('ClusterRole', `${release}-operator`).rules).toEqual(CLUSTER_RULES);
    const a = await as(operatorUser, SA_GROUPS, 'PATCH', path('Node', node, '/status'), {
      status: { alive: true },
    });
    expect(a).toMatchObject({ status: 200 });
    expect((await client.get('Node', node))?.status?.alive).toBe(true);
  });

  it("lets a job executor run's account write and refuses look-alikes", async () => {
    const runner = jobName(`${noderole}.run-3`);
    const ok = await as(
      serviceAccountUser(ns, runner),
      MASTERS,
      'PATCH',
      path('NodeRole', noderole, '/status'),
      { status: { runCount: 3 } },
    );
    expect(ok.status).toBe(200);
    for (const user of [
      serviceAccountUser(`other-${id}`, runner), // another namespace
      serviceAccountUser(ns, `webhook-${id}`), // not a run's name
      `${serviceAccountUser(ns, runner)}x`, // anchored
    ]) {
      const no = await as(user, MASTERS, 'PATCH', path('NodeRole', noderole, '/status'), {
        status: { runCount: 4 },
      });
      expect({ user, status: no.status }).toEqual({ user, status: 403 });
    }
    expect((await client.get('NodeRole', noderole))?.status?.runCount).toBe(3);
  });

  it('gives editors the spec and viewers reads, and neither the status', async () => {
    const ed = `ed-${id}`;
    const vi = `vi-${id}`;
    const spec = await as(ed, ['system:authenticated'], 'PATCH', path('Node', node), {
      spec: { available: false },
    });
    expect(spec.status).toBe(200);
    const st = await as(ed, ['system:authenticated'], 'PATCH', path('Node', node, '/status'), {
      status: { alive: false },
    });
    expect(st.status).toBe(403);
    expect(st.message).toMatch(/cannot patch resource "nodes\/status"/);
    expect((await as(vi, ['system:authenticated'], 'GET', path('Node', node))).status).toBe(200);
    const vispec = await as(vi, ['system:authenticated'], 'PATCH', path('Node', node), {
      spec: { available: true },
    });
    expect(vispec.status).toBe(403);
    expect(vispec.message).toMatch(/cannot patch resource "nodes"/);
    expect((await client.get('Node', node))?.status?.alive).toBe(true);
  });
});
