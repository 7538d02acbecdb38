/**
 * The `job` executor: each run is a batch/v1 Job in the operator's namespace, running the jig in
 * the operator image (operator/jig-runner.ts). The Job outlives the operator: a restarted leader
 * finds it by its deterministic name and keeps waiting instead of starting a second run.
 *
 * Per run the executor creates, all owned by the NodeRole (so deleting it cleans up):
 *  - a ServiceAccount and a ClusterRole + ClusterRoleBinding naming only this run's NodeRole,
 *    Role, Node (resourceNames), so the runner can update that one noderole's status and nothing
 *    else (NodeRoles are cluster-scoped, so a namespaced Role cannot grant this);
 *  - the Job (create-if-absent: AlreadyExists means this run already has its Job);
 *  - for a script run, the snapshot of its script: read at run start from the Role (inline, or the
 *    ConfigMap key it references), checked as the jig checks it, and put in an immutable
 *    ConfigMap owned by the Job that the pod mounts (create-if-absent too). Bad input (a missing
 *    ConfigMap or key, an empty or oversized script) fails the run before any Job is made;
 *  - for a script run whose input has `secretRef`s, the run's own Secret: the values read at run
 *    start from the Secrets the references name (in the operator's namespace, by name, as the
 *    inline jig reads them), owned by the Job, mounted by the pod for the runner alone. A missing
 *    Secret or key fails the run, worded as inline, before any Job is made.
 * The RBAC objects are removed when the run ends; the Job (and its snapshot) stays for
 * ttlSecondsAfterFinished so its pod can be inspected. The result travels as job-spec.ts
 * describes.
 */
import {
  BatchV1Api,
  CoreV1Api,
  makeInformer,
  RbacAuthorizationV1Api,
  type Informer,
  type KubeConfig,
  type ObjectCache,
  type V1Job,
  type V1OwnerReference,
} from '@kubernetes/client-node';
import type { OperatorConfig } from '../config.ts';
import type { ExecRequest, Executor } from '../controllers/annealer/executor.ts';
import {
  loadRoleScript,
  parseSecretRef,
  readSecretRefs,
  scriptProblem,
} from '../jigs/script/wiring.ts';
import type { JigResult } from '../jigs/types.ts';
import { CrowbarClient } from '../kube/client.ts';
import { apiCode, apiMessage, isNotFound } from '../kube/errors.ts';
import type { Logger } from '../log.ts';
import {
  JOB_SELECTOR,
  LABEL_MANAGED_BY,
  MANAGED_BY,
  buildJob,
  buildRunSecret,
  buildScriptSnapshot,
  failureOf,
  jobName,
  jobState,
  mountsRunSecret,
  mountsScriptSnapshot,
  reportOf,
  runnerRbacName,
  runnerRules,
  runSecretName,
  scriptSnapshotName,
  scriptSource,
} from './job-spec.ts';

export interface JobExecutorOptions {
  kc: KubeConfig;
  /** Where Jobs (and their ServiceAccounts) are created: the operator's namespace. */
  namespace: string;
  /** The operator image; the runner is its `node operator/jig-runner.ts`. */
  image: string;
  /** Where the Secrets that `secretRef`s name live: the operator's namespace. */
  secretNamespace: string;
  /** Secret in `namespace` with root's SSH key, mounted into script runs. */
  sshKeySecret?: string | undefined;
  /** How long a finished Job is kept (default 1 h). Longer than any operator outage to ride out. */
  ttlSecondsAfterFinished?: number;
  /** Env passed to every runner (e.g. LOG_LEVEL). */
  runnerEnv?: Record<string, string>;
  /** Safety-net poll of a Job in case a watch event is missed (default 10 s). */
  pollMs?: number;
  fieldManager: string;
  log: Logger;
}

type Ended = { job: V1Job } | { deleted: true };

interface Waiter {
  check(job: V1Job | undefined): void;
}

export class JobExecutor implements Executor {
  readonly name = 'job' as const;
  private readonly o: JobExecutorOptions;
  private readonly log: Logger;
  private readonly batch: BatchV1Api;
  private readonly core: CoreV1Api;
  private readonly rbac: RbacAuthorizationV1Api;
  private readonly client: CrowbarClient;
  private readonly waiters = new Map<string, Set<Waiter>>();
  private informer: (Informer<V1Job> & ObjectCache<V1Job>) | undefined;
  private restarts = 0;
  private stopped = false;
  private detached = false;

