/**
 * The NodeRole state machine (§2.2) and its ripple rules (§2.3, §2.4) as pure functions. Each
 * returns the changes to write, in order, computed over a private overlay of the world: the
 * input is never mutated. A refused transition (the model's InvalidTransition) changes nothing
 * and says what to do instead.
 */
import { messages, Scratch } from './overlay.ts';
import type { Outcome } from './states.ts';
import type { NodeRoleView, World } from './world.ts';
import { compareNames, isNodeAlive } from './world.ts';

export { messages } from './overlay.ts';

const refuse = (reason: string): Outcome => ({ ok: false, reason });
const missing = (name: string): Outcome => refuse(`noderole ${name} does not exist`);
const byCohort = (a: NodeRoleView, b: NodeRoleView): number =>
  a.cohort - b.cohort || compareNames(a.name, b.name);

/**
 * §2.2 commit!: a proposed noderole goes to todo when all its parents are active, else blocked.
 * A noderole that is not proposed is left alone (Digital Rebar: commit only refreshes its data),
 * so committing twice is harmless.
 */
export function commitNodeRole(world: World, name: string): Outcome {
  if (!world.noderoles.has(name)) return missing(name);
  const s = new Scratch(world);
  if (s.state(name) === 'proposed') s.blockOrTodo(name, messages.committed);
  return s.done();
}

function commitAll(world: World, pick: (nr: NodeRoleView) => boolean): Outcome {
  const s = new Scratch(world);
  // §2.5: in cohort order, so that a parent is committed before its children look at it.
  for (const nr of [...world.noderoles.values()].filter(pick).sort(byCohort)) {
    if (s.state(nr.name) === 'proposed') s.blockOrTodo(nr.name, messages.committed);
  }
  return s.done();
}

/** §1.5 / §2.5 Deployment commit: every proposed noderole of the deployment does commit!. */
export function commitDeployment(world: World, deployment: string): Outcome {
  if (!world.deployments.has(deployment)) return refuse(`deployment ${deployment} does not exist`);
  return commitAll(world, (nr) => nr.deployment === deployment);
}

/** §2.5 Node commit: the node's proposed noderoles do commit!, in cohort order. */
export function commitNode(world: World, node: string): Outcome {
  if (!world.nodes.has(node)) return refuse(`node ${node} does not exist`);
  return commitAll(world, (nr) => nr.node === node);
}

/** §2.2 transition!: allowed from todo, active or transition (a run starts). */
export function toTransition(
  world: World,
  name: string,
  message: string = messages.running,
): Outcome {
  const s = new Scratch(world);
  const state = s.state(name);
  if (state === undefined) return missing(name);
  if (state !== 'todo' && state !== 'active' && state !== 'transition') {
    return refuse(`noderole ${name} is ${state}; a run can start only from todo or active`);
  }
  s.set(name, 'transition', message);
  return s.done();
}

/**
 * §2.2 active! after a successful run, and the §2.3 ripple: direct children that are blocked and
 * now activatable go to todo. If the node is not alive the noderole does block_or_todo instead.
 * (Destructive roles are the runner's business: it skips the jig, then still calls this.)
 */
export function toActive(world: World, name: string, message?: string): Outcome {
  const s = new Scratch(world);
  const nr = s.nr(name);
  if (!nr) return missing(name);
  if (nr.state !== 'transition')
    return refuse(`noderole ${name} is ${nr.state}; only a running noderole can become active`);
  const node = world.nodes.get(nr.node);
  if (!node || !isNodeAlive(node)) {
    s.blockOrTodo(name, messages.nodeNotAlive(nr.node));
    return s.done();
  }
  const runCount = nr.runCount + 1;
  s.set(name, 'active', message ?? messages.active(runCount), { runCount });
  for (const child of s.childrenOf(name)) {
    if (s.state(child) === 'blocked' && s.waitingOn(child) === undefined)
      s.todo(child, messages.todo);
  }
  return s.done();
}

/**
 * §2.2 error!: ignored when blocked. Every transitive child not proposed or in transition goes
 * to blocked (a bulk update in the model: no hooks and no further ripple), naming the failed one.
 */
