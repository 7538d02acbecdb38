/**
 * The pure half of the job executor: names, the Job manifest, the per-run RBAC of the runner, and
 * how a finished Job (plus what its runner wrote on the NodeRole) maps to a JigResult. No I/O.
 *
 * Where a run's result travels: the runner (operator/jig-runner.ts) writes it on the NodeRole's
 * status under its own field manager before it exits: `status.run.{result, exitCode, logTail,
 * finished}`, `status.message` (what the jig said) and, on success, `status.wall`. It writes only
 * while `status.run.id` is its own run id, so a stale runner can never report into a newer run.
 * The operator then records the state change as it does for inline runs. A Job that fails without
 * a report (deadline, crash, killed) is judged from the Job's conditions and the pod's
 * termination message.
 *
 * Where a script run's script travels: the operator reads it at run start (the Role's inline
 * script or the ConfigMap key it references) and snapshots it into an immutable ConfigMap named
 * after the Job ({@link scriptSnapshotName}), owned by the Job so it goes when the Job goes. The
 * pod mounts it and the runner reads the script from that file ({@link ENV}.scriptFile), so a run
 * executes the script as it was when it started, whatever happens to the source meanwhile.
 *
 * Where a run's secret values travel (its input's `secretRef`s, operator/jigs/secret-refs.ts):
 * the operator reads the referenced Secrets at run start and puts the values in a Secret of the
 * run's own ({@link runSecretName}), owned by the Job; the pod mounts it readable by the runner
 * only, and the runner substitutes them into the input and redacts them from its result. The Job
 * spec names the Secret, never a value; status.run.input keeps the references.
 */
import { createHash } from 'node:crypto';
import type {
  V1ConfigMap,
  V1Job,
  V1ObjectMeta,
  V1PolicyRule,
  V1Secret,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import type { NodeRole, Role } from '../../generated/crowbar.ts';
import type { JigResult } from '../jigs/types.ts';

export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'crowbar-operator';
export const LABEL_NODEROLE = 'crowbar.dev/noderole';
export const LABEL_RUN = 'crowbar.dev/run';
export const ANNOTATION_NODEROLE = 'crowbar.dev/noderole';
export const ANNOTATION_RUN_ID = 'crowbar.dev/run-id';
/** On a script snapshot: where its script was read from (see {@link scriptSource}). */
export const ANNOTATION_SCRIPT_SOURCE = 'crowbar.dev/script-source';
/** Label selector of every Job the executor creates. */
export const JOB_SELECTOR = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;

/** The field manager the runner writes the NodeRole's status with. */
export const RUNNER_FIELD_MANAGER = 'crowbar-jig-runner';

/** Where the SSH key Secret is mounted in the runner's container (all its keys, as files). */
export const SSH_KEY_DIR = '/var/run/crowbar/ssh';

/** Where a script run's snapshot ConfigMap is mounted, and the key (file) holding the script. */
export const SCRIPT_DIR = '/var/run/crowbar/script';
export const SCRIPT_KEY = 'script';
/** The pod volume of the script snapshot. */
const SCRIPT_VOLUME = 'script';

/** Where a run's own Secret (its secretRef values) is mounted, and the key (file) holding them. */
export const RUN_SECRET_DIR = '/var/run/crowbar/secrets';
export const RUN_SECRET_KEY = 'values.json';
/** The pod volume of the run's own Secret. */
const RUN_SECRET_VOLUME = 'run-secrets';

/** The runner's environment: which run it is. */
export const ENV = {
  noderole: 'CROWBAR_NODEROLE',
  runId: 'CROWBAR_RUN_ID',
  run: 'CROWBAR_RUN',
  sshKeyDir: 'CROWBAR_SSH_KEY_DIR',
  /** The mounted script snapshot; set only on script runs. */
  scriptFile: 'CROWBAR_SCRIPT_FILE',
  /** The mounted values of the run input's secretRefs; set only when it has some. */
  secretsFile: 'CROWBAR_SECRETS_FILE',
  podName: 'POD_NAME',
  podNamespace: 'POD_NAMESPACE',
} as const;

/** The runner's uid and gid (and the pod's fsGroup, which owns its mounted key). */
export const RUNNER_UID = 65532;
/** The key file's mode: owner root, group {@link RUNNER_UID} (fsGroup) may read, others not. */
export const RUNNER_KEY_MODE = 0o440;

/** The runner's command in the operator image (WORKDIR /app, see the Dockerfile). */
export const RUNNER_COMMAND = ['node', 'operator/jig-runner.ts'];

const MAX_NAME = 63;

const hash = (s: string, n = 8): string => createHash('sha256').update(s).digest('hex').slice(0, n);

/** Lower-case DNS-1123 label characters only, no leading/trailing/double dashes. */
function sanitize(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '');
}

