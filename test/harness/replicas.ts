/**
 * Operator replicas under a kubelet stand-in (a fake for what this machine cannot have: a kubelet
 * restarting a Deployment's pods): a replica that exits on its own (a leader that lost its lease
 * exits by design) is started again, as its pod would be, and counted. The test's own kills are
 * not restarted here: the test decides when to start a replacement.
 */
import type { OperatorProc } from './operator.ts';

export class Replicas {
  readonly live: OperatorProc[] = [];
  /** Replicas the stand-in started again after they exited on their own. */
  restarts = 0;
  /** When each replica's process was seen to exit (pid -> Date.now()). */
  readonly exitedAt = new Map<number, number>();
  private readonly killed = new Set<number>();
  private stopping = false;
  private readonly startOne: () => Promise<OperatorProc>;

  constructor(startOne: () => Promise<OperatorProc>) {
    this.startOne = startOne;
  }

  async add(): Promise<OperatorProc> {
    const op = await this.startOne();
    const pid = op.proc.pid ?? 0;
    this.live.push(op);
    op.proc.once('exit', () => {
      this.exitedAt.set(pid, Date.now());
      const i = this.live.indexOf(op);
      if (i >= 0) this.live.splice(i, 1);
      if (this.stopping || this.killed.has(pid)) return;
      this.restarts++;
      void this.add().catch(() => undefined);
    });
    return op;
  }

  /** SIGKILLs `op` (not restarted by the stand-in) and waits for it to be gone. */
  async kill(op: OperatorProc): Promise<void> {
    this.killed.add(op.proc.pid ?? 0);
    if (op.proc.exitCode !== null || op.proc.signalCode !== null) return;
    const exited = new Promise((r) => op.proc.once('exit', r));
    op.proc.kill('SIGKILL');
    await exited;
  }

  /** Stops every replica (SIGTERM), restarting none. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const op of [...this.live]) await op.stop().catch(() => undefined);
  }
}
