/**
 * The job executor's script snapshot against a fake API server (plain HTTP, canned answers): what
 * it creates, in which order, and what it refuses before making anything. The real thing (job
 * controller, kubelet stand-in, sshd) is test/integration/job-executor.test.ts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig, type V1ConfigMap, type V1Job, type V1Secret } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Node, NodeRole, Role } from '../../generated/crowbar.ts';
import { LIMITS } from '../jigs/script/protocol.ts';
import type { JigResult } from '../jigs/types.ts';
import { noopJig } from '../jigs/noop.ts';
import {
  ENV,
  buildJob,
  decodeSecretValues,
  jobName,
  runSecretName,
  scriptSnapshotName,
} from './job-spec.ts';
import { JobExecutor } from './job.ts';

const NS = 'crowbar';
const RUN_ID = 'r.n1.run-1';
const JOB = jobName(RUN_ID);
const SNAP = scriptSnapshotName(JOB);

interface Call {
  method: string;
  path: string;
  body: unknown;
}

/** Just enough of an API server for one executor run. */
class FakeApi {
  readonly calls: Call[] = [];
  readonly jobs = new Map<string, V1Job>();
  readonly configMaps = new Map<string, V1ConfigMap>();
  /** Secrets by name (the operator's namespace is NS too). */
  readonly secrets = new Map<string, V1Secret>();
  /** Answer the snapshot's create with this status instead (e.g. 500). */
  failSnapshot: number | undefined;
  /** Jobs start Complete unless this is false (then the snapshot's create completes them). */
  completeAtOnce = true;
  noderole: NodeRole;
  private server: Server | undefined;
  private readonly watches = new Set<ServerResponse>();
  private uid = 0;

  constructor(noderole: NodeRole) {
    this.noderole = noderole;
  }

