/**
 * The job executor through the real Job path: the operator (a real process, --executor=job)
 * creates batch/v1 Jobs in the real API server, the real job controller (kube-controller-manager)
 * makes their pods, and the kubelet stand-in (test code: test/harness/kubelet-standin.ts) runs
 * each pod's `node operator/jig-runner.ts` as a local process with a ServiceAccount token of its
 * per-run RBAC. Success, failure, deadline, and a kill -9 of the operator mid-run. Script roles
 * run through the same path against a real OpenSSH server in a network namespace, their script
 * (inline or from a ConfigMap) snapshotted by the operator when the run starts, and the values of
 * their input's secretRefs delivered through a per-run Secret the pod mounts.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { BatchV1Api, CoreV1Api, RbacAuthorizationV1Api, type V1Job } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  LABEL_NODEROLE,
  jobName,
  labelValue,
  runSecretName,
  runnerRbacName,
  scriptSnapshotName,
} from '../../operator/executors/job-spec.ts';
import { CrowbarClient, loadKubeConfig } from '../../operator/kube/client.ts';
import { apiCode } from '../../operator/kube/errors.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { Fleet } from '../harness/fleet.ts';
import { KubeletStandin } from '../harness/kubelet-standin.ts';
import { labNetworkSpec } from '../harness/netns.ts';
import { startOperator, type OperatorProc } from '../harness/operator.ts';
import { SshFleet } from '../harness/ssh-fleet.ts';

const kubeconfig = inject('kubeconfig');
const logDir = inject('cpDir');
const client = testClient();
const kc = loadKubeConfig(kubeconfig);
const batch = kc.makeApiClient(BatchV1Api);
const core = kc.makeApiClient(CoreV1Api);
const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
const ns = `jobs-${uid()}`;
const lease = `jobexec-${uid()}`;
/** Root's SSH key for script runs, in the Job namespace (run pods mount it). */
const keySecret = `cbt-ssh-${uid()}`;
let op: OperatorProc | undefined;
let kubelet: KubeletStandin | undefined;

function start(identity: string): Promise<OperatorProc> {
  return startOperator({
    kubeconfig,
    logDir,
    identity,
    args: [
      `--lease-name=${lease}`,
      `--lease-namespace=${ns}`,
      '--executor=job',
      `--job-namespace=${ns}`,
      '--job-image=crowbar/operator:test',
      '--job-ttl-seconds=600',
      // Created by the script tests' setup; only script runs mount it.
      `--ssh-key-secret=${ns}/${keySecret}`,
    ],
  });
}

async function jobsOf(noderole: string): Promise<V1Job[]> {
  const res = await batch.listNamespacedJob({
    namespace: ns,
    labelSelector: `${LABEL_NODEROLE}=${labelValue(noderole)}`,
  });
  return res.items;
}

/** kill -9 of the current operator, then a fresh one under a new identity; returns it. */
async function killAndRestart(): Promise<string> {
  const old = op?.proc;
  if (old && old.exitCode === null) {
    const exited = new Promise<void>((r) =>
      old.once('exit', () => {
        r();
      }),
    );
    old.kill('SIGKILL');
    await exited;
  }
  const identity = `jobexec-${uid()}`;
  op = await start(identity);
  return identity;
}

/** A client acting as the run's ServiceAccount (a token like the one its pod gets). */
async function asRunner(sa: string): Promise<CrowbarClient> {
  const tr = await core.createNamespacedServiceAccountToken({
    name: sa,
    namespace: ns,
    body: { spec: { audiences: [], expirationSeconds: 600 } },
  });
  const cluster = kc.getCurrentCluster();
  const k = loadKubeConfig(kubeconfig);
  k.loadFromOptions({
    clusters: [{ name: 'c', server: cluster?.server ?? '', caData: cluster?.caData }],
    users: [{ name: 'sa', token: tr.status?.token ?? '' }],
    contexts: [{ name: 'c', cluster: 'c', user: 'sa' }],
    currentContext: 'c',
  });
  return new CrowbarClient(k);
}