/**
 * The Job name of a run id (`<noderole>.run-<n>`): a DNS-1123 label of at most 63 characters
 * (Job names become pod labels), readable (the noderole's start and the run number) and unique
 * (a short hash of the whole id, since truncation and sanitizing can make two ids look alike).
 */
export function jobName(id: string): string {
  const m = /^(.*)\.run-(\d+)$/.exec(id);
  const base = sanitize(m?.[1] ?? id);
  const suffix = `${m?.[2] !== undefined ? `-r${m[2]}` : ''}-${hash(id)}`;
  const head = base.slice(0, MAX_NAME - suffix.length).replace(/-+$/, '');
  return `${head === '' ? 'run' : head}${suffix}`;
}

/** A label value (≤ 63, alphanumeric at both ends) for any string; long ones end in a hash. */
export function labelValue(s: string): string {
  const clean = s.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  if (clean.length <= MAX_NAME && clean === s) return clean;
  const suffix = `-${hash(s)}`;
  return `${clean.slice(0, MAX_NAME - suffix.length).replace(/[^A-Za-z0-9]+$/, '')}${suffix}`;
}

/** Name of the per-run ClusterRole and ClusterRoleBinding (cluster-wide, so the namespace too). */
export function runnerRbacName(namespace: string, job: string): string {
  return `crowbar-jig-runner:${namespace}:${job}`;
}

export interface JobInputs {
  id: string;
  number: number;
  noderole: Readonly<NodeRole>;
  role: Readonly<Role>;
  namespace: string;
  image: string;
  /** Secret in `namespace` holding root's SSH key (mounted read-only); none when undefined. */
  sshKeySecret?: string | undefined;
  /** Mount the run's script snapshot ({@link buildScriptSnapshot}): script runs only. */
  scriptSnapshot?: boolean;
  /** Mount the run's own Secret ({@link buildRunSecret}): runs whose input has secretRefs. */
  runSecret?: boolean;
  ttlSecondsAfterFinished: number;
  /** Extra env for the runner (e.g. LOG_LEVEL). */
  env?: Record<string, string>;
}

/** The role's timeout: the Job's activeDeadlineSeconds. */
export function deadlineSeconds(role: Readonly<Role>): number {
  return role.spec.timeoutSeconds ?? 3600;
}

/** The name of a run's script snapshot ConfigMap: its Job's, with a suffix. */
export function scriptSnapshotName(job: string): string {
  return `${job}-script`;
}

/** The name of a run's own Secret (the values of its secretRefs): its Job's, with a suffix. */
export function runSecretName(job: string): string {
  return `${job}-secrets`;
}

/**
 * The batch/v1 Job of one run. The ServiceAccount of the same name is made for it alone. A script
 * run mounts its snapshot ConfigMap, made right after the Job (it is owned by the Job, so it
 * cannot exist first); until it exists the kubelet holds the pod in ContainerCreating and retries
 * the mount, as it does for any missing ConfigMap volume.
 */