  constructor(o: JobExecutorOptions) {
    this.o = o;
    this.log = o.log.child({ executor: 'job', namespace: o.namespace });
    this.batch = o.kc.makeApiClient(BatchV1Api);
    this.core = o.kc.makeApiClient(CoreV1Api);
    this.rbac = o.kc.makeApiClient(RbacAuthorizationV1Api);
    this.client = new CrowbarClient(o.kc);
  }

  execute(req: ExecRequest): Promise<JigResult> {
    return this.run(req, false);
  }

  /** Re-attaches to the run's Job; creates it only if the run never got one (see run()). */
  resume(req: ExecRequest): Promise<JigResult> {
    return this.run(req, true);
  }

  /**
   * The operator is stopping: from now on a cancelled run leaves its Job (and the runner's
   * access) in place, because a Job outlives its operator and the next leader re-attaches to it
   * (the same run number gives the same Job name). Call before cancelling the runs in flight.
   */
  detach(): void {
    this.detached = true;
  }

  async stop(): Promise<void> {
    this.detached = true;
    this.stopped = true;
    await this.informer?.stop();
  }

  private async run(req: ExecRequest, resuming: boolean): Promise<JigResult> {
    req.signal.throwIfAborted();
    const name = jobName(req.id);
    const log = this.log.child({
      noderole: req.noderole.metadata.name,
      run: req.number,
      job: name,
    });
    this.ensureInformer();
    try {
      const job = resuming ? await this.readJob(name) : undefined;
      if (resuming && job) {
        log.info('re-adopting the run Job left by a previous leader');
        const refused =
          (await this.ensureSnapshot(req, job, log)) ?? (await this.ensureRunSecret(req, job, log));
        if (refused) return refused;
      } else {
        if (resuming) {
          // No Job: either it finished and was cleaned up (its runner's report is on the
          // NodeRole), or the previous leader died between recording the run and creating it.
          const report = reportOf(await this.client.get('NodeRole', nrName(req)), req.id);
          if (report) return report;
          if ((req.role.spec.flags ?? []).includes('destructive')) {
            return {
              ok: false,
              message: `destructive run ${req.number}: its Job ${name} is gone and left no result after an operator restart; check the node, then retry`,
            };
          }
          log.info('the run had no Job after an operator restart; creating it');
        }
        const script = await this.runScript(req);
        if (typeof script === 'object') return script;
        const secrets = await this.runSecrets(req);
        if ('error' in secrets) return { ok: false, message: secrets.error };
        await this.createJob(req, name, script, secrets.values, log);
      }
      const ended = await this.waitForEnd(name, req.signal);
      return await this.result(req, name, ended);
    } catch (e) {
      if (req.signal.aborted) {
        if (this.detached) log.info('operator stopping; leaving the run Job to the next leader');
        else await this.deleteJob(name, log, 'a cancelled run');
        throw req.signal.reason as Error;
      }
      throw e;
    } finally {
      if (!this.detached) await this.removeRunnerAccess(name, log);
    }
  }

  private async result(req: ExecRequest, name: string, ended: Ended): Promise<JigResult> {
    const report = reportOf(await this.client.get('NodeRole', nrName(req)), req.id);
    if (report) return report;
    if ('deleted' in ended) {
      return {
        ok: false,
        message: `Job ${name} was deleted before its runner reported a result`,
      };
    }
    const term = await this.podTermination(name);
    return failureOf(ended.job, jobState(ended.job), term?.message, term?.exitCode);
  }

  /**
   * The script a script run takes with it, read now (this is the moment the snapshot captures);
   * a failed result saying what to fix when it cannot run; undefined for other jigs.
   */
  private async runScript(req: ExecRequest): Promise<string | JigResult | undefined> {
    if (req.role.spec.jig !== 'script') return undefined;
    const role = req.role.metadata.name ?? '';
    let script: string;
    try {
      script = await loadRoleScript(this.core, req.role);
    } catch (e) {
      // Worded as the inline executor's jig words it.
      return { ok: false, message: `cannot load the script of role ${role}: ${apiMessage(e)}` };
    }
    const problem = scriptProblem(role, script);
    return problem === undefined ? script : { ok: false, message: problem };
  }