/** A committed deployment with `role` bound to one fresh node; returns the noderole's name. */
async function bindOne(f: Fleet, role: string): Promise<string> {
  await f.createNode('n1');
  const dep = await f.createDeployment('d');
  const nr = await f.bind(role, 'n1', dep);
  await eventually('bound', async () => (await client.get('NodeRole', nr))?.status?.state);
  await f.commit(dep);
  return nr;
}

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: ns } } });
  kubelet = await KubeletStandin.start({ kubeconfig, namespace: ns, logDir });
  op = await start(`jobexec-${uid()}`);
  await eventually('operator ready', async () => (await op?.http('/readyz'))?.status === 200);
});

afterAll(async () => {
  await op?.stop();
  await kubelet?.stop();
  await core.deleteNamespace({ name: ns }).catch(() => undefined);
});

describe('job executor', () => {
  it('runs a noderole as a Job and records its wall', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('ok', { timeoutSeconds: 90, test: { delayMs: 100, wall: { disk: 'sda' } } });
    const nr = await bindOne(f, 'ok');
    const done = await f.waitState(nr, 'active', 60_000);
    expect(done.status?.wall).toMatchObject({ disk: 'sda', test: { run: 1 } });
    expect(done.status?.run).toMatchObject({ executor: 'job', result: 'succeeded', number: 1 });
    expect(done.status?.runCount).toBe(1);

    const jobs = await jobsOf(nr);
    expect(jobs.map((j) => j.metadata?.name)).toEqual([jobName(`${nr}.run-1`)]);
    const job = jobs[0];
    expect(job?.metadata?.name?.length).toBeLessThanOrEqual(63);
    expect(job?.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'NodeRole', name: nr, uid: done.metadata.uid }),
    ]);
    expect(job?.spec).toMatchObject({
      backoffLimit: 0,
      activeDeadlineSeconds: 90,
      ttlSecondsAfterFinished: 600,
    });
    expect(job?.spec?.template.spec?.containers[0]?.command).toEqual([
      'node',
      'operator/jig-runner.ts',
    ]);
    expect(job?.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True')).toBe(
      true,
    );
    // The runner's per-run access is gone once the run is recorded.
    const name = job?.metadata?.name ?? '';
    await eventually('runner RBAC removed', async () => {
      const left = await rbac
        .readClusterRole({ name: runnerRbacName(ns, name) })
        .then(() => true)
        .catch(() => false);
      return !left;
    });
  });

  it('replaces the wall on a re-run (§4.2): keys the run no longer returns disappear', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('w', { timeoutSeconds: 90, test: { wall: { keep: 1, drop: { x: 2 } } } });
    const nr = await bindOne(f, 'w');
    const first = await f.waitState(nr, 'active', 60_000);
    expect(first.status?.wall).toMatchObject({ keep: 1, drop: { x: 2 } });
    await client.mergePatch(
      'Role',
      f.role('w'),
      { spec: { test: { wall: { keep: 1, drop: null } } } },
      'crowbar-test',
    );
    await client.mergePatch('NodeRole', nr, { spec: { proposed: true } }, 'crowbar-test');
    await f.waitState(nr, 'proposed');
    await client.mergePatch('NodeRole', nr, { spec: { proposed: false } }, 'crowbar-test');
    const second = await eventually(
      'run 2 recorded',
      async () => {
        const cur = await client.get('NodeRole', nr);
        return cur?.status?.state === 'active' && cur.status.runCount === 2 ? cur : undefined;
      },
      60_000,
    );
    expect(second.status?.run).toMatchObject({ executor: 'job', number: 2 });
    expect(second.status?.wall).toEqual({ keep: 1, test: { run: 2 } });
  });

  it('turns a failing run into an error with the jig message', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('bad', { test: { fail: true, failMessage: 'disk sdz is on fire' } });
    const nr = await bindOne(f, 'bad');
    const failed = await f.waitState(nr, 'error', 60_000);
    expect(failed.status?.message).toMatch(/disk sdz is on fire/);
    expect(failed.status?.run?.result).toBe('failed');
    const [job] = await jobsOf(nr);
    expect(job?.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True')).toBe(
      true,
    );
  });

  it('fails a run that outlives its deadline', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('slow', { timeoutSeconds: 2, test: { delayMs: 120_000 } });
    const nr = await bindOne(f, 'slow');
    const failed = await f.waitState(nr, 'error', 60_000);
    expect(failed.status?.message).toMatch(/deadline|timed out after 2 s/);
    // The run's pod was stopped, not left running.
    await eventually('no pod of the run still running', async () => {
      const pods = await core.listNamespacedPod({
        namespace: ns,
        labelSelector: `${LABEL_NODEROLE}=${labelValue(nr)}`,
      });
      return pods.items.every((p) => p.status?.phase !== 'Running');
    });
  });

  it('re-adopts a running Job after kill -9 of the operator instead of starting another', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('long', { timeoutSeconds: 120, test: { delayMs: 8000 } });
    const nr = await bindOne(f, 'long');
    const name = jobName(`${nr}.run-1`);
    await eventually(
      'the run pod is running',
      () => kubelet?.started.some((p) => p.startsWith(name)),
      60_000,
    );
    // The runner may read only its own objects.
    const cr = await rbac.readClusterRole({ name: runnerRbacName(ns, name) });
    expect(cr.rules?.find((r) => r.resources?.includes('noderoles/status'))?.resourceNames).toEqual(
      [nr],
    );
    // ... and is refused everything else.
    const runner = await asRunner(name);
    expect((await runner.get('NodeRole', nr))?.metadata.name).toBe(nr);
    const other = await runner.list('NodeRole').catch((e: unknown) => apiCode(e));
    expect(other).toBe(403);

    const identity = await killAndRestart();
    const done = await f.waitState(nr, 'active', 90_000);
    expect(done.status?.runCount).toBe(1);
    expect(done.status?.run?.owner).toBe(identity);
    expect((await jobsOf(nr)).map((j) => j.metadata?.name)).toEqual([name]);
    expect(kubelet?.started.filter((p) => p.startsWith(name))).toHaveLength(1);
  });

  it('reports a Job stopped by its own deadline while no operator was watching', async () => {
    const f = new Fleet(client, uid());
    await f.createRole('stuck', { timeoutSeconds: 3, test: { delayMs: 120_000 } });
    const nr = await bindOne(f, 'stuck');
    const name = jobName(`${nr}.run-1`);
    await eventually(
      'the run pod is running',
      () => kubelet?.started.some((p) => p.startsWith(name)),
      60_000,
    );
    await killAndRestart();
    // The job controller enforces activeDeadlineSeconds (the stand-in stops the process when the
    // pod is deleted); the new leader re-adopts the failed Job and reports why.
    const failed = await f.waitState(nr, 'error', 60_000);
    expect(failed.status?.message).toMatch(/exceeded its deadline.*activeDeadlineSeconds 3 s/);
    const [job] = await jobsOf(nr);
    expect(job?.status?.conditions).toContainEqual(
      expect.objectContaining({ type: 'Failed', status: 'True', reason: 'DeadlineExceeded' }),
    );
  });
});