export function buildJob(o: JobInputs): V1Job {
  const name = jobName(o.id);
  const nrName = o.noderole.metadata.name ?? '';
  const labels = {
    [LABEL_MANAGED_BY]: MANAGED_BY,
    [LABEL_NODEROLE]: labelValue(nrName),
    [LABEL_RUN]: String(o.number),
  };
  const annotations = { [ANNOTATION_NODEROLE]: nrName, [ANNOTATION_RUN_ID]: o.id };
  const fieldEnv = (n: string, fieldPath: string) => ({
    name: n,
    valueFrom: { fieldRef: { fieldPath } },
  });
  const volumes: { volume: V1Volume; mount: V1VolumeMount }[] = [
    ...(o.sshKeySecret === undefined
      ? []
      : [
          {
            // The kubelet writes Secret files as root; the runner is uid 65532. With fsGroup the
            // kubelet gives the files that group, and 0440 lets the group (only) read the key.
            volume: {
              name: 'ssh-key',
              secret: { secretName: o.sshKeySecret, defaultMode: RUNNER_KEY_MODE },
            },
            mount: { name: 'ssh-key', mountPath: SSH_KEY_DIR, readOnly: true },
          },
        ]),
    ...(o.scriptSnapshot === true
      ? [
          {
            volume: {
              name: SCRIPT_VOLUME,
              configMap: { name: scriptSnapshotName(name), optional: false, defaultMode: 0o444 },
            },
            mount: { name: SCRIPT_VOLUME, mountPath: SCRIPT_DIR, readOnly: true },
          },
        ]
      : []),
    ...(o.runSecret === true
      ? [
          {
            // As the SSH key: group-readable for the runner's fsGroup, nobody else.
            volume: {
              name: RUN_SECRET_VOLUME,
              secret: {
                secretName: runSecretName(name),
                optional: false,
                defaultMode: RUNNER_KEY_MODE,
              },
            },
            mount: { name: RUN_SECRET_VOLUME, mountPath: RUN_SECRET_DIR, readOnly: true },
          },
        ]
      : []),
  ];
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name,
      namespace: o.namespace,
      labels,
      annotations,
      // A cluster-scoped owner of a namespaced object is allowed: deleting the NodeRole
      // garbage-collects its Jobs.
      ownerReferences: [
        {
          apiVersion: o.noderole.apiVersion,
          kind: o.noderole.kind,
          name: nrName,
          uid: o.noderole.metadata.uid ?? '',
          controller: true,
        },
      ],
    },
    spec: {
      // A run is attempted once; the annealer's retry is the way to run it again.
      backoffLimit: 0,
      activeDeadlineSeconds: deadlineSeconds(o.role),
      ttlSecondsAfterFinished: o.ttlSecondsAfterFinished,
      template: {
        metadata: { labels, annotations },
        spec: {
          restartPolicy: 'Never',
          serviceAccountName: name,
          automountServiceAccountToken: true,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: RUNNER_UID,
            runAsGroup: RUNNER_UID,
            fsGroup: RUNNER_UID,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: 'jig',
              image: o.image,
              command: RUNNER_COMMAND,
              env: [
                { name: ENV.noderole, value: nrName },
                { name: ENV.runId, value: o.id },
                { name: ENV.run, value: String(o.number) },
                ...(o.sshKeySecret === undefined
                  ? []
                  : [{ name: ENV.sshKeyDir, value: SSH_KEY_DIR }]),
                ...(o.scriptSnapshot === true
                  ? [{ name: ENV.scriptFile, value: `${SCRIPT_DIR}/${SCRIPT_KEY}` }]
                  : []),
                ...(o.runSecret === true
                  ? [{ name: ENV.secretsFile, value: `${RUN_SECRET_DIR}/${RUN_SECRET_KEY}` }]
                  : []),
                fieldEnv(ENV.podName, 'metadata.name'),
                fieldEnv(ENV.podNamespace, 'metadata.namespace'),
                ...Object.entries(o.env ?? {}).map(([n, value]) => ({ name: n, value })),
              ],
              // A runner that dies before reporting leaves its last log lines here.
              terminationMessagePolicy: 'FallbackToLogsOnError',
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
              resources: { requests: { cpu: '50m', memory: '128Mi' }, limits: { memory: '512Mi' } },
              ...(volumes.length === 0 ? {} : { volumeMounts: volumes.map((v) => v.mount) }),
            },
          ],
          ...(volumes.length === 0 ? {} : { volumes: volumes.map((v) => v.volume) }),
        },
      },
    },
  };
}

/** Where a role's script comes from, as a snapshot records it: `inline` or `configmap <ns>/<name>#<key>`. */
export function scriptSource(role: Readonly<Role>): string {
  const s = role.spec.script;
  if (s?.inline !== undefined && s.inline !== '') return 'inline';
  const ref = s?.configMapRef;
  return ref ? `configmap ${ref.namespace}/${ref.name}#${ref.key}` : 'none';
}