  /**
   * The values of a script run's secretRefs (none for other jigs: only the script jig resolves
   * them, as inline), or the error that fails the run. Values are never logged.
   */
  private async runSecrets(
    req: ExecRequest,
  ): Promise<{ values: ReadonlyMap<string, string> } | { error: string }> {
    if (req.role.spec.jig !== 'script') return { values: new Map() };
    return readSecretRefs(this.core, this.o.secretNamespace, req.input);
  }

  /**
   * The Job, then its script snapshot (script runs) and its own Secret (runs with secretRefs):
   * both are owned by the Job, so they cannot exist first, and its pod waits for their volumes.
   * One that cannot be made takes the Job with it, so that no pod is left waiting for a volume
   * that will not come.
   */
  private async createJob(
    req: ExecRequest,
    name: string,
    script: string | undefined,
    secrets: ReadonlyMap<string, string>,
    log: Logger,
  ): Promise<V1Job> {
    await this.grantRunnerAccess(req, name);
    const job = await this.createJobObject(req, name, script !== undefined, secrets.size > 0, log);
    try {
      if (script !== undefined && mountsScriptSnapshot(job))
        await this.createSnapshot(req, job, script, log);
      if (secrets.size > 0 && mountsRunSecret(job)) await this.createRunSecret(job, secrets, log);
    } catch (e) {
      await this.deleteJob(name, log, 'its script snapshot or run Secret could not be made');
      throw e;
    }
    return job;
  }

  /**
   * A re-adopted running Job whose pod mounts a run Secret that does not exist (the previous
   * leader died between creating the two): the values are read now (the pod cannot start before
   * the Secret exists). A failed result (the Job deleted) when they cannot be read.
   */
  private async ensureRunSecret(
    req: ExecRequest,
    job: V1Job,
    log: Logger,
  ): Promise<JigResult | undefined> {
    if (!mountsRunSecret(job) || jobState(job).kind !== 'running') return undefined;
    const name = job.metadata?.name ?? '';
    const secret = runSecretName(name);
    try {
      await this.core.readNamespacedSecret({ name: secret, namespace: this.o.namespace });
      return undefined;
    } catch (e) {
      if (!isNotFound(e))
        throw new Error(`cannot read the run Secret ${secret}: ${apiMessage(e)}`, { cause: e });
    }
    log.info('the re-adopted run Job has no run Secret yet; making it now');
    const secrets = await this.runSecrets(req);
    if ('error' in secrets || secrets.values.size === 0) {
      await this.deleteJob(name, log, 'its run Secret could not be made');
      return {
        ok: false,
        message:
          'error' in secrets
            ? secrets.error
            : `run ${req.number}'s Job ${name} mounts a run Secret, but the run input has no secretRef`,
      };
    }
    try {
      await this.createRunSecret(job, secrets.values, log);
    } catch (e) {
      await this.deleteJob(name, log, 'its run Secret could not be made');
      throw e;
    }
    return undefined;
  }

  /** Creates the run's own Secret; one that already exists is this run's and is kept. */
  private async createRunSecret(
    job: V1Job,
    values: ReadonlyMap<string, string>,
    log: Logger,
  ): Promise<void> {
    const body = buildRunSecret(job, values);
    const secret = body.metadata?.name ?? '';
    try {
      await this.core.createNamespacedSecret({
        namespace: this.o.namespace,
        body,
        fieldManager: this.o.fieldManager,
      });
      // The count, never the values.
      log.info({ secret, refs: values.size }, 'made the run Secret of its secretRefs');
    } catch (e) {
      if (apiCode(e) !== 409)
        throw new Error(`cannot create the run Secret ${secret}: ${apiMessage(e)}`, { cause: e });
    }
  }