describe('job executor: script roles', () => {
  const id = uid();
  const f = new Fleet(client, id);
  const FM = 'crowbar-test';
  const net = `lab-${id}`;
  const scripts = `cbt-scripts-${id}`;
  const machines = new SshFleet({ prefix: `cbt-jobscript-${id}`, noderoleTag: id });
  let dep = '';

  const script = (version: number): string => `#!/bin/sh
set -eu
echo "configmap script v${version} on $CROWBAR_NODE, run $CROWBAR_RUN"
jq -n --arg n "$CROWBAR_NODE" '{fromConfigMap: {version: ${version}, node: $n}}' > "$CROWBAR_OUTPUT"
`;

  beforeAll(async () => {
    const key = await machines.generateKey('root');
    await core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: { name: keySecret },
        data: { id_ed25519: key.privateKey.toString('base64') },
      },
    });
    await machines.start(['n1'], { authorizedKeys: () => [key.publicKey], quietRootShell: true });
    const machine = machines.node('n1');
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: scripts }, data: { 'run.sh': script(1) } },
    });
    // The lab subnet as an unmanaged network; the node's address comes through a binding to it.
    await client.create(
      'Network',
      {
        metadata: { name: net },
        spec: labNetworkSpec(machines.lab.subnet),
      },
      FM,
    );
    await eventually(`role network-${net}`, () => client.get('Role', `network-${net}`));
    dep = await f.createDeployment('d', 'committed');
    const name = f.node('n1');
    await client.create(
      'Node',
      {
        metadata: { name },
        spec: {
          available: true,
          deployment: 'system',
          hints: { [`${net}-v4addr`]: machine.address },
        },
      },
      FM,
    );
    await client.create(
      'NodeRole',
      {
        metadata: { name: `network-${net}.${name}` },
        spec: { role: `network-${net}`, node: name, deployment: dep },
      },
      FM,
    );
    // The operator's aliveness check reaches it over SSH with the key from the Secret.
    await eventually(
      'n1 has its address and is alive',
      async () => {
        const n = await client.get('Node', name);
        return (
          n?.status?.alive === true &&
          n.status.addresses?.some((a) => a.address.startsWith(`${machine.address}/`))
        );
      },
      60_000,
    );
  });

  afterAll(async () => {
    try {
      await machines.destroy();
    } finally {
      await client.delete('Network', net).catch(() => undefined);
    }
  });

  it('runs a ConfigMap script from the snapshot taken at run start, and its data is the wall', async () => {
    await f.createRole('fromcm', {
      jig: 'script',
      timeoutSeconds: 90,
      script: { configMapRef: { namespace: ns, name: scripts, key: 'run.sh' } },
    });
    const nr = await f.bind('fromcm', 'n1', dep);
    const job = jobName(`${nr}.run-1`);
    const snap = await eventually(
      'the run has its script snapshot',
      () =>
        core
          .readNamespacedConfigMap({ name: scriptSnapshotName(job), namespace: ns })
          .catch(() => undefined),
      60_000,
    );
    // Edited mid-run: the run goes on with the script it started with.
    await core.replaceNamespacedConfigMap({
      name: scripts,
      namespace: ns,
      body: { metadata: { name: scripts }, data: { 'run.sh': script(2) } },
    });

    const done = await f.waitState(nr, 'active', 90_000);
    expect(done.status?.wall).toEqual({ fromConfigMap: { version: 1, node: f.node('n1') } });
    expect(done.status?.run).toMatchObject({ executor: 'job', result: 'succeeded', number: 1 });
    expect(done.status?.run?.logTail).toContain(`configmap script v1 on ${f.node('n1')}, run 1`);

    const [j] = await jobsOf(nr);
    expect(j?.metadata?.name).toBe(job);
    expect(snap.immutable).toBe(true);
    expect(snap.data).toEqual({ script: script(1) });
    expect(snap.metadata?.annotations?.['crowbar.dev/script-source']).toBe(
      `configmap ${ns}/${scripts}#run.sh`,
    );
    // Garbage-collected with its Job.
    expect(snap.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'Job', name: job, uid: j?.metadata?.uid }),
    ]);
    expect(j?.spec?.template.spec?.volumes?.find((v) => v.name === 'script')?.configMap?.name).toBe(
      scriptSnapshotName(job),
    );
  });

  it('delivers secretRef values through a per-run Secret and keeps them out of status, Events, logs and the Job', async () => {
    const value = `pw-${id}-Jb7q`;
    const secretName = `cbt-db-${id}`;
    await core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: { name: secretName },
        data: { password: Buffer.from(value).toString('base64') },
      },
    });
    const template = { db: { password: { secretRef: { name: secretName, key: 'password' } } } };
    await f.createRole('sec', {
      jig: 'script',
      timeoutSeconds: 90,
      template,
      script: {
        inline:
          '#!/bin/sh\nset -eu\npw=$(jq -r .db.password "$CROWBAR_INPUT")\necho "using $pw"\nsha=$(printf %s "$pw" | sha256sum | cut -d" " -f1)\njq -n --arg s "$sha" --arg p "$pw" \'{db: {sha: $s, echo: $p}}\' > "$CROWBAR_OUTPUT"\n',
      },
    });
    const nr = await f.bind('sec', 'n1', dep);
    const done = await f.waitState(nr, 'active', 90_000);
    // The script saw the value (its hash came back); what it returned and printed is redacted.
    const sha = createHash('sha256').update(value).digest('hex');
    expect(done.status?.wall).toEqual({ db: { sha, echo: '[secret]' } });
    expect(done.status?.run).toMatchObject({ executor: 'job', result: 'succeeded' });
    expect(done.status?.run?.logTail).toContain('using [secret]');
    expect(done.status?.run?.input?.['db']).toEqual(template.db);
    expect(JSON.stringify(done.status)).not.toContain(value);

    const job = jobName(`${nr}.run-1`);
    const [j] = await jobsOf(nr);
    expect(j?.metadata?.name).toBe(job);
    expect(JSON.stringify(j)).not.toContain(value);
    expect(JSON.stringify(j)).not.toContain(Buffer.from(value).toString('base64'));
    const vol = j?.spec?.template.spec?.volumes?.find(
      (v) => v.secret?.secretName === runSecretName(job),
    );
    expect(vol?.secret).toMatchObject({ optional: false, defaultMode: 0o440 });
    // The run's own Secret: Opaque, immutable, garbage-collected with its Job.
    const runSecret = await core.readNamespacedSecret({ name: runSecretName(job), namespace: ns });
    expect(runSecret.type).toBe('Opaque');
    expect(runSecret.immutable).toBe(true);
    expect(runSecret.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'Job', name: job, uid: j?.metadata?.uid }),
    ]);
    const events = await core.listEventForAllNamespaces({});
    expect(JSON.stringify(events.items)).not.toContain(value);
    expect(readFileSync(op?.log ?? '', 'utf8')).not.toContain(value);
    // The runner's own output (the pod log the stand-in keeps) holds no value either.
    const podLogs = readdirSync(logDir).filter((n) => n.startsWith(`pod-${job}`));
    expect(podLogs.length).toBeGreaterThan(0);
    for (const n of podLogs) {
      expect({ n, leaks: readFileSync(join(logDir, n), 'utf8').includes(value) }).toEqual({
        n,
        leaks: false,
      });
    }
    await core.deleteNamespacedSecret({ name: secretName, namespace: ns }).catch(() => undefined);
  });

  it('errors a run whose secretRef names a missing Secret, clearly and without making a Job', async () => {
    const missing = `cbt-none-${id}`;
    await f.createRole('nosecret', {
      jig: 'script',
      template: { db: { password: { secretRef: { name: missing, key: 'password' } } } },
      script: { inline: '#!/bin/sh\necho should not run\n' },
    });
    await f.createNode('s1');
    const nr = await f.bind('nosecret', 's1', dep);
    const failed = await f.waitState(nr, 'error', 60_000);
    expect(failed.status?.message).toContain(
      `secretRef ${missing}/password: Secret ${ns}/${missing} not found`,
    );
    expect(failed.status?.run?.executor).toBe('job');
    expect(await jobsOf(nr)).toEqual([]);
  });

  it('errors a run whose ConfigMap has no such key, clearly and without making a Job', async () => {
    await f.createRole('nokey', {
      jig: 'script',
      script: { configMapRef: { namespace: ns, name: scripts, key: 'nope.sh' } },
    });
    await f.createNode('k1');
    const nr = await f.bind('nokey', 'k1', dep);
    const failed = await f.waitState(nr, 'error', 60_000);
    expect(failed.status?.message).toContain(
      `cannot load the script of role ${f.role('nokey')}: ConfigMap ${ns}/${scripts} has no key nope.sh`,
    );
    expect(failed.status?.run?.executor).toBe('job');
    expect(await jobsOf(nr)).toEqual([]);
  });
});
