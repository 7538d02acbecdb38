/**
 * Idle SSH connections kept between runs, per node. A node's roles run one after another (one
 * task per node), so its next run usually starts within a second of the last: reusing the
 * authenticated connection skips the TCP connect, the key exchange, authentication and sshd's
 * per-connection re-exec, which are most of a short run's cost on both ends.
 *
 * Only a connection whose run ended cleanly comes back; it is dropped when its peer closes it,
 * after `idleMs`, when the pool is full, or when the Node's recorded host key no longer matches
 * the key the connection verified. A reused connection may still be dead without knowing it (a
 * machine powered off holds no socket to reset): the jig opens its channel with a deadline and
 * falls back to a fresh connection, which is safe because the runner keys executions by attempt.
 */
import { createHash } from 'node:crypto';
import type { SshSession } from './ssh.ts';

export interface SessionPoolOptions {
  /** How long an idle connection is kept; default 10 s. */
  idleMs?: number;
  /** Idle connections kept in all; the oldest goes first. Default 256. */
  maxIdle?: number;
  /** Idle connections kept per target; default 2. */
  maxPerTarget?: number;
}

interface Idle {
  target: string;
  session: SshSession;
  timer: NodeJS.Timeout;
  onClose: () => void;
}

/** What a connection is for: one node at one address and port, authenticated with one key. */
export function poolTarget(node: string, host: string, port: number, privateKey: Buffer): string {
  const key = createHash('sha256').update(privateKey).digest('base64url');
  return `${node}\u0000${host}\u0000${String(port)}\u0000${key}`;
}

export class SessionPool {
  private readonly idleMs: number;
  private readonly maxIdle: number;
  private readonly maxPerTarget: number;
  /** In insertion order, so the first entry is the oldest. */
  private readonly idle = new Set<Idle>();
  private readonly byTarget = new Map<string, Idle[]>();
  private reusedCount = 0;

  constructor(o: SessionPoolOptions = {}) {
    this.idleMs = o.idleMs ?? 10_000;
    this.maxIdle = o.maxIdle ?? 256;
    this.maxPerTarget = o.maxPerTarget ?? 2;
  }

  /** Idle connections held now. */
  get size(): number {
    return this.idle.size;
  }

  /** Connections handed out again since start. */
  get reused(): number {
    return this.reusedCount;
  }

  /**
   * The newest idle connection to `target` whose verified host key is `expectedHostKey` (any, when
   * none is recorded yet), or undefined. Connections with another host key are closed.
   */
  take(target: string, expectedHostKey: string | undefined): SshSession | undefined {
    const list = this.byTarget.get(target);
    while (list !== undefined && list.length > 0) {
      const entry = list.pop() as Idle;
      this.forget(entry);
      if (!entry.session.open()) continue;
      if (expectedHostKey !== undefined && entry.session.hostKey !== expectedHostKey) {
        entry.session.close();
        continue;
      }
      this.reusedCount++;
      return entry.session;
    }
    return undefined;
  }

  /** Keeps `session` for the next run on `target`, or closes it when it cannot be kept. */
  give(target: string, session: SshSession): void {
    if (this.maxIdle === 0 || !session.open()) {
      session.close();
      return;
    }
    const list = this.byTarget.get(target) ?? [];
    while (list.length >= this.maxPerTarget) this.drop(list[0] as Idle);
    while (this.idle.size >= this.maxIdle) {
      const oldest = this.idle.values().next().value as Idle;
      this.drop(oldest);
    }
    const entry: Idle = {
      target,
      session,
      timer: setTimeout(() => {
        this.drop(entry);
      }, this.idleMs),
      onClose: () => {
        this.forget(entry);
      },
    };
    entry.timer.unref();
    session.client.once('close', entry.onClose);
    this.idle.add(entry);
    list.push(entry);
    this.byTarget.set(target, list);
  }

  /** Closes every idle connection (the operator is stopping). */
  close(): void {
    for (const entry of [...this.idle]) this.drop(entry);
  }

  private drop(entry: Idle): void {
    this.forget(entry);
    entry.session.close();
  }

  private forget(entry: Idle): void {
    if (!this.idle.delete(entry)) return;
    clearTimeout(entry.timer);
    entry.session.client.removeListener('close', entry.onClose);
    const list = this.byTarget.get(entry.target);
    if (list === undefined) return;
    const i = list.indexOf(entry);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byTarget.delete(entry.target);
  }
}