  /**
   * A re-adopted Job whose pod mounts a snapshot that does not exist: the previous leader died
   * between creating the two. The script is read now (the run has not started: its pod cannot
   * until the snapshot exists). Returns a failed result (the Job deleted) when it cannot run.
   */
  private async ensureSnapshot(
    req: ExecRequest,
    job: V1Job,
    log: Logger,
  ): Promise<JigResult | undefined> {
    // A finished Job needs nothing more; a running one waits for its snapshot to be mounted.
    if (!mountsScriptSnapshot(job) || jobState(job).kind !== 'running') return undefined;
    const name = job.metadata?.name ?? '';
    const snap = scriptSnapshotName(name);
    try {
      await this.core.readNamespacedConfigMap({ name: snap, namespace: this.o.namespace });
      return undefined;
    } catch (e) {
      if (!isNotFound(e))
        throw new Error(`cannot read the script snapshot ConfigMap ${snap}: ${apiMessage(e)}`, {
          cause: e,
        });
    }
    log.info('the re-adopted run Job has no script snapshot yet; taking it now');
    const script = await this.runScript(req);
    if (typeof script !== 'string') {
      await this.deleteJob(name, log, 'its script snapshot could not be made');
      return (
        script ?? {
          ok: false,
          message: `role ${req.role.metadata.name ?? ''} no longer uses the script jig, and run ${req.number}'s Job ${name} has no script snapshot`,
        }
      );
    }
    try {
      await this.createSnapshot(req, job, script, log);
    } catch (e) {
      await this.deleteJob(name, log, 'its script snapshot could not be made');
      throw e;
    }
    return undefined;
  }

  /** Creates the run's script snapshot; one that already exists is this run's and is kept. */
  private async createSnapshot(
    req: ExecRequest,
    job: V1Job,
    script: string,
    log: Logger,
  ): Promise<void> {
    const body = buildScriptSnapshot(job, script, scriptSource(req.role));
    const snap = body.metadata?.name ?? '';
    try {
      await this.core.createNamespacedConfigMap({
        namespace: this.o.namespace,
        body,
        fieldManager: this.o.fieldManager,
      });
      log.info(
        { snapshot: snap, source: scriptSource(req.role), bytes: Buffer.byteLength(script) },
        'took the script snapshot of the run',
      );
    } catch (e) {
      if (apiCode(e) !== 409)
        throw new Error(`cannot create the script snapshot ConfigMap ${snap}: ${apiMessage(e)}`, {
          cause: e,
        });
    }
  }

  private async createJobObject(
    req: ExecRequest,
    name: string,
    scriptSnapshot: boolean,
    runSecret: boolean,
    log: Logger,
  ): Promise<V1Job> {
    const body = buildJob({
      id: req.id,
      number: req.number,
      noderole: req.noderole,
      role: req.role,
      namespace: this.o.namespace,
      image: this.o.image,
      sshKeySecret: req.role.spec.jig === 'script' ? this.o.sshKeySecret : undefined,
      scriptSnapshot,
      runSecret,
      ttlSecondsAfterFinished: this.o.ttlSecondsAfterFinished ?? 3600,
      ...(this.o.runnerEnv ? { env: this.o.runnerEnv } : {}),
    });
    try {
      const job = await this.batch.createNamespacedJob({
        namespace: this.o.namespace,
        body,
        fieldManager: this.o.fieldManager,
      });
      log.info('created the run Job');
      return job;
    } catch (e) {
      if (apiCode(e) !== 409)
        throw new Error(`cannot create Job ${name}: ${apiMessage(e)}`, { cause: e });
      // AlreadyExists: this run already has its Job (create-if-absent); wait on that one.
      const job = await this.readJob(name);
      if (!job) throw new Error(`Job ${name} exists but cannot be read`, { cause: e });
      return job;
    }
  }

  private async readJob(name: string): Promise<V1Job | undefined> {
    try {
      return await this.batch.readNamespacedJob({ name, namespace: this.o.namespace });
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw new Error(`cannot read Job ${name}: ${apiMessage(e)}`, { cause: e });
    }
  }

  private async deleteJob(name: string, log: Logger, why: string): Promise<void> {
    try {
      await this.batch.deleteNamespacedJob({
        name,
        namespace: this.o.namespace,
        propagationPolicy: 'Background',
      });
      log.info({ why }, 'deleted the run Job');
    } catch (e) {
      if (!isNotFound(e)) log.warn({ err: apiMessage(e), why }, 'could not delete the run Job');
    }
  }