export function toError(world: World, name: string, message: string): Outcome {
  const s = new Scratch(world);
  const state = s.state(name);
  if (state === undefined) return missing(name);
  if (state === 'blocked') return s.done(); // §2.2: error! is ignored when blocked
  s.set(name, 'error', message);
  const seen = new Set<string>([name]);
  const queue = [...s.childrenOf(name)];
  for (let child = queue.shift(); child !== undefined; child = queue.shift()) {
    if (seen.has(child)) continue;
    seen.add(child);
    const cs = s.state(child);
    if (cs !== undefined && cs !== 'proposed' && cs !== 'transition')
      s.set(child, 'blocked', messages.blockedByError(name));
    queue.push(...s.childrenOf(child));
  }
  return s.done();
}

/** §2.2 todo!: refused unless all parents are active ("Not all parents are ACTIVE"). */
export function todo(world: World, name: string): Outcome {
  const s = new Scratch(world);
  if (!s.nr(name)) return missing(name);
  const waiting = s.waitingOn(name);
  if (waiting !== undefined)
    return refuse(`noderole ${name} cannot go to todo: ${s.waitingMessage(name)}`);
  s.todo(name, messages.todo);
  return s.done();
}

/** §2.2 block!: always allowed; direct children in todo or error are blocked in turn. */
export function block(world: World, name: string, message?: string): Outcome {
  const s = new Scratch(world);
  if (!s.nr(name)) return missing(name);
  s.block(name, message ?? s.waitingMessage(name));
  return s.done();
}

/**
 * The API retry (§2.2, §2.6): todo! from error only, and only once all parents are active. The
 * change records `observedRetry` so that a raised `spec.retry` is acted on once.
 */
export function retry(world: World, name: string): Outcome {
  const s = new Scratch(world);
  const nr = s.nr(name);
  if (!nr) return missing(name);
  if (nr.state !== 'error')
    return refuse(`noderole ${name} is ${nr.state}; only a noderole in error can be retried`);
  const waiting = s.waitingOn(name);
  if (waiting !== undefined) {
    return refuse(
      `cannot retry ${name} yet: ${s.waitingMessage(name)}; get its parents active first`,
    );
  }
  s.todo(name, messages.retried, { observedRetry: nr.retry });
  return s.done();
}

/**
 * §3.6 poke, for a change of the run input (a role's template, a deployment's data): an active
 * noderole does block_or_todo and runs again; its descendants are blocked and follow it (§2.3).
 * Other states already run with fresh input when they next run, so they are left alone.
 */
export function rerun(world: World, name: string, message: string): Outcome {
  const s = new Scratch(world);
  const nr = s.nr(name);
  if (!nr) return missing(name);
  if (nr.state !== 'active') return s.done();
  if (s.waitingOn(name) === undefined) s.todo(name, message);
  else s.block(name, s.waitingMessage(name));
  s.blockDescendants(name);
  return s.done();
}

/** §2.2 propose!: from any state; children are untouched "until we go back out of PROPOSED". */
export function propose(world: World, name: string): Outcome {
  const s = new Scratch(world);
  if (!s.nr(name)) return missing(name);
  s.set(name, 'proposed', messages.proposed);
  return s.done();
}

/**
 * §2.4 node death: in cohort order every noderole of the node that is not proposed does
 * deactivate (block_or_todo). Roots go to todo, their descendants on the node to blocked. The
 * caller also cancels the node's runs in flight.
 */
export function nodeDied(world: World, node: string): Outcome {
  if (!world.nodes.has(node)) return refuse(`node ${node} does not exist`);
  const s = new Scratch(world);
  const mine = [...world.noderoles.values()].filter((nr) => nr.node === node).sort(byCohort);
  for (const nr of mine) {
    if (s.state(nr.name) !== 'proposed') s.blockOrTodo(nr.name, messages.nodeNotAlive(node));
  }
  return s.done();
}

/**
 * §2.4 node alive again: no state changes. Its todo noderoles are runnable again, and the
 * annealer re-runs the chain from the roots ([SEED] "rerun all of the usual discovery roles").
 */
export function nodeAlive(world: World, node: string): Outcome {
  if (!world.nodes.has(node)) return refuse(`node ${node} does not exist`);
  return { ok: true, changes: [] };
}

/**
 * After binding added parents to existing noderoles: a todo noderole that is no longer
 * activatable is blocked, keeping "todo implies all parents active" (§3.1) true. Active ones are
 * left as they are, as the 2015 model does (§6.1 bind_cluster_children adds edges only).
 */
export function parentsChanged(world: World, names: Iterable<string>): Outcome {
  const s = new Scratch(world);
  for (const name of names) {
    if (s.state(name) === 'todo' && s.waitingOn(name) !== undefined)
      s.block(name, s.waitingMessage(name));
  }
  return s.done();
}
