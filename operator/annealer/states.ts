/**
 * NodeRole states and the change records the annealer's pure functions return.
 *
 * §2.1: the six states are identical in 2013, 2015 and Digital Rebar; only their names are kept
 * here (the integer codes of the Rails model are not part of our API).
 */

/** Every NodeRole state, in the order of the model's integer codes (§2.1: ERROR=-1 … PROPOSED=4). */
export const NODE_ROLE_STATES = [
  'error',
  'active',
  'todo',
  'transition',
  'blocked',
  'proposed',
] as const;

/** A NodeRole state name, as stored in `status.state`. */
export type NodeRoleState = (typeof NODE_ROLE_STATES)[number];

const STATE_SET: ReadonlySet<string> = new Set(NODE_ROLE_STATES);

/** True when `value` is one of the six state names. */
export function isNodeRoleState(value: unknown): value is NodeRoleState {
  return typeof value === 'string' && STATE_SET.has(value);
}

/**
 * True for the one state a parent must be in for its children to run.
 * §2.1 activatable? = no parent in a state other than ACTIVE.
 */
export function isSettled(state: NodeRoleState): boolean {
  return state === 'active';
}

/**
 * States that freeze a node: while any noderole of a node is in one of these, nothing else on
 * that node is runnable (§3.1, §2.6 "a single failure freezes that node's annealing").
 */
export function freezesNode(state: NodeRoleState): boolean {
  return state === 'transition' || state === 'error';
}

/**
 * One change to a noderole's status decided by a pure transition. The operator writes these to
 * `status` in list order; `runCount` and `observedRetry` are present only when they change.
 */
export interface StateChange {
  /** The noderole's name, `<role>.<node>`. */
  readonly name: string;
  readonly state: NodeRoleState;
  /** Why the noderole is in this state, for people (`status.message`). */
  readonly message: string;
  readonly runCount?: number;
  readonly observedRetry?: number;
}

/**
 * The result of a transition that may be refused (§2.2 InvalidTransition). A refusal carries a
 * message telling the user what to do; it changes nothing.
 */
export type Outcome =
  | { readonly ok: true; readonly changes: readonly StateChange[] }
  | { readonly ok: false; readonly reason: string };

/** Counts of noderoles per state plus their total. */
export type StateCounts = Record<NodeRoleState, number> & { total: number };

/** A zeroed {@link StateCounts}. */
export function emptyCounts(): StateCounts {
  return { total: 0, error: 0, active: 0, todo: 0, transition: 0, blocked: 0, proposed: 0 };
}