  async start(): Promise<KubeConfig> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        res.writeHead(500).end(String(e));
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    const port = (this.server.address() as AddressInfo).port;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'c', cluster: 'c', user: 'u' }],
      currentContext: 'c',
    });
    return kc;
  }

  async stop(): Promise<void> {
    for (const w of this.watches) w.end();
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  /** Calls other than the executor's reads and watches of its Jobs. */
  writes(): string[] {
    return this.calls
      .filter((c) => c.method !== 'GET')
      .map((c) => `${c.method} ${c.path.replace(/\?.*$/, '')}`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const body: unknown = text === '' ? undefined : JSON.parse(text);
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://x');
    this.calls.push({ method, path: `${url.pathname}${url.search}`, body });
    const reply = this.route(method, url, body);
    if (reply === 'watch') {
      res.writeHead(200, { 'content-type': 'application/json' });
      this.watches.add(res);
      return;
    }
    res
      .writeHead(reply.code, { 'content-type': 'application/json' })
      .end(JSON.stringify(reply.body));
  }

  private route(method: string, url: URL, body: unknown): Reply {
    const path = url.pathname;
    const last = path.split('/').pop() ?? '';
    if (path === `/apis/batch/v1/namespaces/${NS}/jobs`) {
      if (method === 'POST') {
        const job = body as V1Job;
        const name = job.metadata?.name ?? '';
        if (this.jobs.has(name)) return failure(409, 'AlreadyExists', `job ${name} exists`);
        job.metadata = Object.assign(job.metadata ?? {}, { uid: `job-uid-${String(++this.uid)}` });
        if (this.completeAtOnce) complete(job);
        this.jobs.set(name, job);
        return { code: 201, body: job };
      }
      if (url.searchParams.get('watch') === 'true') return 'watch';
      return {
        code: 200,
        body: { kind: 'JobList', metadata: { resourceVersion: '1' }, items: [] },
      };
    }
    if (path.startsWith(`/apis/batch/v1/namespaces/${NS}/jobs/`)) {
      const job = this.jobs.get(last);
      if (method === 'DELETE') {
        this.jobs.delete(last);
        return SUCCESS;
      }
      return job ? { code: 200, body: job } : failure(404, 'NotFound', `job "${last}" not found`);
    }
    if (path === `/api/v1/namespaces/${NS}/configmaps` && method === 'POST') {
      const cm = body as V1ConfigMap;
      const name = cm.metadata?.name ?? '';
      if (name === SNAP && this.failSnapshot !== undefined)
        return failure(this.failSnapshot, 'InternalError', 'etcd is having a bad day');
      if (this.configMaps.has(name)) return failure(409, 'AlreadyExists', `cm ${name} exists`);
      this.configMaps.set(name, cm);
      const job = this.jobs.get(JOB);
      if (job) complete(job);
      return { code: 201, body: cm };
    }
    const cm = /^\/api\/v1\/namespaces\/([^/]+)\/configmaps\/([^/]+)$/.exec(path);
    if (cm && method === 'GET') {
      const o =
        this.configMaps.get(`${cm[1] ?? ''}/${cm[2] ?? ''}`) ?? this.configMaps.get(cm[2] ?? '');
      return o
        ? { code: 200, body: o }
        : failure(404, 'NotFound', `configmaps "${last}" not found`);
    }
    if (path === `/api/v1/namespaces/${NS}/secrets` && method === 'POST') {
      const sec = body as V1Secret;
      const name = sec.metadata?.name ?? '';
      if (this.secrets.has(name)) return failure(409, 'AlreadyExists', `secret ${name} exists`);
      this.secrets.set(name, sec);
      // As with the snapshot: the pod could start once its last volume exists.
      const job = this.jobs.get(JOB);
      if (job) complete(job);
      return { code: 201, body: sec };
    }
    if (path.startsWith(`/api/v1/namespaces/${NS}/secrets/`) && method === 'GET') {
      const o = this.secrets.get(last);
      return o ? { code: 200, body: o } : failure(404, 'NotFound', `secrets "${last}" not found`);
    }
    if (path.startsWith('/apis/crowbar.dev/v1alpha1/noderoles/'))
      return { code: 200, body: this.noderole };
    if (path === `/api/v1/namespaces/${NS}/pods`) return { code: 200, body: { items: [] } };
    // ServiceAccount, ClusterRole, ClusterRoleBinding: created and deleted, nothing to keep.
    if (method === 'POST') return { code: 201, body };
    if (method === 'DELETE') return SUCCESS;
    return failure(404, 'NotFound', `no route for ${method} ${path}`);
  }
}

type Reply = { code: number; body: unknown } | 'watch';

const SUCCESS: Reply = { code: 200, body: { kind: 'Status', status: 'Success' } };

function failure(code: number, reason: string, message: string): Reply {
  return {
    code,
    body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message },
  };
}

function complete(job: V1Job): void {
  job.status = { conditions: [{ type: 'Complete', status: 'True' }] };
}

const role = (script: Role['spec']['script'], jig: Role['spec']['jig'] = 'script'): Role => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Role',
  metadata: { name: 'r' },
  spec: { jig, ...(script ? { script } : {}) },
});

const node: Node = {
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Node',
  metadata: { name: 'n1' },
  spec: { deployment: 'system' },
};

/** The NodeRole as its runner left it: run 1 succeeded with a wall. */
const reported: NodeRole = {
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'NodeRole',
  metadata: { name: 'r.n1', uid: 'nr-uid' },
  spec: { role: 'r', node: 'n1', deployment: 'system' },
  status: {
    state: 'transition',
    wall: { from: 'runner' },
    run: { id: RUN_ID, number: 1, result: 'succeeded', finished: '2026-01-01T00:00:00Z' },
  },
};

let api: FakeApi;
let exec: JobExecutor;

beforeEach(async () => {
  api = new FakeApi(structuredClone(reported));
  exec = new JobExecutor({
    kc: await api.start(),
    namespace: NS,
    secretNamespace: NS,
    image: 'crowbar/operator:test',
    sshKeySecret: 'root-key',
    pollMs: 20,
    fieldManager: 'crowbar-test',
    log: pino({ level: 'silent' }),
  });
});