  private ownerRef(req: ExecRequest): V1OwnerReference {
    return {
      apiVersion: req.noderole.apiVersion,
      kind: req.noderole.kind,
      name: nrName(req),
      uid: req.noderole.metadata.uid ?? '',
    };
  }

  /** The runner's ServiceAccount and its per-run ClusterRole(Binding); existing ones are kept. */
  private async grantRunnerAccess(req: ExecRequest, name: string): Promise<void> {
    const ns = this.o.namespace;
    const rbacName = runnerRbacName(ns, name);
    const metadata = (n: string, namespace?: string) => ({
      name: n,
      ...(namespace ? { namespace } : {}),
      labels: { [LABEL_MANAGED_BY]: MANAGED_BY },
      ownerReferences: [this.ownerRef(req)],
    });
    const ignoreExists = async (what: string, f: () => Promise<unknown>): Promise<void> => {
      try {
        await f();
      } catch (e) {
        if (apiCode(e) !== 409)
          throw new Error(`cannot create the runner's ${what}: ${apiMessage(e)}`, { cause: e });
      }
    };
    await ignoreExists(`ServiceAccount ${name}`, () =>
      this.core.createNamespacedServiceAccount({
        namespace: ns,
        body: { metadata: metadata(name, ns), automountServiceAccountToken: true },
      }),
    );
    await ignoreExists(`ClusterRole ${rbacName}`, () =>
      this.rbac.createClusterRole({
        body: {
          metadata: metadata(rbacName),
          rules: runnerRules({
            noderole: nrName(req),
            role: req.role.metadata.name ?? '',
            node: req.node.metadata.name ?? '',
            networks: (req.node.status?.addresses ?? []).map((a) => a.network),
            script: req.role.spec.jig === 'script',
          }),
        },
      }),
    );
    await ignoreExists(`ClusterRoleBinding ${rbacName}`, () =>
      this.rbac.createClusterRoleBinding({
        body: {
          metadata: metadata(rbacName),
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: rbacName },
          subjects: [{ kind: 'ServiceAccount', name, namespace: ns }],
        },
      }),
    );
  }

  /** Removes the runner's access once its run has ended (or been cancelled). Best effort. */
  private async removeRunnerAccess(name: string, log: Logger): Promise<void> {
    const ns = this.o.namespace;
    const rbacName = runnerRbacName(ns, name);
    const del = async (what: string, f: () => Promise<unknown>): Promise<void> => {
      try {
        await f();
      } catch (e) {
        // Left behind, it is still removed with its NodeRole (owner reference).
        if (!isNotFound(e))
          log.warn({ err: apiMessage(e), what }, 'could not remove runner access');
      }
    };
    await del('ClusterRoleBinding', () => this.rbac.deleteClusterRoleBinding({ name: rbacName }));
    await del('ClusterRole', () => this.rbac.deleteClusterRole({ name: rbacName }));
    await del('ServiceAccount', () =>
      this.core.deleteNamespacedServiceAccount({ name, namespace: ns }),
    );
  }

  /** The terminated state of the Job's pod (its termination message and exit code), if any. */
  private async podTermination(
    job: string,
  ): Promise<{ message?: string; exitCode?: number } | undefined> {
    try {
      const pods = await this.core.listNamespacedPod({
        namespace: this.o.namespace,
        labelSelector: `batch.kubernetes.io/job-name=${job}`,
      });
      for (const p of pods.items) {
        const t = p.status?.containerStatuses?.[0]?.state?.terminated;
        if (t)
          return {
            ...(t.message !== undefined ? { message: t.message } : {}),
            exitCode: t.exitCode,
          };
      }
    } catch (e) {
      this.log.debug({ err: apiMessage(e), job }, 'could not read the pods of a Job');
    }
    return undefined;
  }

  /** Resolves when the Job is Complete or Failed, or is gone; rejects when `signal` aborts. */
  private waitForEnd(name: string, signal: AbortSignal): Promise<Ended> {
    return new Promise<Ended>((resolve, reject) => {
      let done = false;
      const finish = (v: Ended | Error): void => {
        if (done) return;
        done = true;
        clearInterval(poll);
        signal.removeEventListener('abort', onAbort);
        const set = this.waiters.get(name);
        set?.delete(w);
        if (set?.size === 0) this.waiters.delete(name);
        if (v instanceof Error) reject(v);
        else resolve(v);
      };
      const w: Waiter = {
        check: (job) => {
          if (!job) finish({ deleted: true });
          else if (jobState(job).kind !== 'running') finish({ job });
        },
      };
      const refresh = (): void => {
        this.readJob(name).then(
          (job) => {
            w.check(job);
          },
          (e: unknown) => {
            this.log.debug({ err: e, job: name }, 'poll of a run Job failed; will retry');
          },
        );
      };
      const onAbort = (): void => {
        finish(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
      };
      const set = this.waiters.get(name) ?? new Set<Waiter>();
      set.add(w);
      this.waiters.set(name, set);
      signal.addEventListener('abort', onAbort, { once: true });
      const poll = setInterval(refresh, this.o.pollMs ?? 10_000);
      refresh();
    });
  }

  /** One watch over this executor's Jobs feeds every waiter; it restarts with backoff on errors. */
  private ensureInformer(): void {
    if (this.informer || this.stopped) return;
    const ns = this.o.namespace;
    const inf = makeInformer<V1Job>(
      this.o.kc,
      `/apis/batch/v1/namespaces/${ns}/jobs`,
      () => this.batch.listNamespacedJob({ namespace: ns, labelSelector: JOB_SELECTOR }),
      JOB_SELECTOR,
    );
    const notify = (job: V1Job, gone = false): void => {
      const set = this.waiters.get(job.metadata?.name ?? '');
      if (set) for (const w of [...set]) w.check(gone ? undefined : job);
    };
    inf.on('add', (j) => {
      notify(j);
    });
    inf.on('update', (j) => {
      notify(j);
    });
    inf.on('delete', (j) => {
      notify(j, true);
    });
    inf.on('error', (err: unknown) => {
      if (this.stopped) return;
      const delay = Math.min(30_000, 200 * 2 ** Math.min(this.restarts++, 8));
      this.log.warn({ err, delayMs: delay }, 'Job watch failed; restarting');
      setTimeout(() => {
        inf.start().catch((e: unknown) => {
          this.log.error({ err: e }, 'Job watch restart failed');
        });
      }, delay).unref();
    });
    inf.on('connect', () => {
      this.restarts = 0;
    });
    this.informer = inf;
    inf.start().catch((e: unknown) => {
      this.log.error({ err: e }, 'Job watch failed to start');
    });
  }
}

