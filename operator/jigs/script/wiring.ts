/**
 * Wires the script jig and the aliveness check to the cluster: root's SSH key from a Secret (or a
 * file, for the lab), scripts from the Role (inline or a ConfigMap), the address to reach from the
 * Node's status, and trust-on-first-use host keys recorded on the Node's status.
 */
import { readFile } from 'node:fs/promises';
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Network, Node, Role } from '../../../generated/crowbar.ts';
import type { CrowbarClient } from '../../kube/client.ts';
import { apiCode, apiMessage, isConflict, isNotFound } from '../../kube/errors.ts';
import type { Logger } from '../../log.ts';
import type { Jig, JigResult, JigRun } from '../types.ts';
import { scriptJig, type ScriptJigDeps } from './jig.ts';
import { LIMITS, formatBytes, stripPrefix } from './protocol.ts';
import { SessionPool } from './session-pool.ts';
import { applySecretValues, findSecretRefs, redact, redactDeep, refKey } from '../secret-refs.ts';

/** Keys of a Secret that may hold root's private key (ours, and kubernetes.io/ssh-auth's). */
export const SSH_KEY_FIELDS = ['id_ed25519', 'ssh-privatekey'] as const;

/** Where root's private key comes from. `get` rejects with a message that says what to fix. */
export interface SshKeySource {
  readonly description: string;
  get(): Promise<Buffer>;
}

export interface SecretRef {
  namespace: string;
  name: string;
}

/** Parses `--ssh-key-secret`: `<namespace>/<name>`, or `<name>` in `defaultNamespace`. */
export function parseSecretRef(value: string, defaultNamespace: string): SecretRef {
  const parts = value.split('/');
  const [a, b] = parts;
  const name = parts.length === 2 ? b : a;
  const namespace = parts.length === 2 ? a : defaultNamespace;
  const dns = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
  if (parts.length > 2 || !name || !namespace || !dns.test(name) || !dns.test(namespace)) {
    throw new Error(
      `--ssh-key-secret must be <namespace>/<name> (or <name>), got ${JSON.stringify(value)}`,
    );
  }
  return { namespace, name };
}

/**
 * Root's key from a Secret, read when first needed and kept once found. While the Secret is
 * missing (or unreadable) every `get` fails with how to create it; the Secret is looked up again
 * at most every `recheckMs`, so creating it later needs no restart.
 */
export function secretKeySource(
  core: Pick<CoreV1Api, 'readNamespacedSecret'>,
  ref: SecretRef,
  recheckMs = 5000,
): SshKeySource {
  const where = `${ref.namespace}/${ref.name}`;
  let key: Buffer | undefined;
  let lastError: Error | undefined;
  let lastTry = 0;
  let inflight: Promise<Buffer> | undefined;
  const read = async (): Promise<Buffer> => {
    let secret;
    try {
      secret = await core.readNamespacedSecret({ name: ref.name, namespace: ref.namespace });
    } catch (e) {
      if (isNotFound(e)) {
        throw new Error(
          `SSH key Secret ${where} not found: create it with kubectl create secret generic ${ref.name} -n ${ref.namespace} --from-file=id_ed25519=<root's private key file>`,
        );
      }
      throw new Error(`cannot read SSH key Secret ${where}: ${apiMessage(e)}`, { cause: e });
    }
    for (const f of SSH_KEY_FIELDS) {
      const b64 = secret.data?.[f];
      if (b64 !== undefined && b64 !== '') return Buffer.from(b64, 'base64');
    }
    throw new Error(
      `SSH key Secret ${where} has no ${SSH_KEY_FIELDS.join(' or ')} key: put root's private key there`,
    );
  };
  return {
    description: `Secret ${where}`,
    get: async () => {
      if (key) return key;
      if (lastError && Date.now() - lastTry < recheckMs) throw lastError;
      inflight ??= read()
        .then((k) => {
          key = k;
          lastError = undefined;
          return k;
        })
        .catch((e: unknown) => {
          lastError = e instanceof Error ? e : new Error(String(e));
          lastTry = Date.now();
          throw lastError;
        })
        .finally(() => {
          inflight = undefined;
        });
      return inflight;
    },
  };
}

/** Root's key from a file (the lab). Read once; a missing file fails every use with its path. */
export function fileKeySource(path: string): SshKeySource {
  let p: Promise<Buffer> | undefined;
  return {
    description: `file ${path}`,
    get: () =>
      (p ??= readFile(path).catch((e: unknown) => {
        p = undefined;
        throw new Error(`cannot read the SSH key file ${path}: ${(e as Error).message}`);
      })),
  };
}

/** No key configured: every use says how to configure one. */
export const noKeySource: SshKeySource = {
  description: 'none',
  get: () =>
    Promise.reject(
      new Error(
        'no SSH key is configured: start the operator with --ssh-key-secret=<namespace>/<name> (a Secret holding id_ed25519)',
      ),
    ),
};

