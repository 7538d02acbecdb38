/**
 * The jig runner: the entrypoint of a run's Job (`node operator/jig-runner.ts` in the operator
 * image). It reads its NodeRole, Role and Node and the input the operator captured in
 * status.run.input, runs the same jig code as the inline executor (test, noop, script; root's SSH
 * key from the mounted Secret; the script from the snapshot the operator took at run start and
 * mounted, see operator/executors/job-spec.ts; the values of its input's secretRefs from the run
 * Secret the operator made and mounted, substituted and redacted as the inline jig does), writes the result on the NodeRole's status under its own field
 * manager (see operator/executors/job-spec.ts), and exits 0 when the run succeeded, 1 otherwise.
 *
 * Its ServiceAccount may read only its own NodeRole, Role and Node and write only that NodeRole's
 * status (and the Node's status, to record a first-seen SSH host key).
 */
import { nextWall, replacementPatch } from './jigs/wall.ts';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Node, NodeRole } from '../generated/crowbar.ts';
import { ENV, RUNNER_FIELD_MANAGER, decodeSecretValues } from './executors/job-spec.ts';
import { JigRegistry } from './jigs/registry.ts';
import { scriptJig } from './jigs/script/jig.ts';
import { applySecretValues, findSecretRefs, redact } from './jigs/secret-refs.ts';
import { LIMITS } from './jigs/script/protocol.ts';
import {
  SSH_KEY_FIELDS,
  readScriptSnapshot,
  recordHostKey,
  redactResult,
  sshAddresses,
} from './jigs/script/wiring.ts';
import type { Jig, JigResult, JigRun } from './jigs/types.ts';
import { CrowbarClient, loadKubeConfig } from './kube/client.ts';
import { apiMessage, isConflict } from './kube/errors.ts';
import { rootLogger } from './log.ts';

const log = rootLogger('crowbar-jig-runner');

/** How long the runner waits for its run to be current again before giving up on reporting. */
const REPORT_PATIENCE_MS = 5 * 60_000;

function env(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === '')
    throw new Error(`${name} is not set: this runs inside a run Job`);
  return v;
}

/** Root's private key from the mounted Secret (ours, or a kubernetes.io/ssh-auth Secret). */
async function readKey(dir: string | undefined): Promise<Buffer> {
  if (dir === undefined)
    throw new Error(
      'no SSH key is mounted: start the operator with --ssh-key-secret=<name> (a Secret in its namespace holding id_ed25519)',
    );
  for (const f of SSH_KEY_FIELDS) {
    try {
      return await readFile(join(dir, f));
    } catch {
      // try the next name
    }
  }
  throw new Error(`the SSH key Secret mounted at ${dir} has no ${SSH_KEY_FIELDS.join(' or ')} key`);
}

/**
 * The run input with its secretRefs' values from the mounted run Secret (the runner's account
 * cannot read the operator's Secrets; the operator copied the values there at run start), and the
 * values to redact; or what is wrong.
 */
async function resolveFromFile(
  input: Record<string, unknown>,
  secretsFile: string | undefined,
): Promise<{ input: Record<string, unknown>; values: string[] } | { error: string }> {
  if (findSecretRefs(input).length === 0) return { input, values: [] };
  if (secretsFile === undefined || secretsFile === '')
    return {
      error: `the run input has a secretRef but its Job mounts no run Secret (${ENV.secretsFile} is not set): it was made by an operator without secretRef support; retry the run`,
    };
  let values: Map<string, string>;
  try {
    values = decodeSecretValues(await readFile(secretsFile, 'utf8'));
  } catch (e) {
    return { error: `cannot read the run Secret ${secretsFile}: ${(e as Error).message}` };
  }
  return applySecretValues(input, values);
}

function scriptFor(
  client: CrowbarClient,
  keyDir: string | undefined,
  scriptFile: string | undefined,
  secretsFile: string | undefined,
): Jig {
  return {
    name: 'script',
    async run(run): Promise<JigResult> {
      const resolved = await resolveFromFile(run.input, secretsFile);
      if ('error' in resolved) return { ok: false, message: resolved.error };
      try {
        return redactResult(
          await runScript(client, keyDir, scriptFile, { ...run, input: resolved.input }),
          resolved.values,
        );
      } catch (e) {
        // main() words and reports it; the message may quote the input.
        if (run.signal.aborted) throw e;
        throw new Error(redact((e as Error).message, resolved.values));
      }
    },
  };
}

async function runScript(
  client: CrowbarClient,
  keyDir: string | undefined,
  scriptFile: string | undefined,
  run: JigRun,
): Promise<JigResult> {
  let privateKey: Buffer;
  try {
    privateKey = await readKey(keyDir);
  } catch (e) {
    return { ok: false, message: (e as Error).message };
  }
  // Networks named on the node's addresses rank which address to try (admin first).
  const networks = new Map(
    await Promise.all(
      [...new Set((run.node.status?.addresses ?? []).map((a) => a.network))].map(
        async (n) => [n, await client.get('Network', n).catch(() => undefined)] as const,
      ),
    ),
  );
  return scriptJig({
    privateKey,
    resolveAddress: (node) => sshAddresses(node, (n) => networks.get(n))[0],
    // Never the Role's current script: the snapshot is the script as it was at run start.
    loadScript: () => readScriptSnapshot(scriptFile),
    onHostKey: async (node: Readonly<Node>, fp: string) => {
      log.info({ node: node.metadata.name, fingerprint: fp }, 'recording a first-seen host key');
      await recordHostKey(client, node.metadata.name ?? '', fp, RUNNER_FIELD_MANAGER);
    },
  }).run(run);
}

