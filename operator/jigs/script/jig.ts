/**
 * The script jig (§1.7, §4.2): runs a Role's script on its node over SSH as root and returns what
 * the script wrote to $CROWBAR_OUTPUT as the wall. The protocol is in protocol.ts; this file only
 * sequences the I/O. Every failure ends as `{ ok: false, message }`; a cancelled run (its signal
 * aborted) stops the remote script and then rejects with the signal's reason, like the test jig.
 */
import { randomBytes } from 'node:crypto';
import type { Node, Role } from '../../../generated/crowbar.ts';
import type { Jig, JigResult, JigRun } from '../types.ts';
import {
  CANCEL_COMMAND,
  DEFAULT_TIMEOUT_SECONDS,
  KILL_AFTER_SECONDS,
  MAX_RUNNER_STDOUT,
  RUNNER_COMMAND,
  attemptKey,
  buildPayload,
  interpret,
  parsePid,
  parseRunnerOutput,
  validateRequest,
  type RunRequest,
} from './protocol.ts';
import { SshError, connect, exec, type SshSession } from './ssh.ts';
import { poolTarget, type SessionPool } from './session-pool.ts';

export interface ScriptJigDeps {
  /** The address to SSH to: the node's first admin address, without prefix length. */
  resolveAddress(node: Readonly<Node>): string | undefined;
  /** Root's private key, from a Kubernetes Secret (never from a custom resource). */
  privateKey: Buffer;
  /** SSH port; default 22. */
  port?: number;
  /** Records a host key seen for the first time on the Node's status.sshHostKey (TOFU). */
  onHostKey(node: Readonly<Node>, fingerprint: string): Promise<void>;
  /** The script of a role: spec.script.inline, or the ConfigMap key it references. */
  loadScript(role: Readonly<Role>): Promise<string>;
  /** SSH handshake + authentication deadline; default 10 s. */
  readyTimeoutMs?: number;
  /** How long past the role's timeout (plus the remote kill grace) the client waits on its own. */
  deadlineGraceMs?: number;
  /** After a cancel, how long to wait for the runner to report before closing; default 15 s. */
  cancelWaitMs?: number;
  /**
   * A cancel that comes before the runner reported its pid waits this long for the pid (the run
   * executes detached from the session: closing the connection would not stop it); default 5 s.
   */
  pidWaitMs?: number;
  /**
   * The hard wall-clock deadline of a run is the role's timeout plus this margin (default
   * {@link hardMarginMs} of the other waits): past it the SSH connection is destroyed and the run
   * fails, whatever the server does (it may answer keepalives and never confirm a channel).
   */
  hardMarginMs?: number;
  /** Clock, injectable for tests. */
  now?: () => number;
  /** Connections kept between runs (session-pool.ts); without it every run connects anew. */
  sessions?: SessionPool;
  /**
   * On a reused connection, how long the run's channel may take to open before the connection is
   * taken for dead and the run connects anew; default 5 s.
   */
  reuseOpenTimeoutMs?: number;
}

const fail = (message: string): JigResult => ({ ok: false, message });

/** Past a run's own waits, how long a wedged connection may hold the run before it is cut. */
export const HARD_EXTRA_MS = 5000;

/**
 * The default margin of a run's hard deadline over its timeout: the handshake, the remote kill
 * grace, the client's own grace, the wait for the runner's report after a cancel, and
 * {@link HARD_EXTRA_MS}. A well-behaved node always answers before it.
 */
export function hardMarginMs(deps: Partial<ScriptJigDeps>): number {
  return (
    (deps.readyTimeoutMs ?? 10_000) +
    KILL_AFTER_SECONDS * 1000 +
    (deps.deadlineGraceMs ?? 10_000) +
    (deps.cancelWaitMs ?? 15_000) +
    HARD_EXTRA_MS
  );
}

