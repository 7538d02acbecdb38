/**
 * Properties of the annealer over random acyclic role graphs and random node sets: the
 * scheduler's caps, convergence, error blocking and recovery, node death and return.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyChanges, withNode } from './apply.ts';
import {
  buildScenario,
  commitAllDeployments,
  nodeName,
  scenario,
} from './arbitraries.test-helper.ts';
import { descendantsOf, statesOf } from './fixtures.test-helper.ts';
import { notRunnableReason, pickRuns } from './scheduler.ts';
import { simulate } from './simulate.test-helper.ts';
import type { Outcome } from './states.ts';
import { NODE_ROLE_STATES } from './states.ts';
import {
  commitDeployment,
  nodeAlive,
  nodeDied,
  retry,
  toError,
  toTransition,
} from './transitions.ts';
import type { World } from './world.ts';

function apply(w: World, outcome: Outcome): World {
  if (!outcome.ok) throw new Error(outcome.reason);
  return applyChanges(w, outcome.changes);
}

/** Scenario built, deployments committed, noderoles committed (§2.5). */
function committed(s: Parameters<typeof buildScenario>[0]): World {
  let w = commitAllDeployments(buildScenario(s));
  for (const dep of ['system', 'd1']) w = apply(w, commitDeployment(w, dep));
  return w;
}

/** Checks the §3.1/§3.4 guarantees of one pass's picks. */
function checkPicks(
  w: World,
  running: ReadonlySet<string>,
  picked: readonly string[],
  max: number,
): void {
  expect(picked.length + running.size).toBeLessThanOrEqual(Math.max(max, running.size));
  const nodeOf = (n: string) => w.noderoles.get(n)?.node;
  const pickedNodes = picked.map(nodeOf);
  expect(new Set(pickedNodes).size, 'one per node').toBe(picked.length);
  const runningNodes = new Set([...running].map(nodeOf));
  for (const name of picked) {
    const nr = w.noderoles.get(name)!;
    expect(notRunnableReason(w, nr)).toBeUndefined();
    expect(runningNodes.has(nr.node), 'no second run on a node').toBe(false);
    expect(
      [...w.noderoles.values()].some(
        (o) => o.node === nr.node && (o.state === 'transition' || o.state === 'error'),
      ),
    ).toBe(false);
  }
}

const allActive = (w: World) => [...w.noderoles.values()].every((nr) => nr.state === 'active');

/** Converges with noop jigs; finishing only some runs per round when `k` > 1. */
function converge(w: World, max: number, k = 1) {
  return simulate(w, {
    maxConcurrent: max,
    finish: (xs, round) => {
      const some = xs.filter((_, i) => (round + i) % k === 0);
      return some.length > 0 ? some : xs;
    },
    onPick: (world, running, picked) => {
      checkPicks(world, running, picked, max);
    },
  });
}

