/**
 * Pure decisions of the aliveness controller (§10.1): when a node is due for a check, what a
 * check's outcome means, and the status write it needs (none when nothing changed).
 */
import { kubeTime, setConditions } from '../../kube/condition.ts';
import type { DampingRecord } from './damping.ts';
import type { Node } from '../../../generated/crowbar.ts';
import type { Condition } from '../../kube/condition.ts';

/** The annotation an admin bumps to ask for a check now (`kubectl annotate ... --overwrite`). */
export const CHECK_ANNOTATION = 'crowbar.dev/check-alive';

/** The condition type on Node status that explains `status.alive`. */
export const ALIVE_CONDITION = 'Alive';

export type { Condition } from '../../kube/condition.ts';

/** What one check (or a self-report) found. `alive: undefined` means it could not be decided. */
export interface Verdict {
  alive: boolean | undefined;
  /** CamelCase, for the condition. */
  reason: string;
  message: string;
}

/** What the controller remembers of a node between checks (in memory only). */
export interface Memo {
  /** When it was last checked (ms since epoch); 0 when never by this process. */
  lastCheck: number;
  /** Something happened that asks for a check now (a run started or ended, addresses changed). */
  force: boolean;
  /** Fields whose change forces a check: addresses, recorded host key, the check annotation. */
  fingerprint: string;
  /** The last check could not decide (no SSH key): retry at the short interval. */
  undecided: boolean;
}

export function nodeFingerprint(node: Readonly<Node>): string {
  return JSON.stringify([
    (node.status?.addresses ?? []).map((a) => `${a.network}=${a.address}`),
    node.status?.sshHostKey ?? '',
    node.metadata.annotations?.[CHECK_ANNOTATION] ?? '',
  ]);
}

export type Schedule = { check: true } | { check: false; afterMs: number };

/** An alive node without pending work is re-checked this many intervals apart. */
export const IDLE_FACTOR = 20;

/**
 * When to check: now when forced or never checked; every `intervalMs` while the node has pending
 * work (noderoles in todo or transition) or is not alive (so a dead node comes back); an alive,
 * idle node only every IDLE_FACTOR intervals (a run touching it forces a check anyway).
 */
export function schedule(o: {
  now: number;
  memo: Memo;
  pending: boolean;
  alive: boolean | undefined;
  intervalMs: number;
}): Schedule {
  if (o.memo.force || o.memo.lastCheck === 0) return { check: true };
  const every = requeueAfter(o.pending, o.alive, o.intervalMs);
  const wait = o.memo.lastCheck + every - o.now;
  return wait <= 0 ? { check: true } : { check: false, afterMs: wait };
}

/** After a check: when to look again. */
export function requeueAfter(
  pending: boolean,
  alive: boolean | undefined,
  intervalMs: number,
): number {
  return pending || alive !== true ? intervalMs : intervalMs * IDLE_FACTOR;
}

/** Classifies checkAlive's reason text into a condition reason. */
export function classify(alive: boolean, reason: string): Verdict {
  if (alive) return { alive, reason: 'Reachable', message: reason };
  const r = /^no admin address .* answers ping/.test(reason)
    ? 'NoPing'
    : /host key of .* changed/.test(reason)
      ? 'HostKeyChanged'
      : /refused authentication/.test(reason)
        ? 'AuthRefused'
        : /answers ping but SSH fails|SSH echo/.test(reason)
          ? 'SshFailed'
          : 'Unreachable';
  return { alive, reason: r, message: reason };
}

/**
 * The status merge patch for a verdict, or undefined when alive, the condition's status, reason
 * and message are unchanged and `aliveChecked` is younger than `refreshMs` (no write spam).
 * `alive: undefined` leaves status.alive as it is and only explains why in the condition.
 */
export function statusPatch(
  node: Readonly<Node>,
  v: Verdict,
  now: Date,
  refreshMs: number,
  /** Flap damping to persist with the verdict (FlapDamper.record), if it changed. */
  damping?: DampingRecord,
): Record<string, unknown> | undefined {
  const conds = node.status?.conditions ?? [];
  const prev = conds.find((c) => c.type === ALIVE_CONDITION);
  const status: Condition['status'] =
    v.alive === undefined ? 'Unknown' : v.alive ? 'True' : 'False';
  const aliveSame = v.alive === undefined || node.status?.alive === v.alive;
  const condSame =
    prev?.status === status && prev.reason === v.reason && prev.message === v.message;
  const checked = Date.parse(node.status?.aliveChecked ?? '');
  const fresh = Number.isFinite(checked) && now.getTime() - checked < refreshMs;
  if (aliveSame && condSame && fresh && damping === undefined) return undefined;
  return {
    ...(v.alive === undefined ? {} : { alive: v.alive }),
    ...(damping === undefined ? {} : { aliveDamping: damping }),
    aliveChecked: kubeTime(now),
    conditions: setConditions(
      conds,
      [{ type: ALIVE_CONDITION, status, reason: v.reason, message: v.message.slice(0, 1024) }],
      now,
    ),
  };
}