/** Whether a Job's pod mounts a script snapshot (Jobs of script runs do). */
export function mountsScriptSnapshot(job: Readonly<V1Job>): boolean {
  const name = job.metadata?.name ?? '';
  return (job.spec?.template.spec?.volumes ?? []).some(
    (v) => v.name === SCRIPT_VOLUME && v.configMap?.name === scriptSnapshotName(name),
  );
}

/** Whether a Job's pod mounts its run's own Secret (Jobs of runs with secretRefs do). */
export function mountsRunSecret(job: Readonly<V1Job>): boolean {
  const name = job.metadata?.name ?? '';
  return (job.spec?.template.spec?.volumes ?? []).some(
    (v) => v.name === RUN_SECRET_VOLUME && v.secret?.secretName === runSecretName(name),
  );
}

/** One resolved secretRef as the run Secret's file lists it. */
interface SecretValue {
  name: string;
  key: string;
  value: string;
}

/** The run Secret's file: the resolved values (keyed `<name>\0<key>`) as a JSON list. */
export function encodeSecretValues(values: ReadonlyMap<string, string>): string {
  const list: SecretValue[] = [...values].map(([k, value]) => {
    const [name = '', key = ''] = k.split('\u0000');
    return { name, key, value };
  });
  return JSON.stringify(list);
}

/** The values in a run Secret's file, keyed `<name>\0<key>`; throws on anything else. */
export function decodeSecretValues(text: string): Map<string, string> {
  const list: unknown = JSON.parse(text);
  if (!Array.isArray(list)) throw new Error('the run Secret does not hold a list of values');
  const out = new Map<string, string>();
  for (const e of list as unknown[]) {
    const { name, key, value } = (e ?? {}) as Partial<Record<keyof SecretValue, unknown>>;
    if (typeof name !== 'string' || typeof key !== 'string' || typeof value !== 'string')
      throw new Error('the run Secret holds an entry without a string name, key and value');
    out.set(`${name}\u0000${key}`, value);
  }
  return out;
}

/**
 * Metadata of an object that lives and dies with a run's Job: in its namespace, with its labels
 * and annotations, controlled by it (the garbage collector deletes it with the Job).
 */
function ownedByJob(
  job: Readonly<V1Job>,
  name: string,
  annotations: Record<string, string> = {},
): V1ObjectMeta {
  return {
    name,
    namespace: job.metadata?.namespace ?? '',
    labels: { ...job.metadata?.labels },
    annotations: { ...job.metadata?.annotations, ...annotations },
    ownerReferences: [
      {
        apiVersion: 'batch/v1',
        kind: 'Job',
        name: job.metadata?.name ?? '',
        uid: job.metadata?.uid ?? '',
        controller: true,
      },
    ],
  };
}

/**
 * A run's own Secret: the values of its input's secretRefs, in the Job's namespace, named after
 * the Job and owned by it (garbage-collected with it), immutable. `job` must be the created Job.
 */
export function buildRunSecret(
  job: Readonly<V1Job>,
  values: ReadonlyMap<string, string>,
): V1Secret {
  const name = job.metadata?.name ?? '';
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: ownedByJob(job, runSecretName(name)),
    immutable: true,
    data: { [RUN_SECRET_KEY]: Buffer.from(encodeSecretValues(values)).toString('base64') },
  };
}

/**
 * The script snapshot of a run: an immutable ConfigMap in the Job's namespace, named after the
 * Job and owned by it (garbage-collected with it: after ttlSecondsAfterFinished, or with the
 * NodeRole). `job` must be the created Job (its uid is the owner reference).
 */
export function buildScriptSnapshot(
  job: Readonly<V1Job>,
  script: string,
  source: string,
): V1ConfigMap {
  const name = job.metadata?.name ?? '';
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: ownedByJob(job, scriptSnapshotName(name), { [ANNOTATION_SCRIPT_SOURCE]: source }),
    // A snapshot never changes: the API server refuses edits, so what ran is what it holds.
    immutable: true,
    data: { [SCRIPT_KEY]: script },
  };
}

