/**
 * The status condition shape every Crowbar CRD uses, derived from the generated CRD types, and
 * the one way controllers set one (as apimachinery's meta.SetStatusCondition does):
 * `lastTransitionTime` moves only when the status changes, `observedGeneration` says which spec
 * the condition was computed from, and other controllers' condition types are kept.
 */
import type { Node } from '../../generated/crowbar.ts';

export type Condition = NonNullable<NonNullable<Node['status']>['conditions']>[number];

/** What a controller decides; the helper fills in the times. */
export interface ConditionUpdate {
  readonly type: string;
  readonly status: Condition['status'];
  readonly reason: string;
  readonly message: string;
}

/** The CRDs' limit on a condition message. */
const MESSAGE_MAX = 32_768;

/** RFC 3339 without fractions, as Kubernetes writes `metav1.Time`. */
export function kubeTime(now: Date): string {
  return now.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** One condition, keeping the previous one's transition time when its status is unchanged. */
export function condition(
  previous: readonly Condition[] | undefined,
  update: ConditionUpdate,
  now: Date,
  generation?: number,
): Condition {
  const prev = previous?.find((c) => c.type === update.type);
  return {
    type: update.type,
    status: update.status,
    reason: update.reason,
    message: (update.message || update.reason).slice(0, MESSAGE_MAX),
    lastTransitionTime: prev?.status === update.status ? prev.lastTransitionTime : kubeTime(now),
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  };
}

/** `previous` with the updates set (each replacing its type), other types kept in place. */
export function setConditions(
  previous: readonly Condition[] | undefined,
  updates: readonly ConditionUpdate[],
  now: Date,
  generation?: number,
): Condition[] {
  const next = updates.map((u) => condition(previous, u, now, generation));
  const byType = new Map(next.map((c) => [c.type, c]));
  const out: Condition[] = [];
  for (const c of previous ?? []) {
    const n = byType.get(c.type);
    out.push(n ?? c);
    byType.delete(c.type);
  }
  return [...out, ...byType.values()];
}

/** True when setting `updates` would change nothing a reader sees (times aside). */
export function conditionsCurrent(
  previous: readonly Condition[] | undefined,
  updates: readonly ConditionUpdate[],
  generation?: number,
): boolean {
  return updates.every((u) => {
    const p = previous?.find((c) => c.type === u.type);
    return (
      p !== undefined &&
      p.status === u.status &&
      p.reason === u.reason &&
      p.message === (u.message || u.reason).slice(0, MESSAGE_MAX) &&
      (generation === undefined || p.observedGeneration === generation)
    );
  });
}
