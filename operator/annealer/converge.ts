/**
 * One annealer pass as a pure function: act on retries people asked for, then pick the runs to
 * start (§3.2 Run.run!). The operator writes the changes, starts the runs and calls
 * {@link finishRun} when each ends; those state changes trigger the next pass (§3.3: the
 * annealing loop is driven by changes, not timers).
 */
import { applyChanges } from './apply.ts';
import { pickRuns } from './scheduler.ts';
import type { Outcome, StateChange } from './states.ts';
import { retry, toActive, toError, toTransition } from './transitions.ts';
import { viewsWhere, type World } from './world.ts';

/** Limits of a pass and what is running. */
export interface StepOptions {
  /** Cluster-wide cap on runs in flight (§3.4). */
  readonly maxConcurrent: number;
  /** Names of noderoles whose runs are in flight. */
  readonly running: ReadonlySet<string>;
}

/** What one pass decided. */
export interface Step {
  /** Status changes to write, in order: retries first, then the runs starting (to transition). */
  readonly changes: readonly StateChange[];
  /** Noderoles whose runs to start now, in start order. */
  readonly start: readonly string[];
  /** The world with `changes` applied. */
  readonly world: World;
}

/** Noderoles whose `spec.retry` was raised past the value the operator acted on. */
export function pendingRetries(world: World): string[] {
  return viewsWhere(
    world,
    world.retrying,
    world.retrying !== undefined,
    (nr) => nr.retry > nr.observedRetry,
  )
    .map((nr) => nr.name)
    .sort();
}

/**
 * One pass: pending retries (§2.2 API retry = todo!), then §3.1 runnable selection moved to
 * transition. A refused retry is still recorded (observedRetry) with the refusal as the message,
 * so that it is not attempted again until the user raises spec.retry once more.
 */
export function step(world: World, options: StepOptions): Step {
  const changes: StateChange[] = [];
  let current = world;
  const take = (out: readonly StateChange[]): void => {
    changes.push(...out);
    current = applyChanges(current, out);
  };
  for (const name of pendingRetries(current)) {
    const outcome = retry(current, name);
    const nr = current.noderoles.get(name);
    if (outcome.ok) take(outcome.changes);
    else if (nr)
      take([{ name, state: nr.state, message: outcome.reason, observedRetry: nr.retry }]);
  }
  const start = pickRuns(current, options);
  for (const name of start) {
    const outcome = toTransition(current, name);
    if (outcome.ok) take(outcome.changes);
  }
  return { changes, start, world: current };
}

/** How a run ended, as the runner reports it. */
export type RunResult =
  | { readonly ok: true; readonly message?: string }
  | { readonly ok: false; readonly message: string };

/**
 * §3.3 step 6: a finished run makes its noderole active (or block_or_todo when the node died,
 * which {@link toActive} handles); a failed one makes it error.
 */
export function finishRun(world: World, name: string, result: RunResult): Outcome {
  if (!result.ok) return toError(world, name, result.message);
  return result.message === undefined
    ? toActive(world, name)
    : toActive(world, name, result.message);
}
