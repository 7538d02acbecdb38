/**
 * The annealer (§3): one serialized pass at a time settles the noderole graph, acts on retries,
 * picks runnable noderoles under the per-node and global caps, and starts their jigs. Runs finish
 * asynchronously and trigger the next pass. Every status write carries the resourceVersion it was
 * computed from, so a stale cache or a deposed leader can never overwrite newer state.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Deployment, Node, NodeRole, Role } from '../../../generated/crowbar.ts';
import { applyChanges } from '../../annealer/apply.ts';
import { finishRun, step } from '../../annealer/converge.ts';
import { messages } from '../../annealer/overlay.ts';
import { planOrphans } from '../../annealer/orphans.ts';
import { notRunnableReason } from '../../annealer/scheduler.ts';
import { cancelRun, settle } from '../../annealer/settle.ts';
import { FIRST_PASS, planScope, type SweepState } from '../../annealer/sweep.ts';
import { rerun } from '../../annealer/transitions.ts';
import type { NodeRoleState, StateChange } from '../../annealer/states.ts';
import {
  compareNames,
  deploymentChain,
  isNodeAlive,
  namesInState,
  toDeploymentView,
  toNodeView,
  toRoleView,
  type DeploymentView,
  type NodeRoleView as NodeRoleDecision,
  type NodeView,
  type RoleView,
  type World,
} from '../../annealer/world.ts';
import { LayeredMap } from '../../annealer/layered-map.ts';
import { CohortOrder } from '../../annealer/cohort-order.ts';
import { PendingChanges, PendingView, withChange } from '../../annealer/pending.ts';
import type { Recorder } from '../../events.ts';
import type { JigRegistry } from '../../jigs/registry.ts';
import type { Jig, JigResult } from '../../jigs/types.ts';
import { nextWall, replacementPatch } from '../../jigs/wall.ts';
import { apiCode, apiMessage, isConflict, isNotFound } from '../../kube/errors.ts';
import type { Logger } from '../../log.ts';
import type { Controller, Manager } from '../../manager.ts';
import { setConditions } from '../../kube/condition.ts';
import { annealerConditions } from './conditions.ts';
import { inputDigest, runInput } from './input.ts';
import { annealerMetrics, type AnnealerMetrics } from './metrics.ts';
import { inlineExecutor, type ExecRequest, type Executor } from './executor.ts';
import { NodeRoleView } from './view.ts';
import type { Addressing } from '../network/allocator.ts';
import { networkOfRole, wallOf } from '../network/plan.ts';
import { ROUTINE, URGENT, WriteQueue, type Slot } from './write-queue.ts';

export interface AnnealerOptions {
  mgr: Manager;
  jigs: JigRegistry;
  recorder: Recorder;
  log: Logger;
  identity: string;
  maxConcurrentRuns: number;
  fieldManager: string;
  /** Where runs execute; inline when omitted. */
  executor?: Executor;
  /**
   * The allocator's answer on network noderoles (ADR 0025): whether one may run, and the addresses
   * its run's write records in its wall.
   */
  addressing: Addressing;
}

interface InFlight {
  id: string;
  node: string;
  /** A destructive role's run: never cancelled by node death, never started again. */
  destructive: boolean;
  jig: string;
  started: number;
  abort: AbortController;
}

type Finish =
  | { kind: 'done'; result: JigResult }
  | { kind: 'skipped' }
  | { kind: 'cancelled'; message: string }
  /** Not started: this process no longer holds the lease; the next leader re-adopts the run. */
  | { kind: 'abandoned' };

const KEY = 'anneal';

/** An edit of a role's or deployment's part of the run input, with the part before it. */
interface InputEdit {
  kind: 'role' | 'deployment';
  name: string;
  before: unknown;
}

/** The parts of a Role that go into its runs' input. */
const roleInputs = (r: Readonly<Role>): unknown => ({
  template: r.spec.template ?? {},
  wants: r.spec.wants ?? [],
});
/**
 * Records a node's or deployment's decision view in `views` (once built) and says whether it
 * differs from the one recorded: fields are plain values, so a shallow comparison is exact.
 */
function noteView<V extends object>(
  views: Map<string, V> | undefined,
  name: string,
  after: V | undefined,
): boolean {
  if (!views) return true; // not built yet: the first pass settles everything anyway
  const before = views.get(name);
  if (after) views.set(name, after);
  else views.delete(name);
  if (!before || !after) return before !== after;
  const a = before as Record<string, unknown>;
  const b = after as Record<string, unknown>;
  const keys = Object.keys(a);
  return keys.length !== Object.keys(b).length || keys.some((k) => a[k] !== b[k]);
}

/** A short window that folds a burst of events into one pass. */
const PASS_COALESCE_MS = 20;

/** How long a noderole is in transition with no run here before it is re-adopted. */
const ORPHAN_GRACE_MS = 3000;

/** Status writes in flight at once (see write-queue.ts). */
const WRITE_CONCURRENCY = 16;
/** Of those, slots plain writes (commit, ripple) may always take, whatever the run cap. */
const ROUTINE_WRITES_AT_LEAST = 4;
/** Plain writes queued at once (the rest wait in the backlog as keys): enough to keep the gate full. */
const ADMITTED_WRITES = 4 * WRITE_CONCURRENCY;

/** How often a pass settles every noderole instead of the changed ones. */
const FULL_SETTLE_MS = 30_000;
/**
 * The safety net settles every noderole as a sweep: each pass takes the noderoles of the next
 * nodes, about this many, so no pass holds the thread for a settle of the whole fleet (tens of ms
 * at 10,000 noderoles, more on a busy machine) while a parent's end waits for its child's start.
 */
const SWEEP_SLICE = 500;
/** The gap between two passes of a sweep when nothing else wakes the annealer. */
const SWEEP_GAP_MS = 5;
const LOG_TAIL = 4096;
/** The CRD's limit on status.message. */
const MESSAGE_MAX = 4096;

const REASON: Record<NodeRoleState, string> = {
  proposed: 'Proposed',
  todo: 'Todo',
  blocked: 'Blocked',
  transition: 'Running',
  active: 'Active',
  error: 'Failed',
};

