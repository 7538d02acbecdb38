/**
 * Where a run executes. `inline` runs the jig inside the operator process (the lab, small sites);
 * `job` runs it in a Kubernetes Job (see operator/executors/). Either way the annealer awaits a
 * JigResult; the executor decides how the work happens and how it is found again after a
 * restart.
 */
import type { Jig, JigResult, JigRun } from '../../jigs/types.ts';

export interface ExecRequest extends JigRun {
  jig: Jig;
  /** Deterministic run id: `<noderole>.run-<number>` (a Job name derives from it). */
  id: string;
}

export interface Executor {
  readonly name: 'inline' | 'job';
  /** Starts the run and resolves with its result; rejects with signal.reason when cancelled. */
  execute(req: ExecRequest): Promise<JigResult>;
  /**
   * After an operator restart, re-attaches to a run that a previous leader started. Returns
   * undefined when the run cannot be resumed (the annealer then decides what to do).
   */
  resume(req: ExecRequest): Promise<JigResult> | undefined;
}

/**
 * Runs jigs in this process. An inline run dies with its process, so resuming runs the jig again
 * with the same run; the script jig's node-side journal then re-attaches to the execution the
 * previous process started (or takes its stored result) instead of running the script twice.
 */
export const inlineExecutor: Executor = {
  name: 'inline',
  execute: (req) => req.jig.run(req),
  resume: (req) => req.jig.run(req),
};
