/**
 * Node aliveness (§10.1): a node is alive when one of its admin addresses answers ping **and** a
 * root SSH `echo alive` on that address succeeds. Host keys follow the script jig's TOFU rule: a
 * changed key makes the node not alive, with the same message the jig gives.
 */
import { execFile } from 'node:child_process';
import { ALIVE_COMMAND, ALIVE_REPLY } from './protocol.ts';
import { SshError, connect, exec, type SshSession } from './ssh.ts';

export interface AliveTarget {
  /** Node name, for messages. */
  node: string;
  /** Admin addresses without prefix length, in status order (see protocol.adminAddresses). */
  addresses: readonly string[];
  /** status.sshHostKey, when recorded. */
  expectedHostKey?: string | undefined;
}

export interface AlivenessOptions {
  privateKey: Buffer;
  port?: number;
  /** SSH handshake + `echo` deadline; default 10 s. */
  sshTimeoutMs?: number;
  /** Ping one address; default runs `ping -c 1 -W 1 <address>` (no shell). */
  ping?: (address: string) => Promise<boolean>;
  signal?: AbortSignal;
}

export interface Aliveness {
  alive: boolean;
  /** Why, in words: which address answered, or what failed. */
  reason: string;
  /** The address that answered ping (and SSH, when alive). */
  address?: string;
  /** A host key seen for the first time, for the caller to record on the Node's status. */
  newHostKey?: string;
}

/** `ping -c 1 -W 1 <address>`: true when it exits 0. Arguments go to execFile, never a shell. */
export function ping(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('ping', ['-n', '-q', '-c', '1', '-W', '1', address], { timeout: 5000 }, (err) => {
      resolve(err === null);
    });
  });
}

/** §10.1 `alive?`: the first admin address answering ping, then SSH `echo alive` as root. */
export async function checkAlive(t: AliveTarget, o: AlivenessOptions): Promise<Aliveness> {
  if (t.addresses.length === 0) {
    return { alive: false, reason: `node ${t.node} has no admin address in status.addresses` };
  }
  const pinger = o.ping ?? ping;
  let address: string | undefined;
  for (const a of t.addresses) {
    if (o.signal?.aborted) return { alive: false, reason: 'aliveness check cancelled' };
    if (await pinger(a)) {
      address = a;
      break;
    }
  }
  if (address === undefined) {
    return {
      alive: false,
      reason: `no admin address of node ${t.node} answers ping (tried ${t.addresses.join(', ')})`,
    };
  }
  const timeoutMs = o.sshTimeoutMs ?? 10_000;
  // The hard deadline of the SSH step: the handshake and the `echo` each get timeoutMs, and a
  // server that answers keepalives but never opens or closes a channel is cut off when it passes
  // (the socket is destroyed), so it never holds an aliveness worker.
  const hardMs = 2 * timeoutMs + 1000;
  const cut = new AbortController();
  let session: SshSession | undefined;
  const hard = setTimeout(() => {
    cut.abort(new Error(`no answer within ${String(hardMs)} ms`));
    session?.destroy();
  }, hardMs);
  try {
    try {
      session = await connect({
        node: t.node,
        host: address,
        ...(o.port === undefined ? {} : { port: o.port }),
        privateKey: o.privateKey,
        expectedHostKey: t.expectedHostKey,
        readyTimeoutMs: timeoutMs,
        signal: o.signal === undefined ? cut.signal : AbortSignal.any([o.signal, cut.signal]),
      });
    } catch (e) {
      const msg = e instanceof SshError ? e.message : String(e);
      return { alive: false, address, reason: `${address} answers ping but SSH fails: ${msg}` };
    }
    return await echo(session, address, timeoutMs, hardMs, cut.signal);
  } finally {
    clearTimeout(hard);
  }
}

async function echo(
  session: SshSession,
  address: string,
  timeoutMs: number,
  hardMs: number,
  cut: AbortSignal,
): Promise<Aliveness> {
  const base = session.newHostKey === undefined ? {} : { newHostKey: session.newHostKey };
  if (cut.aborted) session.destroy();
  let timer: NodeJS.Timeout | undefined;
  try {
    const res = await exec(session, ALIVE_COMMAND, {
      maxStdout: 1024,
      until: new Promise((r) => (timer = setTimeout(r, timeoutMs))),
    });
    const out = res.stdout.toString('utf8').trim();
    if (res.code === 0 && out === ALIVE_REPLY && !cut.aborted) {
      return { alive: true, address, reason: `${address} answers ping and SSH`, ...base };
    }
    const why =
      res.stopped || cut.aborted
        ? `timed out after ${String(timeoutMs)} ms`
        : res.overflow
          ? 'it sent more than 1 KiB of output'
          : `exit ${String(res.code ?? res.signal ?? 'unknown')}, output ${JSON.stringify(out.slice(0, 100))}`;
    return { alive: false, address, reason: `SSH echo on ${address} failed: ${why}`, ...base };
  } catch (e) {
    const why = cut.aborted
      ? `no channel within ${String(hardMs)} ms; the connection was closed`
      : e instanceof Error
        ? e.message
        : String(e);
    return { alive: false, address, reason: `SSH echo on ${address} failed: ${why}`, ...base };
  } finally {
    clearTimeout(timer);
    session.close();
  }
}