/**
 * The addresses to reach a node at, in the order to try them (§10.1: "the first admin or
 * unmanaged address"): admin networks first, then unmanaged, then general ones; never a BMC's.
 * A network without a Network object counts as admin when it is named `admin`.
 */
export function sshAddresses(
  node: Readonly<Node>,
  network: (name: string) => Readonly<Network> | undefined,
): string[] {
  const rank = (net: string): number => {
    const category = network(net)?.spec.category ?? (net === 'admin' ? 'admin' : 'general');
    return { admin: 0, unmanaged: 1, general: 2, bmc: -1 }[category];
  };
  return (node.status?.addresses ?? [])
    .map((a, i) => ({ a: stripPrefix(a.address), r: rank(a.network), i }))
    .filter((x) => x.r >= 0 && x.a !== '')
    .sort((x, y) => x.r - y.r || x.i - y.i)
    .map((x) => x.a);
}

/** A role's script: spec.script.inline, or the key of the ConfigMap it references. */
export async function loadRoleScript(
  core: Pick<CoreV1Api, 'readNamespacedConfigMap'>,
  role: Readonly<Role>,
): Promise<string> {
  const s = role.spec.script;
  if (s?.inline !== undefined && s.inline !== '') return s.inline;
  const ref = s?.configMapRef;
  if (!ref) {
    throw new Error(
      `role ${role.metadata.name ?? ''} has no script: set spec.script.inline or spec.script.configMapRef`,
    );
  }
  const where = `${ref.namespace}/${ref.name}`;
  let cm;
  try {
    cm = await core.readNamespacedConfigMap({ name: ref.name, namespace: ref.namespace });
  } catch (e) {
    if (isNotFound(e)) throw new Error(`ConfigMap ${where} not found`);
    throw new Error(`cannot read ConfigMap ${where}: ${apiMessage(e)}`, { cause: e });
  }
  const text = cm.data?.[ref.key];
  if (text === undefined) throw new Error(`ConfigMap ${where} has no key ${ref.key}`);
  return text;
}

/**
 * Why the jig would refuse to send `script` (empty, or over {@link LIMITS}.scriptBytes), worded as
 * the jig words it; undefined when it is fine. The job executor checks this before it makes a Job.
 */
export function scriptProblem(role: string, script: string): string | undefined {
  const bytes = Buffer.byteLength(script, 'utf8');
  if (bytes === 0) return `the script of role ${role} is empty`;
  if (bytes > LIMITS.scriptBytes)
    return `the script of role ${role} is ${bytes} bytes, over the ${formatBytes(LIMITS.scriptBytes)} limit`;
  return undefined;
}

/**
 * A run Job's script: the snapshot the operator took at run start, mounted as a file at `path`
 * (the runner's CROWBAR_SCRIPT_FILE). Rejects with what is wrong when it is not there.
 */
export async function readScriptSnapshot(path: string | undefined): Promise<string> {
  if (path === undefined || path === '') {
    throw new Error(
      'the run has no script snapshot mounted (CROWBAR_SCRIPT_FILE is not set): its Job was not made for a script run',
    );
  }
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read the run's script snapshot ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/**
 * Records a first-seen host key on the Node's status, compare-and-set: a JSON patch whose `test`
 * op holds the resourceVersion of the read that found no key, so a second "first use" (another
 * replica, another runner, a machine swapped in between) cannot replace the first. Finding the
 * same key recorded is success; finding another is an error that says so. A Node changed by
 * someone else in between is read again (at most 3 times).
 */
export async function recordHostKey(
  client: CrowbarClient,
  node: string,
  fingerprint: string,
  fieldManager: string,
): Promise<void> {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const n = await client.get('Node', node);
    if (!n) throw new Error(`node ${node} no longer exists`);
    const recorded = n.status?.sshHostKey;
    if (recorded === fingerprint) return;
    if (recorded !== undefined && recorded !== '') {
      throw new Error(
        `node ${node} already has SSH host key ${recorded} on record, and this connection offered ${fingerprint}: trust on first use happens once; if the machine was replaced, clear status.sshHostKey`,
      );
    }
    try {
      await client.jsonPatchStatus(
        'Node',
        node,
        [
          { op: 'test', path: '/metadata/resourceVersion', value: n.metadata.resourceVersion },
          n.status === undefined
            ? { op: 'add', path: '/status', value: { sshHostKey: fingerprint } }
            : { op: 'add', path: '/status/sshHostKey', value: fingerprint },
        ],
        fieldManager,
      );
      return;
    } catch (e) {
      // The test failed (the Node changed since the read) or a write raced it: read again.
      if (isConflict(e) || apiCode(e) === 422) continue;
      throw e;
    }
  }
  throw new Error(`cannot record node ${node}'s SSH host key: the Node kept changing; try again`);
}

