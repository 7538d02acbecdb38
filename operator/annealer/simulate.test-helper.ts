/**
 * A test-only annealer simulator over the pure core: each round runs one {@link step} (pick runs,
 * move them to transition), then finishes runs (noop jig: success unless `fail` says otherwise)
 * through {@link finishRun}, until nothing changes.
 */
import { applyChanges } from './apply.ts';
import { finishRun, step } from './converge.ts';
import type { World } from './world.ts';

/** How the simulated annealer behaves. */
export interface SimulateOptions {
  readonly maxConcurrent: number;
  /** Give up after this many rounds (default 10,000). */
  readonly maxRounds?: number;
  /** Runs already in flight when the simulation starts (noderoles in transition). */
  readonly running?: Iterable<string>;
  /** The runs in flight that finish this round; default all of them. */
  readonly finish?: (inFlight: readonly string[], round: number) => readonly string[];
  /** An error message makes the run fail; undefined makes it succeed. */
  readonly fail?: (name: string, world: World) => string | undefined;
  /** Sees every pass's picks, with the world and the runs in flight before the pass. */
  readonly onPick?: (world: World, running: ReadonlySet<string>, picked: readonly string[]) => void;
}

/** Where a simulation ended. */
export interface Simulation {
  readonly world: World;
  readonly rounds: number;
  /** Every run started, in order. */
  readonly started: readonly string[];
  /** False when maxRounds was reached first. */
  readonly fixpoint: boolean;
}

/** Runs the annealer until no run is in flight, nothing can start and no change is pending. */
export function simulate(initial: World, options: SimulateOptions): Simulation {
  const maxRounds = options.maxRounds ?? 10_000;
  const running = new Set<string>(options.running);
  const started: string[] = [];
  let world = initial;
  for (let round = 0; round < maxRounds; round++) {
    const pass = step(world, { maxConcurrent: options.maxConcurrent, running });
    options.onPick?.(world, running, pass.start);
    world = pass.world;
    for (const name of pass.start) {
      running.add(name);
      started.push(name);
    }
    if (running.size === 0 && pass.changes.length === 0)
      return { world, rounds: round, started, fixpoint: true };
    const finishing = options.finish ? options.finish([...running], round) : [...running];
    for (const name of finishing) {
      running.delete(name);
      const message = options.fail?.(name, world);
      const outcome = finishRun(
        world,
        name,
        message === undefined ? { ok: true } : { ok: false, message },
      );
      // A refused finish (the noderole left transition, e.g. its node died) changes nothing.
      if (outcome.ok) world = applyChanges(world, outcome.changes);
    }
  }
  return { world, rounds: maxRounds, started, fixpoint: false };
}