export class Annealer {
  readonly view: NodeRoleView;
  readonly metrics: AnnealerMetrics;
  private readonly inflight = new Map<string, InFlight>();
  private readonly todoSince = new Map<string, number>();
  /** When this process learned that a noderole went active (its write acknowledged). */
  private readonly activeAt = new Map<string, number>();
  /** Status changes decided but not yet written (see world()). */
  private readonly pending = new PendingChanges((name) => {
    this.recheckTodo(name);
  });
  /** The todo noderoles (pending changes applied) in (cohort, name) order: runnable selection. */
  private readonly todoOrder = new CohortOrder();
  /** Status writes: per noderole in order, through one priority gate. */
  private readonly writes: WriteQueue;
  /** Plain writes decided but not yet queued (see admit()), in decision order. */
  private readonly backlog = new Map<string, { c: StateChange; rv: string | undefined }>();
  /** Plain writes moved from the backlog to the write queue and not finished. */
  private admitted = 0;
  /** Noderoles whose run start (transition write) is queued. */
  private readonly starting = new Set<string>();
  /** Writes refused (409) or failed; a pass that saw any asks to run again soon. */
  private conflicts = 0;
  /**
   * Status writes that failed in a row for another reason than a conflict (the API server down
   * or restarting): the pass that decides them again waits longer each time, instead of sending
   * the same write every 25 ms until the API server is back.
   */
  private writeErrors = 0;
  /** Nodes and deployments changed since the last pass: their noderoles are settled again. */
  private readonly changedNodes = new Set<string>();
  private readonly changedDeployments = new Set<string>();
  /** The level-triggered safety net under scoped passes: a sweep over every node (sweep.ts). */
  private sweep: SweepState = FIRST_PASS;
  /**
   * Decision views of nodes and deployments (kept per event once built) and roles (rebuilt after
   * a role event). Live, like the noderole views: a world is read within one turn.
   */
  private readonly small: {
    nodes?: Map<string, NodeView> | undefined;
    roles?: Map<string, RoleView> | undefined;
    deployments?: Map<string, DeploymentView> | undefined;
  } = {};
  private stopping = false;
  /** Noderoles being deleted (waiting on their children): nothing starts on them. */
  private readonly deleting = new Set<string>();
  /** The run-input parts of each role (template, wants) and deployment (data), as last seen. */
  private readonly seenInputs = new Map<string, unknown>();
  /** Edits of those parts not yet looked at by a pass (§3.6 poke). */
  private edits: InputEdit[] = [];
  /** Noderoles in transition with no run here: since when (see rescueOrphans). */
  private orphans = new Map<string, number>();
  private readonly adopting = new Set<string>();
  private readonly o: AnnealerOptions;
  private readonly log: Logger;
  private readonly executor: Executor;

  constructor(o: AnnealerOptions) {
    this.o = o;
    this.log = o.log.child({ controller: 'annealer' });
    this.executor = o.executor ?? inlineExecutor;
    this.view = new NodeRoleView(o.mgr.caches.NodeRole, (name) => {
      this.recheckTodo(name);
    });
    for (const name of this.view.boundViews().keys()) this.recheckTodo(name);
    this.metrics = annealerMetrics(o.mgr.metrics.registry);
    // A slot for each run the cap allows (a run has one urgent write at a time, its start or its
    // end): a burst of plain writes (a commit) then neither holds a parent's end at the gate nor
    // crowds the API server that answers it.
    const reserved = Math.min(o.maxConcurrentRuns, WRITE_CONCURRENCY - ROUTINE_WRITES_AT_LEAST);
    this.writes = new WriteQueue(
      WRITE_CONCURRENCY,
      (err, name) => {
        this.conflicts++;
        this.log.warn({ err, noderole: name }, 'queued write failed');
      },
      reserved,
    );
    // A network noderole waiting for its addresses may run once its allocations are in the cache.
    o.addressing.onChange((name) => {
      if (this.view.get(name)?.status?.state !== 'todo') return;
      this.view.touch(name);
      this.nudge();
    });
    const deleting = (nr: NodeRole): void => {
      if (nr.metadata.deletionTimestamp) this.deleting.add(nr.metadata.name ?? '');
    };
    o.mgr.caches.NodeRole.on({
      onAdd: deleting,
      onUpdate: deleting,
      onDelete: (nr) => {
        this.view.forget(nr.metadata.name ?? '');
        this.activeAt.delete(nr.metadata.name ?? '');
        this.deleting.delete(nr.metadata.name ?? '');
      },
    });
    // Status writes by other controllers (a node's state, a deployment's counts) change nothing
    // the annealer reads: only a change of the decision view marks their noderoles for settling.
    // A Node event asks for a pass only then, or when the node has a todo network noderole (which
    // may run once the Node lists its addresses, ADR 0025): a burst of address writes (one per
    // node, ADR 0029) otherwise cost a pass over every network noderole each.
    const node = (n: Node, deleted = false): void => {
      const name = n.metadata.name ?? '';
      if (noteView(this.small.nodes, name, deleted ? undefined : toNodeView(n))) {
        this.changedNodes.add(name);
        this.nudge(PASS_COALESCE_MS);
        return;
      }
      let waiting = false;
      for (const nr of this.view.names('node', name)) {
        if (!this.view.networkRoles().has(nr) || this.view.get(nr)?.status?.state !== 'todo')
          continue;
        this.view.touch(nr);
        waiting = true;
      }
      if (waiting) this.nudge(PASS_COALESCE_MS);
    };
    o.mgr.caches.Node.on({
      onAdd: node,
      onUpdate: node,
      onDelete: (n) => {
        node(n, true);
      },
    });
    const deployment = (d: Deployment, deleted = false): void => {
      const name = d.metadata.name ?? '';
      if (noteView(this.small.deployments, name, deleted ? undefined : toDeploymentView(d))) {
        this.changedDeployments.add(name);
      }
    };
    o.mgr.caches.Deployment.on({
      onAdd: (d) => {
        deployment(d);
        this.noteInputs('deployment', d.metadata.name ?? '', d.spec.data ?? {});
      },
      onUpdate: (d) => {
        deployment(d);
        this.noteInputs('deployment', d.metadata.name ?? '', d.spec.data ?? {});
      },
      onDelete: (d) => {
        deployment(d, true);
        this.seenInputs.delete(`deployment/${d.metadata.name ?? ''}`);
      },
    });
    const roleChanged = (): void => {
      this.small.roles = undefined;
    };
    o.mgr.caches.Role.on({
      onAdd: (r) => {
        roleChanged();
        this.noteInputs('role', r.metadata.name ?? '', roleInputs(r));
      },
      onUpdate: (r) => {
        roleChanged();
        this.noteInputs('role', r.metadata.name ?? '', roleInputs(r));
      },
      onDelete: (r) => {
        roleChanged();
        this.seenInputs.delete(`role/${r.metadata.name ?? ''}`);
      },
    });
  }

  controller(): Controller {
    const all = (): string[] => [KEY];
    return {
      name: 'annealer',
      workers: 1, // passes are serialized: each sees the writes of the one before
      // A short window folds a burst of events into one pass.
      coalesceMs: PASS_COALESCE_MS,
      // Node events nudge from the cache handler above, when they matter.
      watches: { NodeRole: all, Deployment: all, Role: all },
      onStartedLeading: () => this.adopt(),
      reconcile: () => this.pass(),
    };
  }