/**
 * What the runner of one run may do, and nothing more: read its NodeRole, Role and Node (and the
 * Networks its node's addresses are on, to pick the SSH address), write its NodeRole's status, and
 * record a first-seen SSH host key on its Node's status (trust on first use).
 */
export function runnerRules(o: {
  noderole: string;
  role: string;
  node: string;
  networks?: readonly string[];
  script: boolean;
}): V1PolicyRule[] {
  const rule = (resources: string[], verbs: string[], names: string[]): V1PolicyRule => ({
    apiGroups: ['crowbar.dev'],
    resources,
    verbs,
    resourceNames: names,
  });
  const networks = [...new Set(o.networks ?? [])].sort();
  return [
    rule(['noderoles'], ['get'], [o.noderole]),
    rule(['noderoles/status'], ['get', 'patch'], [o.noderole]),
    rule(['roles'], ['get'], [o.role]),
    rule(['nodes'], ['get'], [o.node]),
    ...(o.script ? [rule(['nodes/status'], ['patch'], [o.node])] : []),
    ...(o.script && networks.length > 0 ? [rule(['networks'], ['get'], networks)] : []),
  ];
}

export type JobState =
  { kind: 'running' } | { kind: 'complete' } | { kind: 'failed'; reason: string; message: string };

/** A Job's end, from its terminal conditions only (FailureTarget etc. are not the end yet). */
export function jobState(job: Readonly<V1Job>): JobState {
  const conds = job.status?.conditions ?? [];
  const on = (type: string) => conds.find((c) => c.type === type && c.status === 'True');
  if (on('Complete')) return { kind: 'complete' };
  const failed = on('Failed');
  if (failed) return { kind: 'failed', reason: failed.reason ?? '', message: failed.message ?? '' };
  return { kind: 'running' };
}

/** What the runner reported on the NodeRole for run `id`, or undefined if it has not. */
export function reportOf(nr: Readonly<NodeRole> | undefined, id: string): JigResult | undefined {
  const run = nr?.status?.run;
  if (!nr || run?.id !== id || run.finished === undefined) return undefined;
  const logTail = run.logTail ?? undefined;
  if (run.result === 'succeeded') {
    return {
      ok: true,
      wall: nr.status?.wall ?? {},
      ...(logTail !== undefined ? { logTail } : {}),
    };
  }
  if (run.result === 'failed') {
    return {
      ok: false,
      message: nr.status?.message ?? `run ${run.number ?? ''} failed`,
      ...(logTail !== undefined ? { logTail } : {}),
      ...(run.exitCode !== undefined ? { exitCode: run.exitCode } : {}),
    };
  }
  return undefined;
}

/**
 * A Job that ended without a report from its runner. `podMessage` is the pod's termination
 * message (the runner's last log lines when it failed).
 */
export function failureOf(
  job: Readonly<V1Job>,
  state: JobState,
  podMessage?: string,
  exitCode?: number,
): JigResult {
  const name = job.metadata?.name ?? '';
  const tail = podMessage?.trim() ? podMessage.trim() : undefined;
  const extra = {
    ...(tail !== undefined ? { logTail: tail } : {}),
    ...(exitCode !== undefined ? { exitCode } : {}),
  };
  if (state.kind === 'failed' && state.reason === 'DeadlineExceeded') {
    const s = job.spec?.activeDeadlineSeconds;
    return {
      ok: false,
      message: `run exceeded its deadline: Job ${name} ran longer than the role's timeout (activeDeadlineSeconds ${s ?? '?'} s) and was stopped`,
      ...extra,
    };
  }
  if (state.kind === 'failed') {
    return {
      ok: false,
      message: `Job ${name} failed (${state.reason || 'Failed'}${state.message ? `: ${state.message}` : ''})${tail !== undefined ? `; the runner's last output: ${lastLine(tail)}` : ''} without reporting a result`,
      ...extra,
    };
  }
  return {
    ok: false,
    message: `Job ${name} completed but its runner reported no result on the NodeRole`,
    ...extra,
  };
}

function lastLine(s: string): string {
  const lines = s.split('\n').filter((l) => l.trim() !== '');
  return (lines[lines.length - 1] ?? '').slice(0, 500);
}
