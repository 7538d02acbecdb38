/**
 * KUBELET STAND-IN — test code, not a kubelet. These machines have no container runtime and no
 * kubelet, so this fake plays the kubelet's part for the pods of one namespace, just enough for
 * the real job controller (kube-controller-manager) to drive Jobs to Complete or Failed:
 *
 *  - registers a core v1 Node `kubelet-standin` with a Ready condition;
 *  - binds each pending pod to that Node (there is no scheduler either);
 *  - runs the pod's first container command as a local process instead of in a container: `node`
 *    is this Node.js, the working directory is the repository (the image's WORKDIR /app), the env
 *    is the container's (fieldRef, secretKeyRef and configMapKeyRef resolved), Secret/ConfigMap
 *    volumes are written to a temp dir and any env value under a mount path is pointed there; a
 *    volume whose Secret or ConfigMap does not exist yet holds the pod back (a kubelet keeps it
 *    in ContainerCreating and retries the mount) until it appears or the pod is deleted;
 *  - gives the process its ServiceAccount's credentials as a kubelet would project them: a
 *    TokenRequest bound to the pod, handed over as a KUBECONFIG file (so the runner's RBAC is
 *    the real thing);
 *  - reports the pod's status like a kubelet: Pending → Running → Succeeded/Failed with
 *    containerStatuses (exit code, reason, termination message from the log tail under
 *    FallbackToLogsOnError);
 *  - when a pod is deleted (the job controller enforcing activeDeadlineSeconds, or garbage
 *    collection), stops its process (SIGTERM, then SIGKILL after the grace period) and confirms the
 *    deletion with grace period 0.
 * It ignores images, resources, probes, security contexts and restarts (restartPolicy Never).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CoreV1Api,
  KubeConfig,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  type Informer,
  type ObjectCache,
  type V1EnvVar,
  type V1Pod,
  type V1PodCondition,
} from '@kubernetes/client-node';
import { apiCode } from '../../operator/kube/errors.ts';
import { ROOT } from './operator.ts';

export const STANDIN_NODE = 'kubelet-standin';

/** FallbackToLogsOnError keeps at most this much of the log (the kubelet's 2048 bytes, 80 lines). */
const TERMINATION_BYTES = 2048;
const TERMINATION_LINES = 80;

interface PodRun {
  uid: string;
  name: string;
  phase: 'binding' | 'starting' | 'running' | 'done';
  proc?: ChildProcess;
  dir?: string;
  started?: string;
  log: Buffer;
  deleting: boolean;
}

export interface KubeletStandinOptions {
  kubeconfig: string;
  namespace: string;
  /** Where the stand-in's own log and each pod's output go. */
  logDir: string;
}

export class KubeletStandin {
  private readonly kc = new KubeConfig();
  private readonly core: CoreV1Api;
  private readonly o: KubeletStandinOptions;
  private readonly runs = new Map<string, PodRun>();
  private informer: (Informer<V1Pod> & ObjectCache<V1Pod>) | undefined;
  private stopped = false;
  private readonly logFile: string;
  /** Pod names the stand-in has started a process for (for assertions). */
  readonly started: string[] = [];

  private constructor(o: KubeletStandinOptions) {
    this.o = o;
    this.kc.loadFromFile(o.kubeconfig);
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.logFile = join(o.logDir, `kubelet-standin-${o.namespace}.log`);
  }

  static async start(o: KubeletStandinOptions): Promise<KubeletStandin> {
    const k = new KubeletStandin(o);
    await k.registerNode();
    const inf = makeInformer<V1Pod>(k.kc, `/api/v1/namespaces/${o.namespace}/pods`, () =>
      k.core.listNamespacedPod({ namespace: o.namespace }),
    );
    const on = (pod: V1Pod): void => {
      k.handle(pod).catch((e: unknown) => {
        k.say('error handling a pod', { pod: pod.metadata?.name, err: String(e) });
      });
    };
    inf.on('add', on);
    inf.on('update', on);
    inf.on('error', (err: unknown) => {
      if (k.stopped) return;
      k.say('pod watch failed; restarting', { err: String(err) });
      setTimeout(() => void inf.start(), 500).unref();
    });
    k.informer = inf;
    await inf.start();
    k.say('started', { namespace: o.namespace });
    return k;
  }