  /** Names of noderoles with a run in flight (for tests and metrics). */
  get running(): ReadonlySet<string> {
    return new Set(this.inflight.keys());
  }

  /** Cancels every run in flight (operator stopping); their noderoles go back to todo/blocked. */
  async stop(): Promise<void> {
    this.stopping = true;
    // A Job outlives this process: leave its noderole in transition for the next leader to
    // re-attach to (adopt) instead of cancelling work that is still going on.
    if (this.executor.name === 'job') return;
    for (const f of this.inflight.values()) f.abort.abort(new Error('the operator is stopping'));
    const end = Date.now() + 10_000;
    while (this.inflight.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  }

  /** The world a pass decides over; live underneath (see view.ts boundViews): use it at once. */
  world(): World {
    const c = this.o.mgr.caches;
    const s = this.small;
    s.nodes ??= new Map(c.Node.list().map((n) => [n.metadata.name ?? '', toNodeView(n)]));
    s.roles ??= new Map(c.Role.list().map((r) => [r.metadata.name ?? '', toRoleView(r)]));
    s.deployments ??= new Map(
      c.Deployment.list().map((d) => [d.metadata.name ?? '', toDeploymentView(d)]),
    );
    const bound = this.view.boundViews();
    const w: World = {
      nodes: s.nodes,
      roles: s.roles,
      deployments: s.deployments,
      // Unplanned noderoles are the binder's until it records their parents. Decisions already
      // made but not yet written count as made: the next pass must not make them again (and a run
      // being started must not be picked twice). They are applied per read (see pending.ts).
      noderoles: this.pending.size === 0 ? bound : new PendingView(bound, this.pending),
      children: this.view.childrenIndex(),
      order: this.view.cohortOrder(),
      byState: this.view.byState(),
      retrying: this.view.retrying(),
      pendingByState: this.pending.byState(),
      todoOrder: this.todoOrder,
    };
    // A network role hands its node's addresses to jigs: it may run only once its node holds them
    // (ADR 0025: its allocations exist; the write that records its run names them in its wall);
    // until then it is held, and says so. The hold is judged on the written state; a pending
    // change still applies over it.
    const gated: [string, NodeRoleDecision][] = [];
    const hold = (nr: NodeRoleDecision, why: string, needsAction: boolean): void => {
      const held = { ...nr, hold: why, holdNeedsAction: needsAction };
      const c = this.pending.get(nr.name);
      gated.push([nr.name, c === undefined ? held : withChange(held, c)]);
    };
    for (const name of this.view.networkRoles()) {
      const nr = bound.get(name);
      if (!nr) continue;
      const why = this.addressHold(name, nr.state);
      if (why) hold(nr, why.hold, why.needsAction);
    }
    for (const name of this.deleting) {
      const nr = bound.get(name);
      if (nr) hold(nr, 'it is being deleted', true);
    }
    return gated.length === 0 ? w : { ...w, noderoles: new LayeredMap(w.noderoles, gated) };
  }

  /**
   * Why a network noderole may not run yet, or undefined. Only a todo one, whose wall does not name
   * its addresses yet, is asked about in full: for the others only a failure to allocate
   * (Addressed=False, which a person must fix) is worth telling.
   */
  private addressHold(
    name: string,
    state: NodeRoleState,
  ): { hold: string; needsAction: boolean } | undefined {
    const cur = this.view.get(name);
    if (!cur) return undefined;
    const network = networkOfRole(cur.spec.role) ?? '';
    const addressed = cur.status?.conditions?.find((c) => c.type === 'Addressed');
    if (addressed?.status === 'False')
      return {
        hold: `its addresses on network ${network} could not be allocated: ${addressed.message}`,
        needsAction: true,
      };
    if (state !== 'todo' || wallOf(cur, network) !== undefined) return undefined;
    const r = this.o.addressing.readiness(cur);
    return r.ready ? undefined : { hold: r.why, needsAction: r.needsAction };
  }

  /** Keeps `name` in the todo order while it is todo with its pending change applied. */
  private recheckTodo(name: string): void {
    // The view is not there yet while its constructor registers with the cache.
    const v = (this.view as NodeRoleView | undefined)?.boundViews().get(name);
    const state = this.pending.get(name)?.state ?? v?.state;
    this.todoOrder.set(name, v !== undefined && state === 'todo' ? v.cohort : undefined);
  }

  /** 25 ms after a conflict; after failed writes, doubling up to 5 s (see writeErrors). */
  private retryDelayMs(): number {
    return this.writeErrors === 0 ? 25 : Math.min(5000, 25 * 2 ** Math.min(this.writeErrors, 8));
  }

  private nudge(afterMs = 0): void {
    this.o.mgr.enqueue('annealer', KEY, afterMs);
  }

  /** Records a decided change as pending, and writes it in the background. */
  private submit(c: StateChange): void {
    this.pending.set(c);
    // A change that records a retry or a run count must land; a plain state change may be
    // replaced by a newer decision, which was made with this one applied.
    const plain = c.observedRetry === undefined && c.runCount === undefined;
    if (!plain) {
      this.dropUnsent(c.name);
      this.chainWrite(c, { priority: ROUTINE });
      return;
    }
    this.writes.replace(c.name);
    const waiting = this.backlog.get(c.name);
    // The precondition stays the object the first decision was made from: the newer decision
    // was made with it applied, and anything else that changed the noderole since makes both
    // stale (a 409, as if the write had been sent at once).
    if (waiting) waiting.c = c;
    else this.backlog.set(c.name, { c, rv: this.view.get(c.name)?.metadata.resourceVersion });
    this.admit();
  }

  /**
   * Moves plain writes from the backlog into their noderoles' write queues, at most
   * ADMITTED_WRITES at a time. A commit of N noderoles decides N writes in one pass; waiting in
   * the backlog each is a key and its decision (~0.2 KB), where a queued write with its promises
   * was ~2 KB (ADR 0021), and a newer decision replaces it there for free.
   */
  private admit(): void {
    while (this.admitted < ADMITTED_WRITES) {
      const first = this.backlog.entries().next();
      if (first.done) return;
      const [name, { c, rv }] = first.value;
      this.backlog.delete(name);
      this.admitted++;
      this.chainWrite(c, this.writes.replaceable(name), rv, () => {
        this.admitted--;
        this.admit();
      });
    }
  }

  /** Drops a write of `name` that was not sent yet, queued or in the backlog. */
  private dropUnsent(name: string): void {
    this.backlog.delete(name);
    this.writes.replace(name);
  }

  /** Writes `c` after the noderole's earlier writes; `rv`: the object it was decided from. */
  private chainWrite(c: StateChange, slot: Slot, rv?: string, then?: () => void): void {
    this.writes.after(c.name, async () => {
      const before = this.conflicts;
      try {
        await this.writeChange(c, {}, slot, rv);
      } finally {
        this.writes.done(c.name, slot);
        this.pending.delete(c.name, c);
        // A refused write leaves the noderole as it was: the next pass must look at it again.
        this.view.touch(c.name);
        then?.();
      }
      if (this.conflicts !== before) this.nudge(this.retryDelayMs());
    });
  }

  /** One annealer pass: decide, hand the writes to their per-noderole queues, return. */
  pass(): Promise<{ requeueAfterMs?: number } | undefined> {
    if (this.stopping) return Promise.resolve(undefined);
    this.metrics.passes.inc();
    const t0 = performance.now();
    const world = this.world();
    for (const [name, f] of this.inflight) {
      const node = world.nodes.get(f.node);
      // §2.4: node death cancels its runs; not a destructive one's, which may well be what
      // rebooted the node (an OS install): it ends by itself or by its timeout.
      if (!node) f.abort.abort(new Error(`node ${f.node} was deleted`));
      else if (!isNodeAlive(node) && !f.destructive)
        f.abort.abort(new Error(`node ${f.node} is not alive`));
      else if (!world.noderoles.has(name) || this.deleting.has(name))
        f.abort.abort(new Error('the noderole is being deleted'));
    }
    const running = new Set([...this.inflight.keys(), ...this.starting]);
    const scope = this.settleScope(world);
    const settled = settle(world, { running, scope });
    if (!settled.ok) {
      this.sweep = FIRST_PASS;
      return Promise.reject(new Error(settled.reason));
    }
    let after = applyChanges(world, settled.changes);
    const poked = this.pokeEdited(after, running);
    after = applyChanges(after, poked);
    const st = step(after, { maxConcurrent: this.o.maxConcurrentRuns, running });
    const starting = new Set(st.start);
    // A noderole unblocked (or retried) and started in the same pass goes to transition in one
    // write that carries both: the todo it passes through would be overwritten a write later, and
    // that write sat on the path from a parent's end to its child's start.
    const prior = new Map<string, StateChange>();
    for (const c of [...settled.changes, ...poked, ...st.changes]) {
      if (!starting.has(c.name)) this.submit(c);
      else if (c.state !== 'transition') {
        const retried = c.observedRetry ?? prior.get(c.name)?.observedRetry;
        prior.set(c.name, retried === undefined ? c : { ...c, observedRetry: retried });
      }
    }
    for (const name of st.start) {
      this.dropUnsent(name);
      this.starting.add(name);
      this.pending.set({ name, state: 'transition', message: 'running' });
      this.writes.after(name, async () => {
        let ended = false;
        try {
          ended = await this.startRun(name, prior.get(name));
        } finally {
          this.starting.delete(name);
          if (this.pending.get(name)?.state === 'transition') this.pending.delete(name);
          this.view.touch(name);
          // An instant run ended in its start: its children may start now, as after any run's
          // end. A start that did not happen: decide again, after a pause.
          if (ended) this.nudge();
          else if (!this.inflight.has(name)) this.nudge(this.retryDelayMs());
        }
      });
    }
    this.rescueOrphans();
    this.explainWaits(st.world, scope, starting);
    this.observe(st.world);
    this.metrics.passSeconds.observe((performance.now() - t0) / 1000);
    // Level-triggered, as controller-runtime's resync: a pass at least every FULL_SETTLE_MS even
    // when nothing wakes the annealer, so no lost wake-up can leave work undone for long.
    return Promise.resolve({ requeueAfterMs: FULL_SETTLE_MS });
  }

  /**
   * A noderole in transition with no run in this process, as the leader, is an orphan: its start
   * was written but answered with an error (the write happened), or its result could not be
   * recorded (the API server failing for longer than finish() retries). Nothing else would ever
   * move it again, so once it has been an orphan for ORPHAN_GRACE_MS it is re-adopted as after a
   * restart: the same run, whose journal (script or test jig) returns a stored result instead of
   * executing twice. The grace lets this process's own writes and the cache catch up first; every
   * pass that leaves one waiting asks to be woken when it is due (see annealer/orphans.ts).
   */
  private rescueOrphans(): void {
    const candidates: string[] = [];
    for (const name of this.view.byState().get('transition') ?? []) {
      if (
        this.inflight.has(name) ||
        this.starting.has(name) ||
        this.pending.has(name) ||
        this.adopting.has(name)
      )
        continue;
      candidates.push(name);
    }
    const plan = planOrphans(this.orphans, candidates, Date.now(), ORPHAN_GRACE_MS);
    // Bounded by the noderoles in transition: anything no longer an orphan is forgotten.
    this.orphans = plan.since;
    if (plan.wakeInMs !== undefined) this.nudge(plan.wakeInMs);
    for (const name of plan.adopt) {
      const nr = this.view.get(name);
      if (!nr) continue;
      this.adopting.add(name);
      void this.adoptOne(nr)
        .catch((err: unknown) => {
          this.log.warn({ err, noderole: name }, 'could not re-adopt an orphaned run');
        })
        .finally(() => {
          this.adopting.delete(name);
          this.nudge(this.retryDelayMs());
        });
    }
  }

  /** Queues an edit of a run-input part; the first sighting of an object is not an edit. */
  private noteInputs(kind: InputEdit['kind'], name: string, now: unknown): void {
    const key = `${kind}/${name}`;
    const had = this.seenInputs.has(key);
    const before = this.seenInputs.get(key);
    this.seenInputs.set(key, now);
    if (had && !isDeepStrictEqual(before, now)) {
      this.edits.push({ kind, name, before });
      this.nudge();
    }
  }

  /**
   * §3.6 poke: after an edit of a role's template or wants, or of a deployment's data, every
   * active noderole whose run input the edit changes runs again (its descendants after it). The
   * input is computed twice over the same current world, with the part before and after the
   * edit, so only what the edit changes counts (not, say, addresses allocated since the run).
   */
  private pokeEdited(world: World, running: ReadonlySet<string>): StateChange[] {
    if (this.edits.length === 0) return [];
    const edits = this.edits;
    this.edits = [];
    const c = this.o.mgr.caches;
    const out: StateChange[] = [];
    let w = world;
    for (const edit of edits) {
      // Indexed, not a scan of every noderole per edit: a role's noderoles, or those of the
      // edited deployment and of every deployment below it.
      const names: Iterable<string> =
        edit.kind === 'role'
          ? this.view.names('role', edit.name)
          : [...w.deployments.keys()]
              .filter((d) => deploymentChain(w, d).includes(edit.name))
              .flatMap((d) => [...this.view.names('deployment', d)]);
      for (const name of [...names].sort(compareNames)) {
        const nr = this.view.get(name);
        if (!nr || running.has(name) || w.noderoles.get(name)?.state !== 'active') continue;
        const role = c.Role.get(nr.spec.role);
        const node = c.Node.get(nr.spec.node);
        if (!role || !node) continue;
        const input = (r: Readonly<Role>, getDeployment: (d: string) => Deployment | undefined) =>
          runInput({ noderole: nr, role: r, node, getDeployment, get: (n) => this.view.get(n) });
        const current = (d: string): Deployment | undefined => c.Deployment.get(d);
        const now = input(role, current);
        const then =
          edit.kind === 'role'
            ? input(
                { ...role, spec: { ...role.spec, ...(edit.before as Partial<Role['spec']>) } },
                current,
              )
            : input(role, (d) => {
                const dep = current(d);
                return dep && d === edit.name
                  ? { ...dep, spec: { ...dep.spec, data: edit.before as Record<string, unknown> } }
                  : dep;
              });
        if (inputDigest(now) === inputDigest(then)) continue;
        const what =
          edit.kind === 'role'
            ? `role ${edit.name} was edited`
            : `deployment ${edit.name}'s data was edited`;
        const res = rerun(w, name, messages.inputChanged(what));
        if (!res.ok) continue;
        out.push(...res.changes);
        w = applyChanges(w, res.changes);
      }
    }
    return out;
  }

  /**
   * A todo noderole that may not run on its own terms (its node unavailable or not alive, its
   * deployment proposed, its addresses not recorded) says why in its message and Active
   * condition; once the reason is gone it goes back to plain waiting. Looks at the noderoles this
   * pass settled and at every held one, so it costs in proportion to the change.
   */
  private explainWaits(
    world: World,
    scope: ReadonlySet<string> | undefined,
    starting: ReadonlySet<string>,
  ): void {
    const names = new Set<string>(scope ?? namesInState(world, 'todo'));
    for (const name of this.view.networkRoles()) names.add(name);
    for (const name of names) {
      const nr = world.noderoles.get(name);
      if (nr?.state !== 'todo' || starting.has(name) || this.pending.has(name)) continue;
      const reason = notRunnableReason(world, nr);
      const want =
        reason !== undefined
          ? messages.waitingToRun(reason)
          : nr.message.startsWith(messages.waitingToRun(''))
            ? messages.todo
            : undefined;
      if (want !== undefined && want !== nr.message)
        this.submit({ name, state: 'todo', message: want });
    }
  }

  /**
   * What this pass settles: the noderoles changed since the last pass and those on changed nodes
   * and in changed deployments (settle adds their descendants), with a slice of the safety net's
   * sweep over every node while one is due; everything on the first pass, after a failed settle,
   * or when most noderoles changed anyway (annealer/sweep.ts).
   */
  private settleScope(world: World): ReadonlySet<string> | undefined {
    const changed = this.view.takeChanged();
    for (const node of this.changedNodes)
      for (const n of this.view.names('node', node)) changed.add(n);
    for (const dep of this.changedDeployments) {
      for (const n of this.view.names('deployment', dep)) changed.add(n);
    }
    this.changedNodes.clear();
    this.changedDeployments.clear();
    const plan = planScope(this.sweep, {
      changed,
      noderoles: world.noderoles.size,
      now: Date.now(),
      nodes: () => this.view.nodeNames(),
      namesOn: (node) => this.view.names('node', node),
      periodMs: FULL_SETTLE_MS,
      slice: SWEEP_SLICE,
    });
    this.sweep = plan.state;
    if (plan.more) this.nudge(SWEEP_GAP_MS);
    this.metrics.settles.inc({ scope: plan.kind });
    return plan.scope;
  }

  private observe(world: World): void {
    const states = world.byState;
    for (const s of ['proposed', 'todo', 'blocked', 'transition', 'active', 'error'] as const) {
      this.metrics.byState.set({ state: s }, states?.get(s)?.size ?? 0);
    }
    this.metrics.runnable.set(states?.get('todo')?.size ?? 0);
    this.metrics.runsInFlight.set(this.inflight.size);
  }

  /** Writes one state change with an optimistic-concurrency precondition. */
  private async writeChange(
    c: StateChange,
    extra: Record<string, unknown> = {},
    how: Slot = { priority: URGENT },
    decidedAt?: string,
  ): Promise<NodeRole | undefined> {
    const cur = this.view.get(c.name);
    if (!cur) return undefined;
    if (decidedAt !== undefined && cur.metadata.resourceVersion !== decidedAt) {
      // Changed since the decision (what the API server's precondition would refuse): decide again.
      this.conflicts++;
      this.metrics.statusWrites.inc({ outcome: 'conflict' });
      return undefined;
    }
    // Commit (§2.2 commit!) and retry copy the proposed data to committedData, as Digital Rebar's
    // commit! refreshes it: runs read committed data only.
    const committing =
      (cur.status?.state === 'proposed' && c.state !== 'proposed') || c.observedRetry !== undefined;
    // Built as the write is sent, not while it waits behind a burst (ADR 0021); the
    // precondition is still the resourceVersion read here.
    const res = await this.patchStatus(
      cur,
      () => ({
        // Replaced, not merged: keys removed from spec.data leave committedData too.
        ...(committing
          ? { committedData: replacementPatch(cur.status?.committedData, cur.spec.data ?? {}) }
          : {}),
        state: c.state,
        message: c.message.slice(0, MESSAGE_MAX),
        // Other controllers own other condition types (Bound, Addressed): replace only ours.
        conditions: setConditions(
          cur.status?.conditions,
          annealerConditions(c.state, c.message),
          new Date(),
          cur.metadata.generation,
        ),
        ...(cur.metadata.generation !== undefined
          ? { observedGeneration: cur.metadata.generation }
          : {}),
        ...(c.runCount !== undefined ? { runCount: c.runCount } : {}),
        ...(c.observedRetry !== undefined ? { observedRetry: c.observedRetry } : {}),
        ...extra,
      }),
      how,
    );
    if (res && cur.status?.state !== c.state) this.transitioned(res, cur.status?.state, c);
    return res;
  }

  private async patchStatus(
    cur: Readonly<NodeRole>,
    status: Record<string, unknown> | (() => Record<string, unknown>),
    how: Slot = { priority: URGENT },
  ): Promise<NodeRole | undefined> {
    const name = cur.metadata.name ?? '';
    const resourceVersion = cur.metadata.resourceVersion;
    const signal = how.ticket;
    // The reaction's parts (a parent's end written, then its child's start): the wait at the gate
    // and the API server's answer, for run starts and ends.
    const queued = performance.now();
    let sent = queued;
    const slot: Slot =
      how.priority === URGENT
        ? {
            ...how,
            onSend: () => {
              sent = performance.now();
              how.onSend?.();
            },
          }
        : how;
    try {
      const res = await this.writes.send(
        () =>
          this.o.mgr.client.mergePatchStatus(
            'NodeRole',
            name,
            {
              metadata: { resourceVersion },
              status: typeof status === 'function' ? status() : status,
            },
            this.o.fieldManager,
          ),
        slot,
      );
      if (how.priority === URGENT) {
        this.metrics.urgentWriteWait.observe((sent - queued) / 1000);
        this.metrics.urgentWriteSeconds.observe((performance.now() - sent) / 1000);
      }
      this.view.wrote(res);
      this.metrics.statusWrites.inc({ outcome: 'ok' });
      this.writeErrors = 0;
      return res;
    } catch (e) {
      if (signal?.aborted) {
        this.metrics.statusWrites.inc({ outcome: 'superseded' });
        return undefined;
      }
      if (isConflict(e)) {
        this.conflicts++;
        this.metrics.statusWrites.inc({ outcome: 'conflict' });
        return undefined;
      }
      if (isNotFound(e)) return undefined;
      this.metrics.statusWrites.inc({ outcome: 'error' });
      const code = apiCode(e);
      if (code === 400 || code === 413 || code === 422) {
        // The API server will refuse the same write every time (too large, invalid): retrying it
        // each pass would spin. The noderole goes to error, saying why, and waits for a person.
        this.log.warn({ err: apiMessage(e), noderole: name, code }, 'status write refused');
        await this.refused(cur, apiMessage(e));
        return undefined;
      }
      this.conflicts++;
      this.writeErrors++;
      this.log.warn({ err: apiMessage(e), noderole: name }, 'status write failed');
      return undefined;
    }
  }

  /**
   * After the API server refused a status write of `cur` as invalid or too large: a small write
   * that puts it in error with the reason (no run input, wall or log), once per refusal.
   */
  private async refused(cur: Readonly<NodeRole>, why: string): Promise<void> {
    const name = cur.metadata.name ?? '';
    const message =
      `the API server refused its status (${why}); the run input or wall is probably too ` +
      `large or deep: shrink the role template, deployment data or what the script returns, then retry`;
    const fresh = await this.o.mgr.client.get('NodeRole', name).catch(() => undefined);
    if (!fresh || fresh.status?.state === 'error') return;
    try {
      const res = await this.o.mgr.client.mergePatchStatus(
        'NodeRole',
        name,
        {
          metadata: { resourceVersion: fresh.metadata.resourceVersion },
          status: {
            state: 'error',
            message: message.slice(0, MESSAGE_MAX),
            conditions: setConditions(
              fresh.status?.conditions,
              annealerConditions('error', message),
              new Date(),
              fresh.metadata.generation,
            ),
          },
        },
        this.o.fieldManager,
      );
      this.view.wrote(res);
      this.transitioned(res, fresh.status?.state, { name, state: 'error', message });
    } catch (e) {
      this.log.error({ err: apiMessage(e), noderole: name }, 'could not record a refused write');
    }
  }

  private transitioned(nr: NodeRole, from: NodeRoleState | undefined, c: StateChange): void {
    const name = nr.metadata.name ?? '';
    if (c.state === 'todo') this.todoSince.set(name, Date.now());
    else if (c.state !== 'transition') this.todoSince.delete(name);
    if (c.state === 'active') this.activeAt.set(name, performance.now());
    else this.activeAt.delete(name);
    const target = { kind: 'NodeRole', name, uid: nr.metadata.uid };
    const msg = `${from ?? 'new'} -> ${c.state}: ${c.message}`;
    if (c.state === 'error') this.o.recorder.warning(target, REASON[c.state], msg);
    else this.o.recorder.normal(target, REASON[c.state], msg);
  }

  /**
   * Moves a noderole to transition, capturing the run's input, and starts its jig; an instant
   * jig's run ends in the same write. Resolves true when the run has ended so.
   */
  private async startRun(name: string, prior?: StateChange): Promise<boolean> {
    if (!this.o.mgr.holdsLease()) return false;
    const nr = this.view.get(name);
    const role = nr && this.o.mgr.caches.Role.get(nr.spec.role);
    const node = nr && this.o.mgr.caches.Node.get(nr.spec.node);
    if (!nr) return false;
    if (!role || !node) {
      // Not a reason to try again every pass: say what is missing, and wait for a person.
      const missing = !role ? `role ${nr.spec.role}` : `node ${nr.spec.node}`;
      await this.writeChange({
        name,
        state: 'error',
        message: `${missing} does not exist; create it, then retry this noderole (or delete it)`,
      });
      return false;
    }
    const jig = this.o.jigs.get(role.spec.jig);
    if (!jig) {
      await this.writeChange({
        name,
        state: 'error',
        message: `role ${role.metadata.name ?? ''} uses jig ${role.spec.jig}, which this operator does not run`,
      });
      return false;
    }
    this.observeUnblock(nr);
    // §1.2 destructive: the jig runs on the first transition only. "Ran" means started: the start
    // is recorded before the jig launches, so an interrupted first run counts too.
    const alreadyRan =
      (role.spec.flags ?? []).includes('destructive') &&
      ((nr.status?.runCount ?? 0) > 0 || (nr.status?.run?.number ?? 0) > 0);
    const number = (nr.status?.runCount ?? 0) + 1;
    const id = `${name}.run-${number}`;
    // A retry or a commit refreshes committedData in the same write; the run must see it.
    const refreshed = prior?.observedRetry !== undefined || nr.status?.state === 'proposed';
    const input = runInput({
      noderole: refreshed
        ? { ...nr, status: { ...nr.status, committedData: nr.spec.data ?? {} } }
        : nr,
      role,
      node,
      getDeployment: (d) => this.o.mgr.caches.Deployment.get(d),
      get: (n) => this.view.get(n),
    });
    if (jig.instant === true)
      return this.runInstantly(nr, jig, number, id, input, alreadyRan, prior);
    const res = await this.writeChange(
      {
        name,
        state: 'transition',
        message: 'running',
        ...(prior?.observedRetry !== undefined ? { observedRetry: prior.observedRetry } : {}),
      },
      {
        run: this.runRecord(number, id, input, {
          started: new Date().toISOString(),
          // A skipped run says so from its start: a leader that re-adopts it must not execute it.
          result: alreadyRan ? 'skipped' : 'running',
          finished: null,
          exitCode: null,
        }),
      },
    );
    if (!res) return false;
    const since = this.todoSince.get(name);
    if (since !== undefined) this.metrics.todoToTransition.observe((Date.now() - since) / 1000);
    this.metrics.runsStarted.inc({ jig: jig.name });
    this.launch(res, role, node, jig, number, id, input, alreadyRan ? 'skip' : 'execute');
    return false;
  }

  /** `status.run` as a run's start writes it (an instant run's start is its end too). */
  private runRecord(
    number: number,
    id: string,
    input: Record<string, unknown>,
    at: { started: string; result: string; finished: string | null; exitCode: number | null },
  ): Record<string, unknown> {
    return {
      number,
      id,
      owner: this.o.identity,
      executor: this.executor.name,
      ...at,
      logTail: null,
      input,
      inputDigest: inputDigest(input),
    };
  }

  /**
   * A run of an instant jig (noop): it has nothing to execute, so its start and its end are one
   * write, todo -> active, carrying the run record a finished run carries (number, input, started
   * and finished). The run slot is held by the pass's `starting` set until the write lands, as
   * for any start; a refused write leaves the noderole todo for the next pass. On a chain of
   * milestones this halves the writes per noderole, and the API server's time between a parent's
   * end and its child's start with it (ADR 0034).
   */
  private async runInstantly(
    nr: Readonly<NodeRole>,
    jig: Jig,
    number: number,
    id: string,
    input: Record<string, unknown>,
    skipped: boolean,
    prior?: StateChange,
  ): Promise<boolean> {
    const name = nr.metadata.name ?? '';
    const now = new Date().toISOString();
    const result = skipped ? 'skipped' : 'succeeded';
    const since = this.todoSince.get(name); // the write's transition forgets it
    const res = await this.writeChange(
      {
        name,
        state: 'active',
        message: skipped
          ? `active: destructive role already ran; run ${number} skipped`
          : messages.active(number),
        runCount: number,
        ...(prior?.observedRetry !== undefined ? { observedRetry: prior.observedRetry } : {}),
      },
      {
        run: this.runRecord(number, id, input, {
          started: now,
          result,
          finished: now,
          exitCode: 0,
        }),
        // As a finished run's (finish()); the noop jig's output is no data.
        ...(skipped ? {} : { wall: this.endWall(nr, {}) }),
      },
    );
    if (!res) return false;
    if (since !== undefined) this.metrics.todoToTransition.observe((Date.now() - since) / 1000);
    this.metrics.runsStarted.inc({ jig: jig.name });
    this.metrics.runsFinished.inc({ jig: jig.name, result });
    this.metrics.transitionSeconds.observe({ jig: jig.name }, 0);
    return true;
  }

  /**
   * The annealer's own reaction time: from the moment it learned that the last of a noderole's
   * parents went active to the start of the noderole's run. Writes to the API server are outside
   * it (crowbar_transition_duration_seconds and the API server's metrics cover those).
   */
  private observeUnblock(nr: Readonly<NodeRole>): void {
    const parents = nr.status?.parents ?? [];
    if (parents.length === 0) return;
    let last = 0;
    for (const p of parents) {
      const t = this.activeAt.get(p);
      if (t === undefined) return; // a parent went active before this process saw it happen
      last = Math.max(last, t);
    }
    this.metrics.unblockSeconds.observe((performance.now() - last) / 1000);
  }

  /** Runs the jig in the background; its end writes the result and triggers the next pass. */
  private launch(
    nr: Readonly<NodeRole>,
    role: Readonly<Role>,
    node: Readonly<Node>,
    jig: Jig,
    number: number,
    id: string,
    input: Record<string, unknown>,
    mode: 'execute' | 'resume' | 'skip' = 'execute',
  ): void {
    const name = nr.metadata.name ?? '';
    const abort = new AbortController();
    const f: InFlight = {
      id,
      node: node.metadata.name ?? '',
      destructive: (role.spec.flags ?? []).includes('destructive'),
      jig: jig.name,
      started: Date.now(),
      abort,
    };
    this.inflight.set(name, f);
    const timeoutS = role.spec.timeoutSeconds ?? 3600;
    // A Job carries the deadline itself (activeDeadlineSeconds); our timer is only a backstop.
    const graceS = this.executor.name === 'job' ? 30 : 0;
    const timer = setTimeout(
      () => {
        abort.abort(new Error(`timed out after ${timeoutS} s`));
      },
      (timeoutS + graceS) * 1000,
    );
    const run = async (): Promise<Finish> => {
      // A leader cut off from the API server (its lease could have passed to a standby) starts
      // no run and no SSH session: the run stays in transition for the next leader to adopt.
      if (!this.o.mgr.holdsLease()) {
        this.log.warn({ noderole: name, run: number }, 'lease not held; not starting the run');
        return { kind: 'abandoned' };
      }
      // §1.2 destructive: the jig runs only on the first transition; later runs are skipped.
      if (mode === 'skip') return { kind: 'skipped' };
      try {
        const req: ExecRequest = {
          noderole: nr,
          role,
          node,
          number,
          input,
          signal: abort.signal,
          jig,
          id,
        };
        const pending = mode === 'resume' ? this.executor.resume(req) : this.executor.execute(req);
        if (!pending)
          return {
            kind: 'done',
            result: {
              ok: false,
              message: `run ${number} cannot be resumed after an operator restart; retry it`,
            },
          };
        const result = await pending;
        if (abort.signal.aborted) return this.aborted(abort.signal);
        return { kind: 'done', result };
      } catch (e) {
        if (abort.signal.aborted) return this.aborted(abort.signal);
        return {
          kind: 'done',
          result: {
            ok: false,
            message: `jig ${jig.name} failed: ${e instanceof Error ? e.message : String(e)}`,
          },
        };
      }
    };
    void run()
      .then((fin) => this.finish(name, f, fin, number))
      .catch((err: unknown) => {
        this.log.error({ err, noderole: name }, 'could not record a run result');
      })
      .finally(() => {
        clearTimeout(timer);
        this.inflight.delete(name);
        this.view.touch(name);
        this.metrics.runsInFlight.set(this.inflight.size);
        this.nudge();
      });
  }

  private aborted(signal: AbortSignal): Finish {
    const reason = signal.reason instanceof Error ? signal.reason.message : String(signal.reason);
    // A timeout is the run's failure; anything else (node death, stop) cancels it.
    if (reason.startsWith('timed out'))
      return { kind: 'done', result: { ok: false, message: `run ${reason}` } };
    return { kind: 'cancelled', message: `run cancelled: ${reason}` };
  }

  /**
   * A network noderole's wall names its node's addresses from its first run on (ADR 0025): this
   * write records them, so the allocation's create was the only write of a healthy allocation.
   * The write carries the resourceVersion the noderole was read at, like the allocator's when two
   * replicas raced: one of them settles which allocation the binding keeps.
   */
  private withAddresses(
    cur: Readonly<NodeRole>,
    wall: Record<string, unknown>,
  ): Record<string, unknown> {
    const network = networkOfRole(cur.spec.role);
    if (network === undefined) return wall;
    const isObj = (v: unknown): v is Record<string, unknown> =>
      typeof v === 'object' && v !== null && !Array.isArray(v);
    const crowbar = isObj(wall['crowbar']) ? wall['crowbar'] : {};
    const networks = isObj(crowbar['network']) ? crowbar['network'] : {};
    if (isObj(networks[network])) return wall;
    const r = this.o.addressing.readiness(cur);
    if (!r.ready) return wall; // the allocator writes it once it can (the noderole is active)
    return { ...wall, crowbar: { ...crowbar, network: { ...networks, [network]: r.wall } } };
  }

  /**
   * The wall a successful run's end writes (§4.2): the run's output replaces the last one (a
   * plain merge patch would merge them), with a network role's addresses.
   */
  private endWall(
    cur: Readonly<NodeRole>,
    output: Record<string, unknown>,
  ): Record<string, unknown> {
    return replacementPatch(
      cur.status?.wall,
      this.withAddresses(cur, nextWall(cur.status?.wall, output)),
    );
  }

  /** Records a run's end on its noderole, retrying on conflicts with fresh reads. */
  private async finish(name: string, f: InFlight, fin: Finish, number: number): Promise<void> {
    if (fin.kind === 'abandoned') return;
    const resultLabel = fin.kind === 'done' ? (fin.result.ok ? 'succeeded' : 'failed') : fin.kind;
    this.metrics.runsFinished.inc({ jig: f.jig, result: resultLabel });
    this.metrics.transitionSeconds.observe({ jig: f.jig }, (Date.now() - f.started) / 1000);
    for (let attempt = 0; attempt < 8; attempt++) {
      const cur = this.view.get(name);
      if (cur?.status?.state !== 'transition' || cur.status.run?.id !== f.id) return; // deleted or superseded
      const w = this.world();
      const out =
        fin.kind === 'cancelled' && f.destructive
          ? // It may have done part of its work (a disk wiped, an install begun): a person checks.
            finishRun(w, name, {
              ok: false,
              message: `destructive ${fin.message}; it will not run again: check the node, then retry (a retry marks it done without running it)`,
            })
          : fin.kind === 'cancelled'
            ? cancelRun(w, name, fin.message)
            : fin.kind === 'skipped' || fin.result.ok
              ? finishRun(w, name, {
                  ok: true,
                  message:
                    fin.kind === 'skipped'
                      ? `active: destructive role already ran; run ${number} skipped`
                      : `active after run ${number}`,
                })
              : finishRun(w, name, { ok: false, message: fin.result.message });
      if (!out.ok) return;
      const mine = out.changes.find((c) => c.name === name);
      if (!mine) return;
      const result = fin.kind === 'done' ? fin.result : undefined;
      const extra: Record<string, unknown> = {
        run: {
          finished: new Date().toISOString(),
          result: resultLabel,
          exitCode: result && !result.ok ? (result.exitCode ?? null) : result ? 0 : null,
          logTail:
            result?.logTail?.slice(-LOG_TAIL) ?? (result && !result.ok ? result.message : null),
        },
      };
      if (result?.ok && mine.state === 'active') extra['wall'] = this.endWall(cur, result.wall);
      const res = await this.writeChange(mine, extra);
      if (res) return;
      // Conflict: someone else wrote the object (e.g. a spec edit). Re-read it and try again.
      const fresh = await this.o.mgr.client.get('NodeRole', name);
      if (!fresh) return;
      this.view.wrote(fresh);
    }
    this.log.error({ noderole: name }, 'gave up recording a run result after repeated conflicts');
  }

  /**
   * On becoming leader: noderoles left in transition by a previous leader lost their inline run
   * with it. Re-run them under the same run number (so each run is counted once); a destructive
   * role cannot be re-run blindly and goes to error for a person to check.
   */
  private async adopt(): Promise<void> {
    for (const nr of this.view.list()) await this.adoptOne(nr);
  }

  /** The input run `id` of a noderole started with, or undefined when that run is gone. */
  private async runInputOf(name: string, id: string): Promise<Record<string, unknown> | undefined> {
    const fresh = await this.o.mgr.client.get('NodeRole', name);
    const run = fresh?.status?.run;
    if (run?.id !== id) return undefined; // deleted or superseded meanwhile: nothing to adopt
    return run.input ?? {};
  }

  /** Re-adopts one noderole left in transition with no run in this process (see adopt()). */
  private async adoptOne(nr: Readonly<NodeRole>): Promise<void> {
    const name = nr.metadata.name ?? '';
    if (nr.status?.state !== 'transition' || this.inflight.has(name)) return;
    const run = nr.status.run;
    const role = this.o.mgr.caches.Role.get(nr.spec.role);
    const node = this.o.mgr.caches.Node.get(nr.spec.node);
    const jig = role && this.o.jigs.get(role.spec.jig);
    if (!role || !node || !jig || run?.number === undefined || run.id === undefined) {
      await this.writeChange({
        name,
        state: 'error',
        message: 'run interrupted by an operator restart and cannot be resumed; retry it',
      });
      return;
    }
    if (run.executor !== undefined && run.executor !== this.executor.name) {
      await this.writeChange({
        name,
        state: 'error',
        message: `run ${run.number} was started by the ${run.executor} executor but this operator uses ${this.executor.name}; retry it`,
      });
      return;
    }
    // An inline run died with its operator; re-running a destructive role blindly is unsafe.
    // A Job outlives the operator, so the job executor re-attaches to it instead, and so does a
    // resumable jig (the script jig's node-side journal: its execution outlives the operator and
    // the same run sent again attaches to it or takes its result, never executing twice).
    const destructive = (role.spec.flags ?? []).includes('destructive');
    // A destructive role's later run never executes its jig (§1.2), re-adopted or not.
    const skip = run.result === 'skipped' || (destructive && (nr.status.runCount ?? 0) > 0);
    if (this.executor.name === 'inline' && !jig.resumable && destructive && !skip) {
      await this.writeChange({
        name,
        state: 'error',
        message: `destructive run ${run.number} was interrupted by an operator restart; check the node, then retry`,
      });
      return;
    }
    this.log.info(
      { noderole: name, run: run.number, previousOwner: run.owner },
      're-adopting an interrupted run',
    );
    // The cache keeps no run input (kube/thin.ts): the run's own, as it started, from the API.
    const input = skip ? {} : await this.runInputOf(name, run.id);
    if (input === undefined) return;
    const res = await this.patchStatus(nr, { run: { owner: this.o.identity } });
    if (res) this.launch(res, role, node, jig, run.number, run.id, input, skip ? 'skip' : 'resume');
  }
}
