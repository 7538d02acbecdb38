import type { V1Job } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { NodeRole, Role } from '../../generated/crowbar.ts';
import {
  ENV,
  RUN_SECRET_DIR,
  SCRIPT_DIR,
  buildJob,
  buildRunSecret,
  buildScriptSnapshot,
  decodeSecretValues,
  encodeSecretValues,
  failureOf,
  jobName,
  jobState,
  labelValue,
  mountsRunSecret,
  mountsScriptSnapshot,
  reportOf,
  runnerRules,
  scriptSnapshotName,
  scriptSource,
} from './job-spec.ts';

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const nr = (status: NodeRole['status']): NodeRole => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'NodeRole',
  metadata: { name: 'dns-server.node1.rack2.example.com', uid: 'u-1' },
  spec: { role: 'dns-server', node: 'node1.rack2.example.com', deployment: 'system' },
  ...(status ? { status } : {}),
});

const role: Role = {
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Role',
  metadata: { name: 'dns-server' },
  spec: { jig: 'script', timeoutSeconds: 120 },
};

describe('jobName', () => {
  it.each([
    'dns-server.node1.rack2.example.com.run-1',
    `${'very-long-role-name-'.repeat(6)}.${'n'.repeat(60)}.example.com.run-12345`,
    'UPPER_and.dots..run-3',
    '---.run-1',
  ])('is a DNS-1123 label of at most 63 characters: %s', (id) => {
    const n = jobName(id);
    expect(n.length).toBeLessThanOrEqual(63);
    expect(n).toMatch(DNS1123);
    expect(jobName(id)).toBe(n);
  });

  it('keeps the run number and tells apart ids that sanitize alike', () => {
    expect(jobName('a.b.run-7')).toMatch(/^a-b-r7-[0-9a-f]{8}$/);
    expect(jobName('a.b.run-7')).not.toBe(jobName('a-b.run-7'));
    expect(jobName('x.run-1')).not.toBe(jobName('x.run-2'));
  });
});

describe('labelValue', () => {
  it('keeps short valid values and hashes long ones', () => {
    expect(labelValue('dns.node1.example.com')).toBe('dns.node1.example.com');
    const long = labelValue(`${'a'.repeat(70)}.example.com`);
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/);
  });
});

describe('buildJob', () => {
  it('makes a one-shot Job owned by the NodeRole with the role timeout as its deadline', () => {
    const job = buildJob({
      id: 'dns-server.node1.rack2.example.com.run-2',
      number: 2,
      noderole: nr(undefined),
      role,
      namespace: 'crowbar',
      image: 'ghcr.io/crowbar/crowbar:1',
      sshKeySecret: 'root-key',
      ttlSecondsAfterFinished: 600,
    });
    expect(job.spec).toMatchObject({
      backoffLimit: 0,
      activeDeadlineSeconds: 120,
      ttlSecondsAfterFinished: 600,
    });
    expect(job.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'NodeRole', uid: 'u-1', controller: true }),
    ]);
    const pod = job.spec?.template.spec;
    expect(pod?.serviceAccountName).toBe(job.metadata?.name);
    expect(pod?.volumes?.[0]?.secret?.secretName).toBe('root-key');
    // A real kubelet writes the key as root: without fsGroup and group read, uid 65532 could
    // not read it (issue 14, item 6).
    expect(pod?.volumes?.[0]?.secret?.defaultMode).toBe(0o440);
    expect(pod?.securityContext).toMatchObject({
      runAsUser: 65532,
      runAsGroup: 65532,
      fsGroup: 65532,
    });
    expect(pod?.containers[0]?.env).toContainEqual({ name: 'CROWBAR_RUN', value: '2' });
    expect(pod?.volumes?.map((v) => v.name)).toEqual(['ssh-key']);
    expect(mountsScriptSnapshot(job)).toBe(false);
  });

  it('mounts the script snapshot of a script run and points the runner at its file', () => {
    const job = buildJob({
      id: 'dns-server.node1.rack2.example.com.run-2',
      number: 2,
      noderole: nr(undefined),
      role,
      namespace: 'crowbar',
      image: 'ghcr.io/crowbar/crowbar:1',
      sshKeySecret: 'root-key',
      scriptSnapshot: true,
      ttlSecondsAfterFinished: 600,
    });
    const name = job.metadata?.name ?? '';
    const pod = job.spec?.template.spec;
    expect(pod?.volumes).toContainEqual({
      name: 'script',
      configMap: { name: `${name}-script`, optional: false, defaultMode: 0o444 },
    });
    expect(pod?.containers[0]?.volumeMounts).toEqual([
      { name: 'ssh-key', mountPath: '/var/run/crowbar/ssh', readOnly: true },
      { name: 'script', mountPath: SCRIPT_DIR, readOnly: true },
    ]);
    expect(pod?.containers[0]?.env).toContainEqual({
      name: ENV.scriptFile,
      value: `${SCRIPT_DIR}/script`,
    });
    expect(mountsScriptSnapshot(job)).toBe(true);
  });
});

