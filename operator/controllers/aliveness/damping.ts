/**
 * Flap damping for node aliveness (pure; the clock is passed in), after BGP route flap damping
 * (RFC 2439): each change of a node's alive flag adds a penalty that decays exponentially; past
 * the suppress limit the node is held dead, and it is let back only once the penalty has decayed
 * below the reuse limit. Dead is the safe side: the annealer then waits instead of re-running the
 * node's noderoles on every flap (§2.4 ripples a death to the node's noderoles, and each
 * return re-runs them). A verdict of dead always passes; only "alive" is held back.
 *
 * The state is kept where every replica sees it: `record()` gives what to write with the verdict
 * (status.aliveDamping, in the same status write, and only when the count of changes or the
 * hold changed), and `damp()` starts from that record when it is newer than what this process
 * remembers: a new leader, or the node API on a standby, keeps the penalties (ADR 0019).
 */
import type { Verdict } from './plan.ts';

export interface DampingOptions {
  /** Penalty added by each change of the alive flag. */
  penalty: number;
  /** Held dead once the penalty reaches this. */
  suppress: number;
  /** Let back once the penalty has decayed below this. */
  reuse: number;
  /** The penalty halves in this time. */
  halfLifeMs: number;
  /** At most this many nodes are remembered (the quietest go first). */
  maxNodes: number;
}

/**
 * Four changes in quick succession hold a node (a node checked every 15 s that flips at each
 * check is held at its fifth change); a reboot's dead-then-alive, or an install's few changes, never
 * are. A held node that stops flapping is let back within about two minutes.
 */
export const DAMPING: DampingOptions = {
  penalty: 1000,
  suppress: 3500,
  reuse: 1000,
  halfLifeMs: 60_000,
  maxNodes: 100_000,
};

/** The persisted form (the Node's status.aliveDamping). */
export interface DampingRecord {
  penalty: number;
  /** When the penalty had that value (RFC 3339). */
  at: string;
  flaps: number;
  suppressed: boolean;
  /** What was last observed (a held node is observed alive while its status says dead). */
  observed?: boolean;
}

interface State {
  penalty: number;
  at: number;
  alive: boolean | undefined;
  flaps: number;
  suppressed: boolean;
}

export class FlapDamper {
  private readonly o: DampingOptions;
  private readonly nodes = new Map<string, State>();
  /** When a node's history was last forgotten: older records are not taken back. */
  private readonly forgotten = new Map<string, number>();

  constructor(o: DampingOptions = DAMPING) {
    this.o = o;
  }

  private decayed(s: State, now: number): number {
    return s.penalty * Math.pow(0.5, Math.max(0, now - s.at) / this.o.halfLifeMs);
  }

  /**
   * The verdict to write for node `node` at `now`, given what was observed (`v`) and what its
   * status says now (`current`). A change of the flag counts as a flap; an "alive" while the
   * node is suppressed becomes "dead" with reason `Flapping` and a message that says until when.
   */
  damp(
    node: string,
    v: Verdict,
    current: boolean | undefined,
    now: number,
    persisted?: DampingRecord,
  ): Verdict {
    let s = this.nodes.get(node);
    const at = persisted === undefined ? NaN : Date.parse(persisted.at);
    if (
      persisted !== undefined &&
      Number.isFinite(at) &&
      at > (s?.at ?? -Infinity) &&
      at > (this.forgotten.get(node) ?? -Infinity) &&
      Number.isFinite(persisted.penalty) &&
      persisted.penalty >= 0
    ) {
      s = {
        penalty: persisted.penalty,
        at: Math.min(at, now),
        alive: persisted.observed ?? current,
        flaps: persisted.flaps,
        suppressed: persisted.suppressed,
      };
      this.nodes.set(node, s);
      this.trim();
    }
    if (!s) {
      s = { penalty: 0, at: now, alive: current, flaps: 0, suppressed: false };
      this.nodes.set(node, s);
      this.trim();
    }
    s.penalty = this.decayed(s, now);
    s.at = now;
    if (v.alive !== undefined && s.alive !== undefined && v.alive !== s.alive) {
      s.penalty += this.o.penalty;
      s.flaps++;
    }
    if (v.alive !== undefined) s.alive = v.alive;
    if (s.penalty >= this.o.suppress) s.suppressed = true;
    if (s.suppressed && s.penalty < this.o.reuse) {
      s.suppressed = false;
      s.flaps = 0;
    }
    if (!s.suppressed || v.alive !== true) return v;
    const waitS = Math.ceil(this.releaseInMs(node, now) / 1000);
    return {
      alive: false,
      reason: 'Flapping',
      message: `node ${node} changed between alive and dead ${String(s.flaps)} times in quick succession: held dead for about ${String(waitS)} s more while it settles (it was: ${v.message})`,
    };
  }

  /** How long until a suppressed node would be let back if it stops flapping; 0 when it is not. */
  releaseInMs(node: string, now: number): number {
    const s = this.nodes.get(node);
    if (!s?.suppressed) return 0;
    const p = this.decayed(s, now);
    if (p < this.o.reuse) return 0;
    return Math.ceil(Math.log2(p / this.o.reuse) * this.o.halfLifeMs) + 1;
  }

  /**
   * What to persist for `node`, or undefined when `stored` already says the same: the count of
   * changes and the hold are what matter, and both change only with a verdict that is written
   * anyway, so persisting costs no extra write.
   */
  record(node: string, stored: DampingRecord | undefined): DampingRecord | undefined {
    const s = this.nodes.get(node);
    if (!s) return undefined;
    if (stored?.flaps === s.flaps && stored.suppressed === s.suppressed) return undefined;
    return {
      penalty: Math.round(s.penalty),
      at: new Date(s.at).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      flaps: s.flaps,
      suppressed: s.suppressed,
      ...(s.alive === undefined ? {} : { observed: s.alive }),
    };
  }

  /** Forgets `node`'s history (a person changed it); records written before `now` stay ignored. */
  forget(node: string, now = Date.now()): void {
    this.nodes.delete(node);
    this.forgotten.set(node, now);
    this.trim();
  }

  private trim(): void {
    for (const m of [this.nodes, this.forgotten])
      while (m.size > this.o.maxNodes) {
        const first = m.keys().next().value;
        if (first === undefined) break;
        m.delete(first);
      }
  }
}