  private say(msg: string, fields: Record<string, unknown> = {}): void {
    appendFileSync(
      this.logFile,
      `${new Date().toISOString()} kubelet-standin: ${msg} ${JSON.stringify(fields)}\n`,
    );
  }

  private async registerNode(): Promise<void> {
    try {
      await this.core.createNode({
        body: {
          metadata: { name: STANDIN_NODE, labels: { 'crowbar.dev/test': 'kubelet-standin' } },
        },
      });
    } catch (e) {
      if (apiCode(e) !== 409) throw e;
    }
    const now = new Date().toISOString();
    await this.core.patchNodeStatus(
      {
        name: STANDIN_NODE,
        body: {
          status: {
            conditions: [
              {
                type: 'Ready',
                status: 'True',
                reason: 'KubeletReady',
                message: 'kubelet stand-in (test code) is posting ready status',
                lastHeartbeatTime: now,
                lastTransitionTime: now,
              },
            ],
            addresses: [{ type: 'InternalIP', address: '127.0.0.1' }],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  private async handle(pod: V1Pod): Promise<void> {
    const uid = pod.metadata?.uid ?? '';
    const name = pod.metadata?.name ?? '';
    const mine = pod.spec?.nodeName === STANDIN_NODE;
    if (pod.spec?.nodeName && !mine) return;
    let run = this.runs.get(uid);
    if (pod.metadata?.deletionTimestamp) {
      if (!mine) return; // an unbound pod is deleted by the API server at once
      await this.kill(pod, run);
      return;
    }
    if (run || this.stopped) return;
    const phase = pod.status?.phase ?? 'Pending';
    if (phase !== 'Pending') return;
    run = { uid, name, phase: 'binding', log: Buffer.alloc(0), deleting: false };
    this.runs.set(uid, run);
    if (!mine) {
      await this.core.createNamespacedPodBinding({
        name,
        namespace: this.o.namespace,
        body: {
          metadata: { name, namespace: this.o.namespace },
          target: { apiVersion: 'v1', kind: 'Node', name: STANDIN_NODE },
        },
      });
      this.say('bound pod', { pod: name });
    }
    run.phase = 'starting';
    try {
      await this.startPod(pod, run);
    } catch (e) {
      this.say('pod failed to start', { pod: name, err: String(e) });
      run.phase = 'done';
      await this.patchStatus(name, {
        phase: 'Failed',
        reason: 'StandinStartError',
        message: String(e),
      }).catch(() => undefined);
      // kill() leaves the confirmation of a pod deleted while starting to the start.
      if (run.deleting) await this.confirmDeleted(name);
    }
  }

  private async startPod(pod: V1Pod, run: PodRun): Promise<void> {
    const spec = pod.spec;
    const c = spec?.containers[0];
    if (!spec || !c?.command?.[0]) throw new Error('the pod has no container command to run');
    const dir = mkdtempSync(join(tmpdir(), 'kubelet-standin-'));
    run.dir = dir;
    // As a kubelet does: the container runs as the pod's runAsUser/runAsGroup (when this process
    // may switch, i.e. runs as root), and volume files get their mode (defaultMode) and, with an
    // fsGroup, that group plus group read. So a key the runner's uid cannot read fails here as it
    // would on a real node.
    const sc = spec.securityContext;
    const asRoot = process.getuid?.() === 0;
    const user = asRoot && sc?.runAsUser !== undefined ? sc.runAsUser : undefined;
    const group = user === undefined ? undefined : (sc?.runAsGroup ?? 0);
    const fsGroup = asRoot ? sc?.fsGroup : undefined;
    const own = (path: string, mode: number): void => {
      if (!asRoot) {
        chmodSync(path, mode);
        return;
      }
      chownSync(path, 0, fsGroup ?? 0);
      chmodSync(path, fsGroup === undefined ? mode : mode | 0o440);
    };
    // The container's HOME: its own.
    if (user !== undefined) chownSync(dir, user, group ?? 0);
    // Volumes: Secret and ConfigMap contents as files; mount paths mapped into the temp dir.
    const mounts = new Map<string, string>();
    for (const v of spec.volumes ?? []) {
      const vdir = join(dir, 'volumes', v.name);
      mkdirSync(vdir, { recursive: true, mode: 0o755 });
      chmodSync(join(dir, 'volumes'), 0o755);
      if (asRoot) chownSync(vdir, 0, fsGroup ?? 0);
      const secretName = v.secret?.secretName;
      const cmName = v.configMap?.name;
      if (secretName) {
        const s = await this.mountSource(run, `Secret ${secretName}`, v.secret?.optional, () =>
          this.core.readNamespacedSecret({ name: secretName, namespace: this.o.namespace }),
        );
        for (const [k, b64] of Object.entries(s?.data ?? {})) {
          writeFileSync(join(vdir, k), Buffer.from(b64, 'base64'));
          own(join(vdir, k), v.secret?.defaultMode ?? 0o644);
        }
      } else if (cmName) {
        const cm = await this.mountSource(run, `ConfigMap ${cmName}`, v.configMap?.optional, () =>
          this.core.readNamespacedConfigMap({ name: cmName, namespace: this.o.namespace }),
        );
        for (const [k, text] of Object.entries(cm?.data ?? {})) {
          writeFileSync(join(vdir, k), text);
          own(join(vdir, k), v.configMap?.defaultMode ?? 0o644);
        }
      }
      for (const m of c.volumeMounts ?? []) if (m.name === v.name) mounts.set(m.mountPath, vdir);
    }
    const env: Record<string, string> = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: dir,
    };
    for (const e of c.env ?? []) env[e.name] = await this.envValue(pod, e);
    for (const [k, v] of Object.entries(env)) {
      for (const [mountPath, local] of mounts) {
        if (v === mountPath || v.startsWith(`${mountPath}/`))
          env[k] = local + v.slice(mountPath.length);
      }
    }
    if (spec.automountServiceAccountToken !== false && spec.serviceAccountName)
      env['KUBECONFIG'] = await this.serviceAccountKubeconfig(pod, dir);

    const [cmd = '', ...rest] = [...(c.command ?? []), ...(c.args ?? [])];
    const bin = cmd === 'node' ? process.execPath : cmd;
    const logPath = join(this.o.logDir, `pod-${run.name}.log`);
    const proc = spawn(bin, rest, {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(user === undefined ? {} : { uid: user, gid: group ?? 0 }),
    });
    run.proc = proc;
    run.phase = 'running';
    run.started = new Date().toISOString();
    this.started.push(run.name);
    const capture = (chunk: Buffer): void => {
      appendFileSync(logPath, chunk);
      run.log = Buffer.concat([run.log, chunk]).subarray(-16 * 1024);
    };
    proc.stdout.on('data', capture);
    proc.stderr.on('data', capture);
    this.say('started container process', { pod: run.name, pid: proc.pid, command: c.command });
    const exited = new Promise<number>((resolve) => {
      proc.once('exit', (code, signal) => {
        resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15));
      });
      proc.once('error', (err) => {
        capture(Buffer.from(`${String(err)}\n`));
        resolve(127);
      });
    });
    await this.patchStatus(run.name, {
      phase: 'Running',
      hostIP: '127.0.0.1',
      podIP: '127.0.0.1',
      startTime: run.started,
      conditions: conditions(true),
      containerStatuses: [
        {
          name: c.name,
          image: c.image ?? '',
          imageID: '',
          ready: true,
          started: true,
          restartCount: 0,
          state: { running: { startedAt: run.started } },
        },
      ],
    });
    const code = await exited;
    run.phase = 'done';
    const finishedAt = new Date().toISOString();
    const message =
      code !== 0 && c.terminationMessagePolicy === 'FallbackToLogsOnError'
        ? terminationTail(run.log)
        : undefined;
    this.say('container process exited', { pod: run.name, exitCode: code });
    await this.patchStatus(run.name, {
      phase: code === 0 ? 'Succeeded' : 'Failed',
      conditions: conditions(false),
      containerStatuses: [
        {
          name: c.name,
          image: c.image ?? '',
          imageID: '',
          ready: false,
          started: false,
          restartCount: 0,
          state: {
            terminated: {
              exitCode: code,
              reason: code === 0 ? 'Completed' : 'Error',
              ...(message !== undefined ? { message } : {}),
              startedAt: run.started,
              finishedAt,
            },
          },
        },
      ],
    }).catch((e: unknown) => {
      this.say('could not report the pod terminated', { pod: run.name, err: String(e) });
    });
    rmSync(dir, { recursive: true, force: true });
    if (run.deleting) await this.confirmDeleted(run.name);
  }

  /**
   * A volume's Secret or ConfigMap. Missing, it is waited for as a kubelet retries a failed mount
   * (MountVolume.SetUp failed ... not found), unless the volume is optional (then: no files).
   */
  private async mountSource<T>(
    run: PodRun,
    what: string,
    optional: boolean | undefined,
    read: () => Promise<T>,
  ): Promise<T | undefined> {
    for (let delay = 100, said = false; ; delay = Math.min(delay * 2, 2000)) {
      try {
        return await read();
      } catch (e) {
        if (apiCode(e) !== 404) throw e;
        if (optional === true) return undefined;
      }
      if (run.deleting || this.stopped)
        throw new Error(`the pod went away while its volume source ${what} was missing`);
      if (!said) {
        this.say('volume source not found; waiting for it', { pod: run.name, what });
        said = true;
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  private async envValue(pod: V1Pod, e: V1EnvVar): Promise<string> {
    if (e.value !== undefined) return e.value;
    const f = e.valueFrom;
    if (f?.fieldRef) {
      const fields: Record<string, string | undefined> = {
        'metadata.name': pod.metadata?.name,
        'metadata.namespace': pod.metadata?.namespace,
        'metadata.uid': pod.metadata?.uid,
        'spec.nodeName': STANDIN_NODE,
        'spec.serviceAccountName': pod.spec?.serviceAccountName,
        'status.hostIP': '127.0.0.1',
        'status.podIP': '127.0.0.1',
      };
      return fields[f.fieldRef.fieldPath] ?? '';
    }
    if (f?.secretKeyRef) {
      const s = await this.core.readNamespacedSecret({
        name: f.secretKeyRef.name ?? '',
        namespace: this.o.namespace,
      });
      const b64 = s.data?.[f.secretKeyRef.key];
      return b64 === undefined ? '' : Buffer.from(b64, 'base64').toString('utf8');
    }
    if (f?.configMapKeyRef) {
      const cm = await this.core.readNamespacedConfigMap({
        name: f.configMapKeyRef.name ?? '',
        namespace: this.o.namespace,
      });
      return cm.data?.[f.configMapKeyRef.key] ?? '';
    }
    return '';
  }

  /** The pod's ServiceAccount token (bound to the pod, as the kubelet projects it) as a kubeconfig. */
  private async serviceAccountKubeconfig(pod: V1Pod, dir: string): Promise<string> {
    const tr = await this.core.createNamespacedServiceAccountToken({
      name: pod.spec?.serviceAccountName ?? 'default',
      namespace: this.o.namespace,
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          audiences: [],
          expirationSeconds: 3600,
          boundObjectRef: {
            apiVersion: 'v1',
            kind: 'Pod',
            name: pod.metadata?.name ?? '',
            uid: pod.metadata?.uid ?? '',
          },
        },
      },
    });
    const cluster = this.kc.getCurrentCluster();
    const path = join(dir, 'serviceaccount.kubeconfig');
    writeFileSync(
      path,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          {
            name: 'c',
            cluster: {
              server: cluster?.server,
              'certificate-authority-data': cluster?.caData,
            },
          },
        ],
        users: [{ name: 'sa', user: { token: tr.status?.token } }],
        contexts: [{ name: 'c', context: { cluster: 'c', user: 'sa' } }],
        'current-context': 'c',
      }),
      { mode: 0o600 },
    );
    // A kubelet gives a projected token file (0600) to the pod's runAsUser.
    const sc = pod.spec?.securityContext;
    if (process.getuid?.() === 0 && sc?.runAsUser !== undefined)
      chownSync(path, sc.runAsUser, sc.runAsGroup ?? 0);
    return path;
  }