describe('script snapshots', () => {
  const job = buildJob({
    id: 'dns-server.node1.rack2.example.com.run-3',
    number: 3,
    noderole: nr(undefined),
    role,
    namespace: 'crowbar',
    image: 'i',
    scriptSnapshot: true,
    ttlSecondsAfterFinished: 60,
  });
  if (job.metadata) job.metadata.uid = 'job-uid-1';

  it('is an immutable ConfigMap named after the Job and owned by it', () => {
    const cm = buildScriptSnapshot(job, '#!/bin/sh\necho hi\n', 'inline');
    const name = job.metadata?.name ?? '';
    expect(cm.metadata?.name).toBe(scriptSnapshotName(name));
    expect(cm.metadata?.name?.length).toBeLessThanOrEqual(253);
    expect(cm.metadata?.namespace).toBe('crowbar');
    expect(cm.immutable).toBe(true);
    expect(cm.data).toEqual({ script: '#!/bin/sh\necho hi\n' });
    expect(cm.metadata?.ownerReferences).toEqual([
      { apiVersion: 'batch/v1', kind: 'Job', name, uid: 'job-uid-1', controller: true },
    ]);
    expect(cm.metadata?.labels).toEqual(job.metadata?.labels);
    expect(cm.metadata?.annotations).toMatchObject({
      'crowbar.dev/run-id': 'dns-server.node1.rack2.example.com.run-3',
      'crowbar.dev/script-source': 'inline',
    });
  });

  it('records where the script came from', () => {
    const with_ = (script: Role['spec']['script']): Role => ({
      ...role,
      spec: { ...role.spec, ...(script ? { script } : {}) },
    });
    expect(scriptSource(with_({ inline: 'x' }))).toBe('inline');
    expect(
      scriptSource(with_({ configMapRef: { namespace: 'ns', name: 'cm', key: 'run.sh' } })),
    ).toBe('configmap ns/cm#run.sh');
    expect(scriptSource(with_(undefined))).toBe('none');
  });

  it('is recognised only when the pod mounts the snapshot of its own Job', () => {
    const other = structuredClone(job);
    if (other.metadata) other.metadata.name = 'someone-else';
    expect(mountsScriptSnapshot(other)).toBe(false);
  });
});

describe('run Secrets', () => {
  const job = buildJob({
    id: 'db.node1.run-4',
    number: 4,
    noderole: nr(undefined),
    role,
    namespace: 'crowbar',
    image: 'i',
    scriptSnapshot: true,
    runSecret: true,
    ttlSecondsAfterFinished: 60,
  });
  if (job.metadata) job.metadata.uid = 'job-uid-4';
  const name = job.metadata?.name ?? '';
  const values = new Map([
    ['db\u0000password', 'p"w\n$(x)'],
    ['api\u0000token', ''],
  ]);

  it('is mounted for the runner only (as the SSH key) and named in the env, never a value', () => {
    const pod = job.spec?.template.spec;
    expect(pod?.volumes).toContainEqual({
      name: 'run-secrets',
      secret: { secretName: `${name}-secrets`, optional: false, defaultMode: 0o440 },
    });
    expect(pod?.containers[0]?.volumeMounts).toContainEqual({
      name: 'run-secrets',
      mountPath: RUN_SECRET_DIR,
      readOnly: true,
    });
    expect(pod?.containers[0]?.env).toContainEqual({
      name: ENV.secretsFile,
      value: `${RUN_SECRET_DIR}/values.json`,
    });
    expect(mountsRunSecret(job)).toBe(true);
    expect(mountsRunSecret(buildJob({ ...jobInputs(), runSecret: false }))).toBe(false);
  });

  it('is an immutable Opaque Secret owned by the Job whose file gives back the values', () => {
    const s = buildRunSecret(job, values);
    expect(s.type).toBe('Opaque');
    expect(s.immutable).toBe(true);
    expect(s.metadata?.name).toBe(`${name}-secrets`);
    expect(s.metadata?.ownerReferences).toEqual([
      { apiVersion: 'batch/v1', kind: 'Job', name, uid: 'job-uid-4', controller: true },
    ]);
    const file = Buffer.from(s.data?.['values.json'] ?? '', 'base64').toString('utf8');
    expect(decodeSecretValues(file)).toEqual(values);
    expect(decodeSecretValues(encodeSecretValues(new Map()))).toEqual(new Map());
  });

  it('refuses a file that is not a list of string entries', () => {
    for (const bad of ['{}', '[{"name":"a","key":"b"}]', '[1]', 'nope'])
      expect(() => decodeSecretValues(bad)).toThrow();
  });

  function jobInputs() {
    return {
      id: 'db.node1.run-5',
      number: 5,
      noderole: nr(undefined),
      role,
      namespace: 'crowbar',
      image: 'i',
      ttlSecondsAfterFinished: 60,
    };
  }
});