export interface ScriptWiring {
  core: Pick<CoreV1Api, 'readNamespacedConfigMap' | 'readNamespacedSecret'>;
  /** Where the Secrets that `secretRef`s name live: the operator's namespace. */
  secretNamespace: string;
  client: CrowbarClient;
  key: SshKeySource;
  /** The Network object of a name, from the informer cache. */
  network(name: string): Readonly<Network> | undefined;
  fieldManager: string;
  log: Logger;
  port?: number;
  /** Extra jig options (timeouts), mostly for tests. */
  tune?: Pick<ScriptJigDeps, 'readyTimeoutMs' | 'deadlineGraceMs' | 'cancelWaitMs'>;
}

/**
 * The `script` jig as the operator runs it. The key is fetched per run, so a Secret created after
 * start is picked up; without it, a run fails with how to create it instead of crashing.
 */
export function operatorScriptJig(w: ScriptWiring): Jig {
  const base: Omit<ScriptJigDeps, 'privateKey'> = {
    // A node's roles run one after another: its next run takes the last run's connection.
    sessions: new SessionPool(),
    resolveAddress: (node) => sshAddresses(node, (n) => w.network(n))[0],
    loadScript: (role) => loadRoleScript(w.core, role),
    onHostKey: async (node, fp) => {
      const name = node.metadata.name ?? '';
      w.log.info({ node: name, fingerprint: fp }, 'recording a first-seen SSH host key');
      await recordHostKey(w.client, name, fp, w.fieldManager);
    },
    ...(w.port === undefined ? {} : { port: w.port }),
    ...w.tune,
  };
  return {
    name: 'script',
    async run(run: JigRun): Promise<JigResult> {
      let privateKey: Buffer;
      try {
        privateKey = await w.key.get();
      } catch (e) {
        return { ok: false, message: (e as Error).message };
      }
      const resolved = await resolveSecretRefs(w.core, w.secretNamespace, run.input);
      if ('error' in resolved) return { ok: false, message: resolved.error };
      const result = await scriptJig({ ...base, privateKey }).run({
        ...run,
        input: resolved.input,
      });
      return redactResult(result, resolved.values);
    },
  };
}

/**
 * The run input with every `secretRef` replaced by its Secret's value (secret-refs.ts), and the
 * values, to redact from what the run returns; or an error that says which reference failed.
 */
export async function resolveSecretRefs(
  core: Pick<CoreV1Api, 'readNamespacedSecret'>,
  namespace: string,
  input: Record<string, unknown>,
): Promise<{ input: Record<string, unknown>; values: string[] } | { error: string }> {
  const read = await readSecretRefs(core, namespace, input);
  return 'error' in read ? read : applySecretValues(input, read.values);
}

/**
 * The value of every `secretRef` in `input`, keyed by {@link refKey}, read from the Secrets (by
 * name) in `namespace`; or an error that says which reference failed. The job executor puts these
 * in the run's own Secret; the inline jig substitutes them at once.
 */
export async function readSecretRefs(
  core: Pick<CoreV1Api, 'readNamespacedSecret'>,
  namespace: string,
  input: Record<string, unknown>,
): Promise<{ values: Map<string, string> } | { error: string }> {
  const values = new Map<string, string>();
  for (const ref of findSecretRefs(input)) {
    if ('invalid' in ref) return { error: `the run input has a bad secretRef: ${ref.invalid}` };
    const where = `${namespace}/${ref.name}`;
    let secret;
    try {
      secret = await core.readNamespacedSecret({ name: ref.name, namespace });
    } catch (e) {
      if (isNotFound(e))
        return {
          error: `secretRef ${ref.name}/${ref.key}: Secret ${where} not found (secretRefs name Secrets in the operator's namespace)`,
        };
      return {
        error: `secretRef ${ref.name}/${ref.key}: cannot read Secret ${where}: ${apiMessage(e)}`,
      };
    }
    const b64 = secret.data?.[ref.key];
    if (b64 === undefined)
      return { error: `secretRef ${ref.name}/${ref.key}: Secret ${where} has no key ${ref.key}` };
    values.set(refKey(ref), Buffer.from(b64, 'base64').toString('utf8'));
  }
  return { values };
}

/** `r` with every secret value replaced in its wall, message and log tail. */
export function redactResult(r: JigResult, values: readonly string[]): JigResult {
  if (values.length === 0) return r;
  const logTail = r.logTail === undefined ? {} : { logTail: redact(r.logTail, values) };
  if (r.ok) {
    return { ok: true, wall: redactDeep(r.wall, values) as Record<string, unknown>, ...logTail };
  }
  return { ...r, message: redact(r.message, values), ...logTail };
}