  /** The pod is being deleted: stop its process like a kubelet, then confirm the deletion. */
  private async kill(pod: V1Pod, run: PodRun | undefined): Promise<void> {
    const name = pod.metadata?.name ?? '';
    if (run?.deleting) return;
    if (run) run.deleting = true;
    const proc = run?.proc;
    if (run?.phase === 'running' && proc && proc.exitCode === null && proc.signalCode === null) {
      const grace = Math.min(pod.metadata?.deletionGracePeriodSeconds ?? 30, 10);
      this.say('pod deleted; stopping its process', { pod: name, graceSeconds: grace });
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), grace * 1000);
      proc.once('exit', () => {
        clearTimeout(t);
      });
      return; // startPod reports the termination and confirms the deletion
    }
    if (run && run.phase !== 'done') return; // still starting: startPod confirms when it ends
    await this.confirmDeleted(name);
  }

  private async confirmDeleted(name: string): Promise<void> {
    try {
      await this.core.deleteNamespacedPod({
        name,
        namespace: this.o.namespace,
        gracePeriodSeconds: 0,
      });
      this.say('confirmed pod deletion', { pod: name });
    } catch (e) {
      if (apiCode(e) !== 404)
        this.say('could not confirm pod deletion', { pod: name, err: String(e) });
    }
  }

  private async patchStatus(name: string, status: Record<string, unknown>): Promise<void> {
    await this.core.patchNamespacedPodStatus(
      { name, namespace: this.o.namespace, body: { status } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /** Stops watching and kills every process it started. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer?.stop();
    const waits: Promise<void>[] = [];
    for (const r of this.runs.values()) {
      const p = r.proc;
      if (p && p.exitCode === null && p.signalCode === null) {
        waits.push(
          new Promise((res) =>
            p.once('exit', () => {
              res();
            }),
          ),
        );
        p.kill('SIGKILL');
      }
    }
    await Promise.all(waits);
    for (const r of this.runs.values()) if (r.dir) rmSync(r.dir, { recursive: true, force: true });
    this.say('stopped');
  }
}

function conditions(ready: boolean): V1PodCondition[] {
  const now = new Date().toISOString();
  const c = (type: string, status: boolean, reason?: string): V1PodCondition => ({
    type,
    status: status ? 'True' : 'False',
    lastTransitionTime: new Date(now),
    ...(reason ? { reason } : {}),
  });
  return [
    c('PodScheduled', true),
    c('Initialized', true),
    c('ContainersReady', ready, ready ? undefined : 'PodCompleted'),
    c('Ready', ready, ready ? undefined : 'PodCompleted'),
  ];
}

/** The kubelet's FallbackToLogsOnError: the last 80 lines, at most 2048 bytes. */
function terminationTail(log: Buffer): string {
  const lines = log.toString('utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const tail = lines.slice(-TERMINATION_LINES).join('\n');
  const b = Buffer.from(tail, 'utf8');
  return b.length <= TERMINATION_BYTES ? tail : b.subarray(-TERMINATION_BYTES).toString('utf8');
}