const nrName = (req: ExecRequest): string => req.noderole.metadata.name ?? '';

/**
 * The job executor from the operator's flags. The SSH key Secret is mounted into run pods, so it
 * must live in the Job namespace (a pod can only mount Secrets of its own namespace).
 */
export function jobExecutorFromConfig(
  kc: KubeConfig,
  config: Pick<
    OperatorConfig,
    'jobNamespace' | 'jobImage' | 'jobTtlSeconds' | 'sshKeySecret' | 'sshKeyFile' | 'leaseNamespace'
  >,
  fieldManager: string,
  log: Logger,
): JobExecutor {
  if (config.jobImage === undefined)
    throw new Error('--executor=job needs --job-image=<the operator image>');
  if (config.sshKeyFile !== undefined)
    throw new Error(
      '--ssh-key-file does not reach run Jobs: with --executor=job put the key in a Secret and pass --ssh-key-secret',
    );
  let sshKeySecret: string | undefined;
  if (config.sshKeySecret !== undefined) {
    const ref = parseSecretRef(config.sshKeySecret, config.jobNamespace);
    if (ref.namespace !== config.jobNamespace)
      throw new Error(
        `--ssh-key-secret ${ref.namespace}/${ref.name} must be in the Job namespace ${config.jobNamespace}: run pods mount it`,
      );
    sshKeySecret = ref.name;
  }
  return new JobExecutor({
    kc,
    namespace: config.jobNamespace,
    // As the inline script jig (operator/controllers/aliveness/setup.ts).
    secretNamespace: config.leaseNamespace,
    image: config.jobImage,
    sshKeySecret,
    ttlSecondsAfterFinished: config.jobTtlSeconds,
    runnerEnv: { LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'info' },
    fieldManager,
    log,
  });
}
