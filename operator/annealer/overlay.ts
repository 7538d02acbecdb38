/**
 * A private, copy-on-write overlay of noderole states over a read-only world, with the §2.2
 * primitives (todo!, block!, block_or_todo) that the transitions compose, and the messages they
 * write. Internal to the annealer: use the functions of transitions.ts.
 */
import type { NodeRoleState, Outcome, StateChange } from './states.ts';
import type { NodeRoleView, World } from './world.ts';
import { childrenIndex } from './world.ts';

/** Human messages the transitions write into `status.message`. */
export const messages = {
  todo: 'all parents are active; waiting to run',
  committed: 'committed; all parents are active; waiting to run',
  retried: 'retried; waiting to run',
  running: 'running',
  proposed: 'proposed: commit the deployment to run it',
  waitingFor: (parent: string, state: NodeRoleState | 'missing'): string =>
    `waiting for parent ${parent} (${state})`,
  blockedByError: (origin: string): string => `blocked: ${origin} is in error; fix it and retry it`,
  nodeNotAlive: (node: string): string => `node ${node} is not alive; runs again when it is`,
  active: (run: number): string => `active after run ${run}`,
  recommitted: 'committed again; runs again once all parents are active',
  inputChanged: (what: string): string => `its run input changed (${what}); runs again`,
  waitingToRun: (reason: string): string => `waiting to run: ${reason}`,
  parentCycle: (named: readonly string[], total: number): string =>
    `its status.parents form a cycle (${named.join(', ')}${total > named.length ? `, and ${String(total - named.length)} more` : ''}), which the operator never writes: someone edited status by hand; delete these noderoles and bind them again`,
};

/** A noderole's pending status. */
interface Overlay {
  state: NodeRoleState;
  message: string;
  runCount?: number;
  observedRetry?: number;
}

/** A private, copy-on-write view of noderole states over a read-only world. */
export class Scratch {
  readonly world: World;
  private readonly overlay = new Map<string, Overlay>();
  private children: ReadonlyMap<string, readonly string[]> | undefined;

  constructor(world: World) {
    this.world = world;
  }

  nr(name: string): NodeRoleView | undefined {
    return this.world.noderoles.get(name);
  }

  state(name: string): NodeRoleState | undefined {
    return this.overlay.get(name)?.state ?? this.nr(name)?.state;
  }

  childrenOf(name: string): readonly string[] {
    this.children ??= this.world.children ?? childrenIndex(this.world.noderoles);
    return this.children.get(name) ?? [];
  }

  set(name: string, state: NodeRoleState, message: string, extra: Partial<Overlay> = {}): void {
    const previous = this.overlay.get(name);
    // Re-insert so that the change list is ordered by each noderole's last change.
    this.overlay.delete(name);
    this.overlay.set(name, { ...previous, ...extra, state, message });
  }

  /** The first parent that is not active, or undefined when the noderole is activatable (§2.1). */
  waitingOn(name: string): string | undefined {
    const parents = this.nr(name)?.parents ?? [];
    return parents.find((p) => this.state(p) !== 'active');
  }

  waitingMessage(name: string): string {
    const p = this.waitingOn(name);
    return p === undefined ? messages.todo : messages.waitingFor(p, this.state(p) ?? 'missing');
  }

  /** §2.2 block_or_todo: activatable? ? todo! : block!. */
  blockOrTodo(name: string, todoMessage: string = messages.todo): void {
    if (this.waitingOn(name) === undefined) this.todo(name, todoMessage);
    else this.block(name, this.waitingMessage(name));
  }

  /** §2.2 todo! (caller has checked activatable): direct children in error or todo get block!. */
  todo(name: string, message: string, extra: Partial<Overlay> = {}): void {
    this.set(name, 'todo', message, extra);
    this.blockChildren(name, 'todo');
  }

  /** §2.2 block!: "we can pretty much always go to BLOCKED"; ripples like todo!. */
  block(name: string, message: string): void {
    this.set(name, 'blocked', message);
    this.blockChildren(name, 'blocked');
  }

  /**
   * A noderole that runs again takes its descendants with it (§2.3 ripple): every transitive child
   * that is not proposed or running goes to blocked and re-runs when its parents are active again.
   * Noderoles of unavailable nodes are frozen and keep their states (§2.4).
   */
  blockDescendants(name: string): void {
    const seen = new Set<string>([name]);
    const queue = [...this.childrenOf(name)];
    for (let child = queue.shift(); child !== undefined; child = queue.shift()) {
      if (seen.has(child)) continue;
      seen.add(child);
      const nr = this.nr(child);
      const st = this.state(child);
      if (!nr || st === undefined || st === 'proposed' || st === 'transition') continue;
      if (this.world.nodes.get(nr.node)?.available === false) continue;
      if (st !== 'blocked' || this.waitingOn(child) === undefined)
        this.set(child, 'blocked', this.waitingMessage(child));
      queue.push(...this.childrenOf(child));
    }
  }

  private blockChildren(name: string, state: NodeRoleState): void {
    for (const child of this.childrenOf(name)) {
      const s = this.state(child);
      if (s === 'error' || s === 'todo') this.block(child, messages.waitingFor(name, state));
    }
  }

  /** The changes that differ from the world, in order of each noderole's last change. */
  changes(): StateChange[] {
    const out: StateChange[] = [];
    for (const [name, o] of this.overlay) {
      const before = this.nr(name);
      const same = before?.state === o.state && before.message === o.message;
      if (same && o.runCount === undefined && o.observedRetry === undefined) continue;
      out.push({ name, ...o });
    }
    return out;
  }

  done(): Outcome {
    return { ok: true, changes: this.changes() };
  }
}