/** After a cancel (the signal aborted), how long the run may take before the connection is cut. */
export function cancelBoundMs(deps: Partial<ScriptJigDeps>): number {
  return (deps.pidWaitMs ?? 5000) + (deps.cancelWaitMs ?? 15_000) + HARD_EXTRA_MS;
}

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Builds the `script` jig. */
export function scriptJig(deps: ScriptJigDeps): Jig {
  const now = deps.now ?? Date.now;
  return {
    name: 'script',
    resumable: true,
    async run(run: JigRun): Promise<JigResult> {
      const node = run.node.metadata.name ?? '';
      const role = run.role.metadata.name ?? '';
      const noderole = run.noderole.metadata.name ?? '';
      const timeoutSeconds = run.role.spec.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
      run.signal.throwIfAborted();

      const host = deps.resolveAddress(run.node);
      if (host === undefined || host === '') {
        return fail(
          `node ${node} has no admin address in status.addresses: the script jig cannot reach it over SSH`,
        );
      }
      let script: string;
      try {
        script = await deps.loadScript(run.role);
      } catch (e) {
        return fail(`cannot load the script of role ${role}: ${errText(e)}`);
      }
      const req: RunRequest = {
        script,
        input: run.input,
        role,
        node,
        noderole,
        run: run.number,
        timeoutSeconds,
        // The same start of this run as one a previous operator sent (a re-adopted run) has the
        // same key: the node then re-attaches to it instead of running the script again.
        attempt: attemptKey(run.noderole.status?.run, run.number, () =>
          randomBytes(8).toString('hex'),
        ),
      };
      const invalid = validateRequest(req);
      if (invalid !== undefined) return fail(invalid);
      let payload: Buffer;
      try {
        payload = buildPayload(req);
      } catch (e) {
        return fail(errText(e));
      }

      // The hard deadline: whatever the server does, the run ends and frees its slot by then.
      const margin = deps.hardMarginMs ?? hardMarginMs(deps);
      const hardMs = timeoutSeconds * 1000 + margin;
      const cut = new AbortController();
      let session: SshSession | undefined;
      const timers: NodeJS.Timeout[] = [];
      let onAbort: (() => void) | undefined;
      const hard = new Promise<JigResult>((resolve, reject) => {
        const stop = (): void => {
          cut.abort(new Error('hard deadline'));
          session?.destroy();
        };
        timers.push(
          setTimeout(() => {
            stop();
            resolve(
              fail(
                `the run of role ${role} on node ${node} did not end within ${String(hardMs / 1000)} s (timeoutSeconds ${String(timeoutSeconds)} + ${String(margin / 1000)} s): the operator closed the SSH connection; check sshd and the script on the node`,
              ),
            );
          }, hardMs),
        );
        onAbort = () => {
          timers.push(
            setTimeout(() => {
              stop();
              reject(run.signal.reason as Error);
            }, cancelBoundMs(deps)),
          );
        };
        run.signal.addEventListener('abort', onAbort, { once: true });
      });
      const port = deps.port ?? 22;
      const target = poolTarget(node, host, port, deps.privateKey);
      const fresh = (): Promise<SshSession> =>
        connect({
          node,
          host,
          port,
          privateKey: deps.privateKey,
          expectedHostKey: run.node.status?.sshHostKey,
          ...(deps.readyTimeoutMs === undefined ? {} : { readyTimeoutMs: deps.readyTimeoutMs }),
          signal: AbortSignal.any([run.signal, cut.signal]),
        });
      const connectFailed = (e: unknown): JigResult => {
        run.signal.throwIfAborted();
        return fail(e instanceof SshError ? e.message : `SSH to ${node} failed: ${errText(e)}`);
      };
      /** The run's connection from now on (the hard deadline destroys it). */
      const adopt = (s: SshSession): SshSession => {
        session = s;
        // The hard deadline may have passed during the handshake's last step.
        if (cut.signal.aborted) s.destroy();
        return s;
      };
      const work = (async (): Promise<JigResult> => {
        const pooled = deps.sessions?.take(target, run.node.status?.sshHostKey);
        let s: SshSession;
        try {
          s = adopt(pooled ?? (await fresh()));
        } catch (e) {
          return connectFailed(e);
        }
        let reusable = false;
        try {
          if (s.newHostKey !== undefined && pooled === undefined) {
            try {
              await deps.onHostKey(run.node, s.newHostKey);
            } catch (e) {
              return fail(
                `cannot record host key ${s.newHostKey} of node ${node} on its status: ${errText(e)}`,
              );
            }
          }
          try {
            const openTimeoutMs =
              pooled === undefined ? undefined : (deps.reuseOpenTimeoutMs ?? 5000);
            let out: RunOutcome;
            try {
              out = await runScript(s, req, payload, run.signal, deps, now, openTimeoutMs);
            } catch (e) {
              // A kept connection that turned out dead never started the command: connect anew.
              if (pooled === undefined || !(e instanceof SshError) || !e.notStarted) throw e;
              run.signal.throwIfAborted();
              s.destroy();
              try {
                s = adopt(await fresh());
              } catch (e2) {
                return connectFailed(e2);
              }
              out = await runScript(s, req, payload, run.signal, deps, now, undefined);
            }
            reusable = out.reusable && out.result.ok && !cut.signal.aborted;
            return out.result;
          } catch (e) {
            run.signal.throwIfAborted();
            return fail(`SSH to ${node} failed during the run: ${errText(e)}`);
          }
        } finally {
          if (reusable && deps.sessions !== undefined) deps.sessions.give(target, s);
          else s.close();
        }
      })();
      try {
        return await Promise.race([work, hard]);
      } finally {
        for (const t of timers) clearTimeout(t);
        if (onAbort) run.signal.removeEventListener('abort', onAbort);
        // When the deadline won, the destroyed connection still settles `work`: nothing waits on it.
        work.catch(() => undefined);
        hard.catch(() => undefined);
      }
    },
  };
}

