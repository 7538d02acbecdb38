/**
 * When the lab has converged (issue 8, "Must show"): every noderole `active`, the deployments
 * `active`, every Node `active`, and each bootstrap role bound on the admin node (and only there:
 * clients find their servers on the admin node, §6.3, §10.5). Pure: a snapshot in, a verdict out,
 * with one line per thing that is not there yet saying its state and why.
 */
import type { Deployment, Node, NodeRole, Role } from '../generated/crowbar.ts';

export interface LabSnapshot {
  readonly roles: readonly Role[];
  readonly noderoles: readonly NodeRole[];
  readonly nodes: readonly Node[];
  readonly deployments: readonly Deployment[];
}

export interface Convergence {
  readonly converged: boolean;
  readonly deployments: number;
  readonly nodes: number;
  readonly noderoles: number;
  /** What is not converged, one line each: `noderole x: todo (waiting for ...)`. */
  readonly pending: readonly string[];
}

/** The deployments and admin node the lab expects. */
export interface LabExpectations {
  /** Deployments that must exist and be active (besides every other one being active). */
  readonly deployments: readonly string[];
  /** The admin node, where every `bootstrap` role must be bound. */
  readonly adminNode: string;
  /** At least this many nodes (the examples' nodes). */
  readonly minNodes: number;
}

const why = (message: string | undefined): string =>
  message === undefined || message === '' ? '' : ` (${message})`;

export function convergence(s: LabSnapshot, want: LabExpectations): Convergence {
  const pending: string[] = [];
  const byName = (a: { metadata: { name?: string } }, b: { metadata: { name?: string } }) =>
    (a.metadata.name ?? '').localeCompare(b.metadata.name ?? '');

  for (const nr of [...s.noderoles].sort(byName)) {
    const state = nr.status?.state ?? 'unplanned';
    if (state !== 'active') {
      pending.push(`noderole ${nr.metadata.name ?? ''}: ${state}${why(nr.status?.message)}`);
    }
  }

  const deps = new Map(s.deployments.map((d) => [d.metadata.name ?? '', d]));
  for (const name of want.deployments) {
    if (!deps.has(name)) pending.push(`deployment ${name}: missing`);
  }
  for (const d of [...s.deployments].sort(byName)) {
    const state = d.status?.state ?? 'unobserved';
    if (state === 'active') continue;
    const c = d.status?.counts;
    const counts =
      c === undefined
        ? ''
        : ` (${String(c.active ?? 0)}/${String(c.total ?? 0)} noderoles active` +
          (['proposed', 'todo', 'blocked', 'transition', 'error'] as const)
            .filter((k) => (c[k] ?? 0) > 0)
            .map((k) => `, ${String(c[k] ?? 0)} ${k}`)
            .join('') +
          ')';
    pending.push(`deployment ${d.metadata.name ?? ''}: ${state}${counts}`);
  }

  if (s.nodes.length < want.minNodes) {
    pending.push(`nodes: ${String(s.nodes.length)} of the ${String(want.minNodes)} expected`);
  }
  for (const n of [...s.nodes].sort(byName)) {
    const state = n.status?.state ?? 'unobserved';
    if (state === 'active' && n.status?.alive === true) continue;
    const alive = n.status?.alive === true ? 'alive' : 'not alive';
    pending.push(`node ${n.metadata.name ?? ''}: ${state}, ${alive}`);
  }

  if (!s.nodes.some((n) => n.metadata.name === want.adminNode)) {
    pending.push(`node ${want.adminNode}: missing (the admin node)`);
  }
  for (const role of [...s.roles].sort(byName)) {
    if (!(role.spec.flags ?? []).includes('bootstrap')) continue;
    const name = role.metadata.name ?? '';
    const on = s.noderoles.filter((nr) => nr.spec.role === name).map((nr) => nr.spec.node);
    if (!on.includes(want.adminNode)) {
      pending.push(
        `role ${name} (bootstrap): not bound on the admin node ${want.adminNode}` +
          (on.length > 0 ? `; bound on ${on.sort().join(', ')}` : ''),
      );
    } else if (on.length > 1) {
      pending.push(
        `role ${name} (bootstrap): also bound on ${on
          .filter((n) => n !== want.adminNode)
          .sort()
          .join(', ')}; clients should use the admin node's`,
      );
    }
  }

  return {
    converged: pending.length === 0,
    deployments: s.deployments.length,
    nodes: s.nodes.length,
    noderoles: s.noderoles.length,
    pending,
  };
}

/** `3 deployments active, 4 nodes active, 23 noderoles active`. */
export function convergedSummary(c: Convergence): string {
  return `${String(c.deployments)} deployments active, ${String(c.nodes)} nodes active, ${String(c.noderoles)} noderoles active`;
}