afterEach(async () => {
  await exec.stop();
  await api.stop();
});

function run(r: Role, resume = false, input: Record<string, unknown> = {}): Promise<JigResult> {
  const req = {
    noderole: api.noderole,
    role: r,
    node,
    number: 1,
    input,
    signal: new AbortController().signal,
    jig: noopJig,
    id: RUN_ID,
  };
  return resume ? exec.resume(req) : exec.execute(req);
}

const ref = { namespace: 'src', name: 'scripts', key: 'run.sh' };

describe('JobExecutor script snapshots', () => {
  it('snapshots a ConfigMap script into a ConfigMap owned by the Job, after the Job', async () => {
    api.configMaps.set('src/scripts', { data: { 'run.sh': '#!/bin/sh\necho v1\n' } });
    expect(await run(role({ configMapRef: ref }))).toEqual({ ok: true, wall: { from: 'runner' } });
    const writes = api.writes();
    const jobAt = writes.indexOf(`POST /apis/batch/v1/namespaces/${NS}/jobs`);
    const snapAt = writes.indexOf(`POST /api/v1/namespaces/${NS}/configmaps`);
    expect(jobAt).toBeGreaterThanOrEqual(0);
    expect(snapAt).toBeGreaterThan(jobAt);
    const snap = api.configMaps.get(SNAP);
    expect(snap?.data).toEqual({ script: '#!/bin/sh\necho v1\n' });
    expect(snap?.immutable).toBe(true);
    expect(snap?.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'Job', name: JOB, uid: api.jobs.get(JOB)?.metadata?.uid }),
    ]);
    expect(snap?.metadata?.annotations?.['crowbar.dev/script-source']).toBe(
      'configmap src/scripts#run.sh',
    );
    const pod = api.jobs.get(JOB)?.spec?.template.spec;
    expect(pod?.volumes?.find((v) => v.name === 'script')?.configMap?.name).toBe(SNAP);
    expect(pod?.containers[0]?.env?.some((e) => e.name === ENV.scriptFile)).toBe(true);
  });

  it('snapshots inline scripts the same way', async () => {
    await run(role({ inline: '#!/bin/sh\necho inline\n' }));
    expect(api.configMaps.get(SNAP)?.data).toEqual({ script: '#!/bin/sh\necho inline\n' });
  });

  it.each([
    [
      'a missing ConfigMap',
      () => undefined,
      role({ configMapRef: ref }),
      'cannot load the script of role r: ConfigMap src/scripts not found',
    ],
    [
      'a missing key',
      () => api.configMaps.set('src/scripts', { data: { 'other.sh': 'x' } }),
      role({ configMapRef: ref }),
      'cannot load the script of role r: ConfigMap src/scripts has no key run.sh',
    ],
    [
      'an oversized script',
      () =>
        api.configMaps.set('src/scripts', {
          data: { 'run.sh': 'x'.repeat(LIMITS.scriptBytes + 1) },
        }),
      role({ configMapRef: ref }),
      `the script of role r is ${LIMITS.scriptBytes + 1} bytes, over the 256 KiB limit`,
    ],
    [
      'an empty script',
      () => api.configMaps.set('src/scripts', { data: { 'run.sh': '' } }),
      role({ configMapRef: ref }),
      'the script of role r is empty',
    ],
    ['a role without a script', () => undefined, role({ inline: '' }), 'role r has no script'],
  ])('refuses %s before making anything', async (_what, setup, r, message) => {
    setup();
    const res = await run(r);
    expect(res.ok).toBe(false);
    expect(res.ok ? '' : res.message).toContain(message);
    // Only the clean-up of runner access that was never granted (404s are ignored).
    expect(api.writes().filter((w) => !w.startsWith('DELETE'))).toEqual([]);
  });

  it('deletes the Job when its snapshot cannot be made, so no pod waits for it', async () => {
    api.failSnapshot = 500;
    await expect(run(role({ inline: 'echo hi' }))).rejects.toThrow(
      `cannot create the script snapshot ConfigMap ${SNAP}: etcd is having a bad day`,
    );
    expect(api.writes()).toContain(`DELETE /apis/batch/v1/namespaces/${NS}/jobs/${JOB}`);
    expect(api.jobs.has(JOB)).toBe(false);
  });

  it('keeps a snapshot that already exists (create-if-absent)', async () => {
    api.configMaps.set(SNAP, { metadata: { name: SNAP }, data: { script: 'taken before' } });
    expect((await run(role({ inline: 'echo now' }))).ok).toBe(true);
    expect(api.configMaps.get(SNAP)?.data).toEqual({ script: 'taken before' });
  });

  /** A running Job of the run, as a leader that died right after creating it left it. */
  const leftJob = (r: Role): void => {
    const job = buildJob({
      id: RUN_ID,
      number: 1,
      noderole: api.noderole,
      role: r,
      namespace: NS,
      image: 'crowbar/operator:test',
      scriptSnapshot: true,
      ttlSecondsAfterFinished: 60,
    });
    if (job.metadata) job.metadata.uid = 'job-uid-9';
    api.jobs.set(JOB, job);
    api.completeAtOnce = false;
  };

  it('takes the missing snapshot of a re-adopted Job whose leader died before making it', async () => {
    leftJob(role({ configMapRef: ref }));
    api.configMaps.set('src/scripts', { data: { 'run.sh': 'echo from the configmap' } });
    expect((await run(role({ configMapRef: ref }), true)).ok).toBe(true);
    const snap = api.configMaps.get(SNAP);
    expect(snap?.data).toEqual({ script: 'echo from the configmap' });
    expect(snap?.metadata?.ownerReferences?.[0]?.uid).toBe('job-uid-9');
    expect(api.writes()).not.toContain(`POST /apis/batch/v1/namespaces/${NS}/jobs`);
  });

  it('leaves the snapshot of a re-adopted Job alone', async () => {
    leftJob(role({ configMapRef: ref }));
    api.configMaps.set(SNAP, { metadata: { name: SNAP }, data: { script: 'taken at start' } });
    // Running (so its snapshot matters), and done a moment later.
    setTimeout(() => {
      const job = api.jobs.get(JOB);
      if (job) job.status = { conditions: [{ type: 'Complete', status: 'True' }] };
    }, 100);
    expect((await run(role({ configMapRef: ref }), true)).ok).toBe(true);
    expect(api.configMaps.get(SNAP)?.data).toEqual({ script: 'taken at start' });
    expect(api.writes().filter((w) => w.startsWith('POST'))).toEqual([]);
  });

  it('fails a re-adopted Job whose snapshot cannot be taken any more, and deletes it', async () => {
    leftJob(role({ configMapRef: ref }));
    const res = await run(role({ configMapRef: ref }), true);
    expect(res).toEqual({
      ok: false,
      message: 'cannot load the script of role r: ConfigMap src/scripts not found',
    });
    expect(api.jobs.has(JOB)).toBe(false);
  });

  it('makes no snapshot for jigs without scripts', async () => {
    expect((await run(role(undefined, 'noop'))).ok).toBe(true);
    expect(api.configMaps.has(SNAP)).toBe(false);
    const pod = api.jobs.get(JOB)?.spec?.template.spec;
    expect(pod?.volumes ?? []).toEqual([]);
  });
});