/** A run's result, and whether its connection ended the run clean enough to serve another. */
interface RunOutcome {
  result: JigResult;
  reusable: boolean;
}

async function runScript(
  session: SshSession,
  req: RunRequest,
  payload: Buffer,
  signal: AbortSignal,
  deps: ScriptJigDeps,
  now: () => number,
  openTimeoutMs: number | undefined,
): Promise<RunOutcome> {
  let head = Buffer.alloc(0);
  let pid: number | undefined;
  let cutOff: 'deadline' | 'cancelled' | undefined;
  let releaseWait: (() => void) | undefined;
  const stopWaiting = new Promise<void>((r) => (releaseWait = r));
  let waitTimer: NodeJS.Timeout | undefined;

  let cancelSent = false;
  const sendCancel = async (): Promise<void> => {
    if (cancelSent || pid === undefined) return;
    cancelSent = true;
    // The executor passes SIGTERM to `timeout`, which signals the script's process group and
    // SIGKILLs it after the grace.
    try {
      await exec(session, CANCEL_COMMAND, {
        stdin: Buffer.from(`${pid}\n`),
        maxStdout: 1024,
        until: new Promise((r) => setTimeout(r, 5000).unref()),
      });
    } catch {
      // The connection is gone: closing below is all that is left to do.
    }
    clearTimeout(waitTimer);
    waitTimer = setTimeout(() => releaseWait?.(), deps.cancelWaitMs ?? 15_000);
  };
  const cancel = async (why: 'deadline' | 'cancelled'): Promise<void> => {
    if (cutOff !== undefined) return;
    cutOff = why;
    if (pid !== undefined) {
      await sendCancel();
      return;
    }
    // No pid yet: the runner may still be about to start the run, which would then go on without
    // the session. Wait for the pid (onStdout sends the cancel), or for the runner to end.
    waitTimer = setTimeout(() => releaseWait?.(), deps.pidWaitMs ?? 5000);
  };

  const deadlineMs =
    req.timeoutSeconds * 1000 + KILL_AFTER_SECONDS * 1000 + (deps.deadlineGraceMs ?? 10_000);
  const deadline = setTimeout(() => void cancel('deadline'), deadlineMs);
  const onAbort = (): void => void cancel('cancelled');
  signal.addEventListener('abort', onAbort, { once: true });
  const started = now();
  try {
    const res = await exec(session, RUNNER_COMMAND, {
      stdin: payload,
      maxStdout: MAX_RUNNER_STDOUT,
      onStdout: (chunk) => {
        if (pid !== undefined || head.length > 4096) return;
        head = Buffer.concat([head, chunk]);
        pid = parsePid(head);
        if (pid !== undefined && cutOff !== undefined) void sendCancel();
      },
      until: stopWaiting,
      ...(openTimeoutMs === undefined ? {} : { openTimeoutMs }),
    });
    if (cutOff === 'cancelled') signal.throwIfAborted();
    const who = `script of role ${req.role} on node ${req.node}`;
    if (res.overflow) {
      return {
        result: fail(`the ${who} made the runner print more than ${MAX_RUNNER_STDOUT} bytes`),
        reusable: false,
      };
    }
    const result = interpret(parseRunnerOutput(res.stdout), {
      role: req.role,
      node: req.node,
      noderole: req.noderole,
      timeoutSeconds: req.timeoutSeconds,
      elapsedMs: now() - started,
      ...(cutOff === undefined ? {} : { cutOff }),
      stderr: res.stderr,
    });
    return {
      result,
      // A cancel is sent only after cutOff is set: no cut-off means none went over this connection.
      reusable: !res.stopped && cutOff === undefined && res.code !== null,
    };
  } finally {
    clearTimeout(deadline);
    clearTimeout(waitTimer);
    signal.removeEventListener('abort', onAbort);
  }
}