describe('runnerRules', () => {
  it('names every object it grants', () => {
    const rules = runnerRules({
      noderole: 'a.n',
      role: 'a',
      node: 'n',
      networks: ['admin', 'admin'],
      script: true,
    });
    for (const r of rules) expect(r.resourceNames?.length).toBeGreaterThan(0);
    expect(rules.find((r) => r.resources?.includes('networks'))?.resourceNames).toEqual(['admin']);
    expect(
      runnerRules({ noderole: 'a.n', role: 'a', node: 'n', script: false }).some((r) =>
        r.resources?.includes('nodes/status'),
      ),
    ).toBe(false);
  });
});

const job = (conditions: { type: string; reason?: string; message?: string }[]): V1Job => ({
  metadata: { name: 'j1' },
  spec: { template: {}, activeDeadlineSeconds: 5 },
  status: { conditions: conditions.map((c) => ({ ...c, status: 'True' })) },
});

describe('results', () => {
  it('reads the terminal state only from Complete and Failed', () => {
    expect(jobState(job([{ type: 'SuccessCriteriaMet' }]))).toEqual({ kind: 'running' });
    expect(jobState(job([{ type: 'Complete' }]))).toEqual({ kind: 'complete' });
    expect(jobState(job([{ type: 'FailureTarget' }, { type: 'Failed', reason: 'X' }]))).toEqual({
      kind: 'failed',
      reason: 'X',
      message: '',
    });
  });

  it('maps DeadlineExceeded to a timeout that names the deadline', () => {
    const j = job([{ type: 'Failed', reason: 'DeadlineExceeded' }]);
    const r = failureOf(j, jobState(j));
    expect(r).toMatchObject({ ok: false });
    expect(!r.ok && r.message).toMatch(/exceeded its deadline.*activeDeadlineSeconds 5 s/);
  });

  it('quotes the runner when a Job fails without a report', () => {
    const j = job([{ type: 'Failed', reason: 'BackoffLimitExceeded' }]);
    const r = failureOf(j, jobState(j), 'starting\nNodeRole x not found\n', 1);
    expect(r).toMatchObject({ ok: false, exitCode: 1 });
    expect(!r.ok && r.message).toMatch(/BackoffLimitExceeded.*NodeRole x not found/);
  });

  it("takes the runner's report only for its own finished run", () => {
    const base = { state: 'transition' as const, message: 'disk gone', wall: { a: 1 } };
    const run = { id: 'x.run-2', number: 2, finished: '2026-01-01T00:00:00Z' };
    expect(reportOf(nr({ ...base, run: { ...run, result: 'succeeded' } }), 'x.run-2')).toEqual({
      ok: true,
      wall: { a: 1 },
    });
    expect(
      reportOf(nr({ ...base, run: { ...run, result: 'failed', exitCode: 3 } }), 'x.run-2'),
    ).toEqual({ ok: false, message: 'disk gone', exitCode: 3 });
    expect(reportOf(nr({ ...base, run: { ...run, result: 'succeeded' } }), 'x.run-1')).toBe(
      undefined,
    );
    expect(
      reportOf(nr({ ...base, run: { id: 'x.run-2', result: 'running' } }), 'x.run-2'),
    ).toBeUndefined();
  });
});