describe('annealer properties', () => {
  it('binding: parents exist, cohorts rise, implicit parents share the node, cluster children see every peer', () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const w = buildScenario(s);
        for (const nr of w.noderoles.values()) {
          const role = w.roles.get(nr.role)!;
          const parents = nr.parents.map((p) => w.noderoles.get(p)!);
          for (const p of parents) expect(nr.cohort).toBeGreaterThan(p.cohort);
          for (const req of role.requires) {
            const hits = parents.filter((p) => p.role === req);
            expect(hits.length, `${nr.name} has a ${req} parent`).toBeGreaterThan(0);
            const reqRole = w.roles.get(req)!;
            if (reqRole.flags.has('implicit')) expect(hits.map((p) => p.node)).toContain(nr.node);
            if (reqRole.flags.has('cluster')) {
              const peers = [...w.noderoles.values()].filter(
                (o) => o.role === req && o.deployment === hits[0]!.deployment,
              );
              for (const peer of peers) expect(nr.parents).toContain(peer.name);
            }
          }
        }
      }),
    );
  });

  it('(a) pickRuns: one per node, never above the cap counting runs in flight, and as many as allowed', () => {
    fc.assert(
      fc.property(
        scenario,
        fc.array(fc.constantFrom(...NODE_ROLE_STATES), { minLength: 1 }),
        fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
        fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
        fc.array(fc.boolean(), { minLength: 1 }),
        fc.nat({ max: 6 }),
        (s, states, alive, available, runMask, max) => {
          let w = commitAllDeployments(buildScenario(s));
          const names = [...w.noderoles.keys()].sort();
          w = applyChanges(
            w,
            names.map((name, i) => ({ name, state: states[i % states.length]!, message: '' })),
          );
          for (let i = 0; i < s.nodes; i++)
            w = withNode(w, nodeName(i), { alive: alive[i]!, available: available[i]! });
          const running = new Set(names.filter((_, i) => runMask[i % runMask.length]));
          const picked = pickRuns(w, { maxConcurrent: max, running });
          checkPicks(w, running, picked, max);
          // Order (§3.1): cohort, then name.
          const keys = picked.map((n) => [w.noderoles.get(n)!.cohort, n] as const);
          expect([...keys].sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : 1))).toEqual(keys);
          // Maximal: when slots are left, every runnable noderole sits on a taken node.
          if (picked.length < max - running.size) {
            const taken = new Set([...running, ...picked].map((n) => w.noderoles.get(n)!.node));
            for (const nr of w.noderoles.values()) {
              const frozen = [...w.noderoles.values()].some(
                (o) => o.node === nr.node && (o.state === 'transition' || o.state === 'error'),
              );
              if (notRunnableReason(w, nr) === undefined && !frozen)
                expect(taken.has(nr.node)).toBe(true);
            }
          }
        },
      ),
    );
  });

  it('(b) a committed acyclic graph on alive, available nodes with noop jigs converges to all active', () => {
    fc.assert(
      fc.property(
        scenario,
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 3 }),
        (s, max, k) => {
          const w = committed(s);
          const sim = converge(w, max, k);
          expect(sim.fixpoint).toBe(true);
          expect(statesOf(sim.world)).toEqual(
            Object.fromEntries([...w.noderoles.keys()].map((n) => [n, 'active'])),
          );
          // Every noderole ran exactly once.
          expect([...sim.started].sort()).toEqual([...w.noderoles.keys()].sort());
        },
      ),
    );
  });

  it('(c) an error blocks exactly its descendants not proposed or in transition; retry recovers', () => {
    fc.assert(
      fc.property(
        scenario,
        fc.nat(),
        fc.array(fc.boolean(), { minLength: 1 }),
        (s, pick, inFlightMask) => {
          let w = converge(committed(s), 10).world;
          expect(allActive(w)).toBe(true);
          const names = [...w.noderoles.keys()].sort();
          const failed = names[pick % names.length]!;
          const desc = descendantsOf(w, failed);
          // Some descendants are re-running (transition) when the failure lands.
          const inFlight = [...desc].sort().filter((_, i) => inFlightMask[i % inFlightMask.length]);
          for (const name of inFlight) w = apply(w, toTransition(w, name));
          w = apply(w, toTransition(w, failed));
          const before = statesOf(w);
          w = apply(w, toError(w, failed, 'exit status 1'));
          for (const [name, state] of Object.entries(statesOf(w))) {
            if (name === failed) expect(state).toBe('error');
            else if (desc.has(name))
              expect(state, name).toBe(inFlight.includes(name) ? 'transition' : 'blocked');
            else expect(state, name).toBe(before[name]);
          }
          // The runs in flight finish, the user retries, the annealer reconverges.
          w = simulate(w, { maxConcurrent: 10, running: inFlight }).world;
          expect(w.noderoles.get(failed)?.state).toBe('error');
          w = apply(w, retry(w, failed));
          const sim = converge(w, 3);
          expect(sim.fixpoint).toBe(true);
          expect(allActive(sim.world)).toBe(true);
        },
      ),
    );
  });

  it('(d) node death leaves none of its noderoles active or running; alive again reconverges', () => {
    fc.assert(
      fc.property(scenario, fc.nat(), fc.boolean(), (s, pick, rerunning) => {
        let w = converge(committed(s), 10).world;
        const dead = nodeName(pick % s.nodes);
        const mine = [...w.noderoles.values()]
          .filter((nr) => nr.node === dead)
          .map((nr) => nr.name)
          .sort();
        // Maybe a re-run is in flight on the node when it dies (§11.5).
        const first = mine[0];
        if (rerunning && first !== undefined) w = apply(w, toTransition(w, first));
        w = withNode(w, dead, { alive: false });
        w = apply(w, nodeDied(w, dead));
        for (const nr of w.noderoles.values()) {
          if (nr.node === dead) expect(['active', 'transition']).not.toContain(nr.state);
          else expect(nr.state).toBe('active');
        }
        // While dead nothing of it runs.
        const frozen = simulate(w, { maxConcurrent: 10 });
        expect(frozen.started.filter((n) => mine.includes(n))).toEqual([]);
        w = withNode(frozen.world, dead, { alive: true });
        w = apply(w, nodeAlive(w, dead));
        const sim = converge(w, 3, 2);
        expect(sim.fixpoint).toBe(true);
        expect(allActive(sim.world)).toBe(true);
      }),
    );
  });
});
