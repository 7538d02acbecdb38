/**
 * Node aliveness (§10.1): a node is alive when one of its admin addresses answers ping **and** a
 * root SSH `echo alive` on that address succeeds. Host keys follow the script jig's TOFU rule: a
 * changed key makes the node not alive, with the same message the jig gives.
 */
import { execFile } from 'node:child_process';
import { ALIVE_COMMAND, ALIVE_REPLY } from './protocol.ts';
import { SshError, connect, exec } from './ssh.ts';

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
  let session;
  try {
    session = await connect({
      node: t.node,
      host: address,
      ...(o.port === undefined ? {} : { port: o.port }),
      privateKey: o.privateKey,
      expectedHostKey: t.expectedHostKey,
      readyTimeoutMs: timeoutMs,
      ...(o.signal === undefined ? {} : { signal: o.signal }),
    });
  } catch (e) {
    const msg = e instanceof SshError ? e.message : String(e);
    return { alive: false, address, reason: `${address} answers ping but SSH fails: ${msg}` };
  }
  try {
    let timer: NodeJS.Timeout | undefined;
    const res = await exec(session, ALIVE_COMMAND, {
      maxStdout: 1024,
      until: new Promise((r) => (timer = setTimeout(r, timeoutMs))),
    });
    clearTimeout(timer);
    const out = res.stdout.toString('utf8').trim();
    const base = session.newHostKey === undefined ? {} : { newHostKey: session.newHostKey };
    if (res.code === 0 && out === ALIVE_REPLY) {
      return { alive: true, address, reason: `${address} answers ping and SSH`, ...base };
    }
    const why = res.stopped
      ? `timed out after ${timeoutMs} ms`
      : `exit ${res.code ?? res.signal ?? 'unknown'}, output ${JSON.stringify(out.slice(0, 100))}`;
    return { alive: false, address, reason: `SSH echo on ${address} failed: ${why}`, ...base };
  } catch (e) {
    return { alive: false, address, reason: `SSH echo on ${address} failed: ${String(e)}` };
  } finally {
    session.close();
  }
}
