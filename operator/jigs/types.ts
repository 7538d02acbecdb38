/** The jig interface: how a noderole's run is carried out (§1.7, §3.3). */
import type { Node, NodeRole, Role } from '../../generated/crowbar.ts';

export interface JigRun {
  noderole: Readonly<NodeRole>;
  role: Readonly<Role>;
  node: Readonly<Node>;
  /** Run number (runCount + 1 when it started); stays the same when a run is re-adopted. */
  number: number;
  /** The merged data the run was started with, captured when it started (§1.7, §4.1). */
  input: Record<string, unknown>;
  /** Aborted when the run is cancelled (node died, operator stopping). */
  signal: AbortSignal;
}

export type JigResult =
  | { ok: true; wall: Record<string, unknown>; logTail?: string }
  | { ok: false; message: string; logTail?: string; exitCode?: number };

export interface Jig {
  readonly name: string;
  /**
   * The jig's executions outlive the operator and are keyed by run attempt on the node (the
   * script jig's journal): running the same attempt again attaches to the execution or returns
   * its stored result, so an interrupted inline run may be re-adopted even for a destructive role.
   */
  readonly resumable?: boolean;
  /**
   * The jig does nothing outside the operator and returns no data (noop): its run starts and ends
   * in one status write (todo -> active), with nothing to execute, adopt or cancel in between.
   */
  readonly instant?: boolean;
  run(run: JigRun): Promise<JigResult>;
}

/** Resolves after `ms`, or rejects when `signal` aborts first. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