describe('JobExecutor secretRefs', () => {
  const input = { db: { password: { secretRef: { name: 'db', key: 'password' } } } };
  const value = 'hunter2-Zq';

  it("puts the values in the run's own Secret, made after the Job and owned by it", async () => {
    api.secrets.set('db', { data: { password: Buffer.from(value).toString('base64') } });
    const res = await run(role({ inline: '#!/bin/sh\n' }), false, input);
    expect(res.ok).toBe(true);
    const writes = api.writes();
    const jobAt = writes.indexOf(`POST /apis/batch/v1/namespaces/${NS}/jobs`);
    expect(writes.indexOf(`POST /api/v1/namespaces/${NS}/secrets`)).toBeGreaterThan(jobAt);
    const job = api.jobs.get(JOB);
    const sec = api.secrets.get(runSecretName(JOB));
    expect(sec?.type).toBe('Opaque');
    expect(sec?.metadata?.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'Job', name: JOB, uid: job?.metadata?.uid }),
    ]);
    const file = Buffer.from(sec?.data?.['values.json'] ?? '', 'base64').toString('utf8');
    expect(decodeSecretValues(file)).toEqual(new Map([['db\u0000password', value]]));
    // The Job names the Secret; no value anywhere in it.
    expect(JSON.stringify(job)).not.toContain(value);
    const pod = job?.spec?.template.spec;
    expect(pod?.volumes?.find((v) => v.secret?.secretName === runSecretName(JOB))?.secret).toEqual({
      secretName: runSecretName(JOB),
      optional: false,
      defaultMode: 0o440,
    });
    expect(pod?.containers[0]?.env?.some((e) => e.name === ENV.secretsFile)).toBe(true);
  });

  it.each([
    ['a missing Secret', () => undefined, `secretRef db/password: Secret ${NS}/db not found`],
    [
      'a missing key',
      () => api.secrets.set('db', { data: { other: 'eA==' } }),
      `secretRef db/password: Secret ${NS}/db has no key password`,
    ],
  ])('refuses %s before making anything', async (_what, setup, message) => {
    setup();
    const res = await run(role({ inline: '#!/bin/sh\n' }), false, input);
    expect(res.ok ? '' : res.message).toContain(message);
    expect(api.writes().filter((w) => !w.startsWith('DELETE'))).toEqual([]);
  });

  const leftJob = (): void => {
    const job = buildJob({
      id: RUN_ID,
      number: 1,
      noderole: api.noderole,
      role: role({ inline: '#!/bin/sh\n' }),
      namespace: NS,
      image: 'crowbar/operator:test',
      scriptSnapshot: true,
      runSecret: true,
      ttlSecondsAfterFinished: 60,
    });
    if (job.metadata) job.metadata.uid = 'job-uid-7';
    api.jobs.set(JOB, job);
    api.completeAtOnce = false;
    api.configMaps.set(SNAP, { metadata: { name: SNAP }, data: { script: 'taken at start' } });
  };

  it('makes the missing run Secret of a re-adopted Job whose leader died before making it', async () => {
    leftJob();
    api.secrets.set('db', { data: { password: Buffer.from(value).toString('base64') } });
    expect((await run(role({ inline: '#!/bin/sh\n' }), true, input)).ok).toBe(true);
    const sec = api.secrets.get(runSecretName(JOB));
    expect(sec?.metadata?.ownerReferences?.[0]?.uid).toBe('job-uid-7');
    expect(api.writes()).not.toContain(`POST /apis/batch/v1/namespaces/${NS}/jobs`);
  });

  it('fails a re-adopted Job whose run Secret cannot be made any more, and deletes it', async () => {
    leftJob();
    const res = await run(role({ inline: '#!/bin/sh\n' }), true, input);
    expect(res.ok ? '' : res.message).toContain(`secretRef db/password: Secret ${NS}/db not found`);
    expect(api.jobs.has(JOB)).toBe(false);
  });

  it('makes no run Secret for a run without secretRefs', async () => {
    await run(role({ inline: '#!/bin/sh\n' }));
    expect(api.secrets.size).toBe(0);
    const vols = api.jobs.get(JOB)?.spec?.template.spec?.volumes ?? [];
    expect(vols.some((v) => v.secret?.secretName === runSecretName(JOB))).toBe(false);
  });
});