/**
 * Writes the result on the NodeRole while status.run is still this run in transition. After an
 * operator restart the run may briefly not be current (a stopping leader hands it back to todo;
 * the next one starts it again under the same id), so the runner waits for that.
 */
async function report(
  client: CrowbarClient,
  name: string,
  id: string,
  number: number,
  result: JigResult,
  exitCode: number,
): Promise<boolean> {
  const end = Date.now() + REPORT_PATIENCE_MS;
  for (let delay = 200; ; delay = Math.min(delay * 2, 5000)) {
    const nr: NodeRole | undefined = await client.get('NodeRole', name);
    if (!nr) {
      log.warn({ noderole: name }, 'the noderole is gone; nothing to report to');
      return false;
    }
    const run = nr.status?.run;
    if (run?.id !== id && (run?.number ?? 0) > number) {
      log.warn({ noderole: name, current: run?.id }, 'a newer run superseded this one');
      return false;
    }
    if (nr.status?.state === 'transition' && run?.id === id) {
      const tail = result.logTail?.slice(-LIMITS.logTailBytes);
      try {
        await client.mergePatchStatus(
          'NodeRole',
          name,
          {
            metadata: { resourceVersion: nr.metadata.resourceVersion },
            status: {
              message: result.ok ? `run succeeded; waiting for the operator` : result.message,
              // §4.2: this run's wall replaces the last one.
              ...(result.ok
                ? {
                    wall: replacementPatch(nr.status.wall, nextWall(nr.status.wall, result.wall)),
                  }
                : {}),
              run: {
                result: result.ok ? 'succeeded' : 'failed',
                exitCode,
                logTail: tail ?? (result.ok ? null : result.message),
                finished: new Date().toISOString(),
              },
            },
          },
          RUNNER_FIELD_MANAGER,
        );
        return true;
      } catch (e) {
        if (!isConflict(e)) throw e;
        delay = 50;
      }
    }
    if (Date.now() > end) {
      log.error({ noderole: name, id }, 'the run never became current again; giving up');
      return false;
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

async function main(): Promise<number> {
  const name = env(ENV.noderole);
  const id = env(ENV.runId);
  const number = Number(env(ENV.run));
  const keyDir = process.env[ENV.sshKeyDir];
  const scriptFile = process.env[ENV.scriptFile];
  const secretsFile = process.env[ENV.secretsFile];
  const rlog = log.child({ noderole: name, run: number, pod: process.env[ENV.podName] });
  const abort = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      rlog.warn({ signal: sig }, 'stopping the run');
      abort.abort(new Error(`the run's pod was stopped (${sig})`));
    });
  }
  const client = new CrowbarClient(loadKubeConfig());
  const nr = await client.get('NodeRole', name);
  if (!nr) throw new Error(`NodeRole ${name} not found`);
  const run = nr.status?.run;
  if (run?.id !== id) {
    throw new Error(`NodeRole ${name} is at run ${run?.id ?? 'none'}, not ${id}; not running it`);
  }
  const role = await client.get('Role', nr.spec.role);
  if (!role) throw new Error(`Role ${nr.spec.role} of NodeRole ${name} not found`);
  const node = await client.get('Node', nr.spec.node);
  if (!node) throw new Error(`Node ${nr.spec.node} of NodeRole ${name} not found`);
  const jigs = new JigRegistry();
  jigs.register(scriptFor(client, keyDir, scriptFile, secretsFile));
  const jig = jigs.get(role.spec.jig);
  rlog.info(
    { role: role.metadata.name, node: node.metadata.name, jig: role.spec.jig },
    'run starting',
  );
  let result: JigResult;
  if (!jig) {
    result = { ok: false, message: `the jig runner has no jig named ${role.spec.jig}` };
  } else {
    try {
      result = await jig.run({
        noderole: nr,
        role,
        node,
        number,
        input: run.input ?? {},
        signal: abort.signal,
      });
    } catch (e) {
      if (abort.signal.aborted) {
        rlog.warn('run cancelled; not reporting (the operator decides)');
        return 1;
      }
      result = { ok: false, message: `jig ${jig.name} failed: ${(e as Error).message}` };
    }
  }
  const exitCode = result.ok ? 0 : result.exitCode !== undefined ? result.exitCode : 1;
  const reported = await report(client, name, id, number, result, exitCode);
  rlog.info({ ok: result.ok, reported }, 'run finished');
  if (!result.ok) process.stderr.write(`${result.message}\n`);
  return result.ok && reported ? 0 : 1;
}

// Exit explicitly: a cancelled jig may leave sockets open that would keep the process alive.
main().then(
  (code) => {
    process.exit(code);
  },
  (err: unknown) => {
    log.error({ err: apiMessage(err) }, 'the jig runner failed');
    // With terminationMessagePolicy FallbackToLogsOnError this becomes the pod's message.
    process.stderr.write(`${apiMessage(err)}\n`);
    process.exit(1);
  },
);
