/**
 * SSH I/O for the script jig and aliveness (ssh2): connect as root with a private key, verify the
 * host key by trust on first use, and run one command with bounded output and a deadline.
 *
 * The TCP socket is ours (ssh2's `sock` option), so {@link SshSession.destroy} can always end the
 * connection at once: a hostile or wedged server that answers keepalives but never confirms a
 * channel open or close would otherwise hold the session (ssh2's own `end()` waits for the peer,
 * and its `destroy()` does nothing once the socket was ended). Destroying the socket makes ssh2
 * fail every pending channel open and close every open channel, so every `exec` settles.
 */
import { Socket, connect as tcpConnect } from 'node:net';
import { Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import { decideHostKey, fingerprint } from './protocol.ts';

export type SshErrorKind = 'unreachable' | 'auth' | 'host-key' | 'timeout' | 'closed' | 'other';

/** A failed SSH operation, with a message that tells the user what went wrong. */
export class SshError extends Error {
  readonly kind: SshErrorKind;
  /** The command was never started: its channel or exec request failed (exec only). */
  readonly notStarted: boolean;
  constructor(
    kind: SshErrorKind,
    message: string,
    options?: ErrorOptions & { notStarted?: boolean },
  ) {
    super(message, options);
    this.name = 'SshError';
    this.kind = kind;
    this.notStarted = options?.notStarted ?? false;
  }
}

export interface SshTarget {
  /** Node name, for messages. */
  node: string;
  host: string;
  port?: number;
  /** Root's private key (OpenSSH or PEM), from a Secret. */
  privateKey: Buffer;
  /** The fingerprint recorded on the Node (status.sshHostKey); absent on first use. */
  expectedHostKey?: string | undefined;
  /** Handshake + authentication deadline (ssh2 readyTimeout). Default 10 s. */
  readyTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface SshSession {
  readonly client: Client;
  /** The server's host key fingerprint (SHA256:...). */
  readonly hostKey: string;
  /** Set when the key was seen for the first time and should be recorded on the Node. */
  readonly newHostKey: string | undefined;
  /** Ends the session politely (SSH disconnect), and destroys the socket if the peer lingers. */
  close(): void;
  /** Destroys the connection now: pending channel opens fail, open channels close. */
  destroy(): void;
  /** The connection is up, as far as this side knows: not closed, ended or destroyed. */
  open(): boolean;
}

/** How long {@link SshSession.close} waits for the peer to close before destroying the socket. */
export const CLOSE_GRACE_MS = 2000;

/** Connects and authenticates as root. Rejects with an {@link SshError}. */
export function connect(t: SshTarget): Promise<SshSession> {
  const client = new Client();
  let sock: Socket | undefined;
  const where = `${t.node} (${t.host}:${t.port ?? 22})`;
  let seen: string | undefined;
  let refused: string | undefined;
  let record: string | undefined;
  let closed = false;
  client.once('close', () => {
    closed = true;
  });
  return new Promise<SshSession>((resolve, reject) => {
    let settled = false;
    const finish = (err: SshError | undefined): void => {
      if (settled) return;
      settled = true;
      t.signal?.removeEventListener('abort', onAbort);
      if (err) {
        client.end();
        sock?.destroy();
        reject(err);
        return;
      }
      const s = sock;
      resolve({
        client,
        hostKey: seen ?? '',
        newHostKey: record,
        close: () => {
          client.end();
          if (s && !s.destroyed) setTimeout(() => s.destroy(), CLOSE_GRACE_MS).unref();
        },
        destroy: () => {
          s?.destroy();
        },
        open: () => s !== undefined && !s.destroyed && s.writable && !closed,
      });
    };
    const onAbort = (): void => {
      finish(
        new SshError('closed', `connection to ${where} cancelled`, { cause: t.signal?.reason }),
      );
    };
    if (t.signal?.aborted) {
      onAbort();
      return;
    }
    t.signal?.addEventListener('abort', onAbort, { once: true });
    client.on('ready', () => {
      finish(undefined);
    });
    client.on('error', (e: Error & { level?: string; code?: string }) => {
      finish(classify(e, where, refused));
    });
    client.on('close', () => {
      finish(new SshError('closed', `connection to ${where} closed during the handshake`));
    });
    try {
      sock = tcpConnect({ host: t.host, port: t.port ?? 22 });
    } catch (e) {
      finish(new SshError('unreachable', `cannot reach ${where}: ${(e as Error).message}`));
      return;
    }
    const cfg: ConnectConfig = {
      sock,
      username: 'root',
      privateKey: t.privateKey,
      readyTimeout: t.readyTimeoutMs ?? 10_000,
      keepaliveInterval: 15_000,
      keepaliveCountMax: 4,
      hostVerifier: (key: Buffer): boolean => {
        seen = fingerprint(key);
        const d = decideHostKey(t.node, t.expectedHostKey, seen);
        if (!d.accept) {
          refused = d.message;
          return false;
        }
        record = d.record;
        return true;
      },
    };
    try {
      client.connect(cfg);
    } catch (e) {
      // ssh2 throws synchronously on a key it cannot parse.
      finish(
        new SshError('auth', `cannot use the SSH private key: ${(e as Error).message}`, {
          cause: e,
        }),
      );
    }
  });
}

function classify(
  e: Error & { level?: string; code?: string },
  where: string,
  refusedHostKey: string | undefined,
): SshError {
  if (refusedHostKey !== undefined) return new SshError('host-key', refusedHostKey, { cause: e });
  if (e.level === 'client-authentication') {
    return new SshError(
      'auth',
      `${where} refused authentication as root with the configured key: check root's authorized_keys on the node`,
      { cause: e },
    );
  }
  if (e.level === 'client-timeout') {
    return new SshError('timeout', `timed out connecting to ${where}: ${e.message}`, {
      cause: e,
    });
  }
  const code = e.code ?? '';
  if (['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET'].includes(code)) {
    const why =
      code === 'ECONNREFUSED' ? 'connection refused: is sshd running?' : `${code}: ${e.message}`;
    return new SshError('unreachable', `cannot reach ${where}: ${why}`, { cause: e });
  }
  return new SshError('other', `SSH to ${where} failed: ${e.message}`, { cause: e });
}

export interface ExecOptions {
  /** Written to the command's stdin, then stdin is closed. */
  stdin?: Buffer;
  /** Stop reading (and fail) past this many stdout bytes. */
  maxStdout: number;
  /** Keep at most this many bytes of stderr (the last ones). */
  maxStderr?: number;
  /** Called with each chunk of stdout as it arrives. */
  onStdout?: (chunk: Buffer) => void;
  /** Resolves when the command ends, or when this promise resolves first (the channel is closed). */
  until?: Promise<unknown>;
  /**
   * The command's channel must be open and its exec request answered within this time, or the
   * whole session is destroyed and exec rejects with `notStarted` (a reused connection to a
   * machine that went away without resetting it). Default: no deadline of its own.
   */
  openTimeoutMs?: number;
}

export interface ExecResult {
  code: number | null;
  signal: string | undefined;
  stdout: Buffer;
  stderr: Buffer;
  /** The command sent more stdout than allowed; the channel was closed. */
  overflow: boolean;
  /** The channel was closed because `until` resolved. */
  stopped: boolean;
}

/**
 * Runs `command` on an open session. The command text must be constant: never put data in it.
 * It settles when the command's channel closes, and also at once when stdout overflows or `until`
 * resolves: the channel is then closed from our side without waiting for the server to confirm
 * (a hostile server may never do so), and the caller ends the session. When the session is
 * destroyed before the channel opened, it rejects.
 */
export function exec(s: SshSession, command: string, o: ExecOptions): Promise<ExecResult> {
  return new Promise<ExecResult>((resolve, reject) => {
    let done = false;
    let untilFired = false;
    let stopNow: (() => void) | undefined;
    void o.until?.then(() => {
      untilFired = true;
      stopNow?.();
    });
    let openTimedOut = false;
    const openTimer =
      o.openTimeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            openTimedOut = true;
            s.destroy();
          }, o.openTimeoutMs);
    const onOpen = (err: Error | undefined, ch: ClientChannel): void => {
      clearTimeout(openTimer);
      if (err) {
        done = true;
        const why = openTimedOut
          ? `no channel within ${String(o.openTimeoutMs)} ms; the connection was closed`
          : err.message;
        reject(
          new SshError(openTimedOut ? 'timeout' : 'other', `cannot start a command: ${why}`, {
            cause: err,
            notStarted: true,
          }),
        );
        return;
      }
      const out: Buffer[] = [];
      let outLen = 0;
      let errBuf = Buffer.alloc(0);
      const maxErr = o.maxStderr ?? 4096;
      let overflow = false;
      let stopped = false;
      let code: number | null = null;
      let sig: string | undefined;
      const settle = (): void => {
        if (done) return;
        done = true;
        resolve({
          code,
          signal: sig,
          stdout: Buffer.concat(out),
          stderr: errBuf,
          overflow,
          stopped,
        });
      };
      ch.on('data', (d: Buffer) => {
        if (overflow || done) return;
        outLen += d.length;
        if (outLen > o.maxStdout) {
          overflow = true;
          ch.close();
          settle();
          return;
        }
        out.push(d);
        o.onStdout?.(d);
      });
      ch.stderr.on('data', (d: Buffer) => {
        if (done) return;
        errBuf = Buffer.concat([errBuf, d]);
        if (errBuf.length > maxErr) errBuf = errBuf.subarray(errBuf.length - maxErr);
      });
      ch.on('exit', (c: number | null, signalName?: string) => {
        code = c;
        sig = signalName;
      });
      ch.on('close', settle);
      ch.on('error', () => {
        // 'close' follows and reports what arrived.
      });
      stopNow = () => {
        if (done) return;
        stopped = true;
        ch.close();
        settle();
      };
      if (untilFired) stopNow();
      if (o.stdin) ch.end(o.stdin);
      else ch.end();
    };
    try {
      s.client.exec(command, onOpen);
    } catch (e) {
      // ssh2 throws at once when the connection is already gone.
      clearTimeout(openTimer);
      done = true;
      reject(
        new SshError('closed', `cannot start a command: ${(e as Error).message}`, {
          cause: e,
          notStarted: true,
        }),
      );
    }
  });
}
