/**
 * Pure formatting for `kubectl crowbar`: plain objects in, text out. No I/O, no clock: callers pass
 * what they read from the API server.
 */
import type { Deployment, Node, NodeRole } from '../generated/crowbar.ts';

export const STATES = ['proposed', 'todo', 'blocked', 'transition', 'active', 'error'] as const;
export type State = (typeof STATES)[number];
export type Counts = Record<State, number> & { total: number };

/** The root of the deployment tree (§1.5). */
export const SYSTEM = 'system';

/** Per-state counts of a list of noderoles; one not yet planned counts as proposed. */
export function countStates(nrs: readonly NodeRole[]): Counts {
  const c: Counts = {
    total: 0,
    proposed: 0,
    todo: 0,
    blocked: 0,
    transition: 0,
    active: 0,
    error: 0,
  };
  for (const nr of nrs) {
    c.total++;
    c[nr.status?.state ?? 'proposed']++;
  }
  return c;
}

/** `[#######.............]  35%`: the share of active noderoles, `width` cells wide. */
export function progressBar(active: number, total: number, width = 20): string {
  const frac = total === 0 ? 1 : Math.min(1, Math.max(0, active / total));
  const full = Math.round(frac * width);
  const pct = `${String(Math.floor(frac * 100)).padStart(3)}%`;
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${pct}`;
}

export interface TreeRow {
  name: string;
  depth: number;
}

/**
 * Depth-first rows of the deployment tree (spec.parent edges), children sorted by name. A
 * deployment whose parent is missing is shown as a root, so nothing is hidden; `only` restricts
 * the output to one deployment's subtree.
 */
export function deploymentTree(deps: readonly Deployment[], only?: string): TreeRow[] {
  const names = new Set(deps.map((d) => d.metadata.name ?? ''));
  const children = new Map<string, string[]>();
  const roots: string[] = [];
  for (const d of deps) {
    const name = d.metadata.name ?? '';
    const parent = d.spec.parent ?? (name === SYSTEM ? undefined : SYSTEM);
    if (parent === undefined || !names.has(parent) || parent === name) roots.push(name);
    else children.set(parent, [...(children.get(parent) ?? []), name]);
  }
  const rows: TreeRow[] = [];
  const seen = new Set<string>();
  const walk = (name: string, depth: number): void => {
    if (seen.has(name)) return;
    seen.add(name);
    rows.push({ name, depth });
    for (const c of (children.get(name) ?? []).sort()) walk(c, depth + 1);
  };
  const start = only === undefined ? roots.sort() : [only];
  for (const r of start) walk(r, 0);
  return rows;
}

/** Last `n` non-empty lines of a log tail. */
export function tailLines(text: string | undefined, n: number): string[] {
  if (!text) return [];
  const lines = text.replace(/\s+$/, '').split('\n');
  return lines.slice(-n);
}

/** The `status` screen: the tree with counts and bars, then the noderoles in error. */
export function renderStatus(
  deps: readonly Deployment[],
  nrs: readonly NodeRole[],
  only?: string,
): string {
  const rows = deploymentTree(deps, only);
  const byDep = new Map<string, NodeRole[]>();
  for (const nr of nrs)
    byDep.set(nr.spec.deployment, [...(byDep.get(nr.spec.deployment) ?? []), nr]);
  const byName = new Map(deps.map((d) => [d.metadata.name ?? '', d]));
  const labels = rows.map((r) => `${'  '.repeat(r.depth)}${r.depth > 0 ? '└ ' : ''}${r.name}`);
  const width = Math.max(10, ...labels.map((l) => l.length));
  const out: string[] = [];
  out.push(
    `${'DEPLOYMENT'.padEnd(width)}  ${'STATE'.padEnd(9)}  ${'PROGRESS'.padEnd(36)}${STATES.map((s) => s.toUpperCase()).join(' ')}`,
  );
  const shown = new Set<string>();
  rows.forEach((r, i) => {
    shown.add(r.name);
    const d = byName.get(r.name);
    const c = countStates(byDep.get(r.name) ?? []);
    const state = d === undefined ? 'missing' : (d.status?.state ?? d.spec.state ?? 'proposed');
    const counts = STATES.map((s) => String(c[s]).padStart(s.length)).join(' ');
    out.push(
      `${(labels[i] ?? '').padEnd(width)}  ${state.padEnd(9)}  ${progressBar(c.active, c.total)} ${String(c.active).padStart(3)}/${String(c.total).padEnd(3)} ${counts}`,
    );
  });
  const errors = nrs
    .filter((nr) => shown.has(nr.spec.deployment) && nr.status?.state === 'error')
    .sort((a, b) => (a.metadata.name ?? '').localeCompare(b.metadata.name ?? ''));
  if (errors.length > 0) {
    out.push('', `NODEROLES IN ERROR (${String(errors.length)})`);
    for (const nr of errors) {
      out.push(`✗ ${nr.metadata.name ?? ''}: ${nr.status?.message ?? '(no message)'}`);
      for (const l of tailLines(nr.status?.run?.logTail, 5)) out.push(`    | ${l}`);
    }
  }
  return out.join('\n') + '\n';
}

export interface WhyInput {
  nr: NodeRole;
  node: Node | undefined;
  deployment: Deployment | undefined;
  /** Every noderole (for parents and the run queue). */
  all: readonly NodeRole[];
  /** The operator's --max-concurrent-runs. */
  maxConcurrentRuns: number;
}

/** Sorts noderoles as the annealer starts them: (cohort, name). */
export function cohortOrder(a: NodeRole, b: NodeRole): number {
  const ca = a.status?.cohort ?? 0;
  const cb = b.status?.cohort ?? 0;
  if (ca !== cb) return ca - cb;
  const na = a.metadata.name ?? '';
  const nb = b.metadata.name ?? '';
  return na < nb ? -1 : na > nb ? 1 : 0;
}

/** What a noderole waits for, one reason a line (empty when it waits for nothing). */
export function whyReasons(w: WhyInput): string[] {
  const { nr, node, deployment } = w;
  const name = nr.metadata.name ?? '';
  const state = nr.status?.state ?? 'proposed';
  const byName = new Map(w.all.map((x) => [x.metadata.name ?? '', x]));
  const reasons: string[] = [];
  if (state === 'active') return reasons;
  if (state === 'error') {
    reasons.push(
      `it is in error: fix the cause, then \`kubectl crowbar retry ${name}\` (its descendants are blocked until then)`,
    );
  }
  if (nr.spec.proposed === true) {
    reasons.push(`the noderole itself is proposed: \`kubectl crowbar commit noderole ${name}\``);
  }
  if (node === undefined) reasons.push(`its node ${nr.spec.node} does not exist`);
  else {
    if (node.spec.proposed === true)
      reasons.push(
        `its node ${nr.spec.node} is proposed: \`kubectl crowbar commit node ${nr.spec.node}\``,
      );
    if (node.status?.alive !== true) reasons.push(`its node ${nr.spec.node} is not alive`);
    if (node.spec.available === false)
      reasons.push(
        `its node ${nr.spec.node} is not available: \`kubectl crowbar available ${nr.spec.node} on\``,
      );
  }
  if (deployment === undefined) reasons.push(`its deployment ${nr.spec.deployment} does not exist`);
  else if ((deployment.spec.state ?? 'proposed') === 'proposed')
    reasons.push(
      `its deployment ${nr.spec.deployment} is proposed: \`kubectl crowbar commit deployment ${nr.spec.deployment}\``,
    );
  for (const p of nr.status?.parents ?? []) {
    const parent = byName.get(p);
    const ps = parent === undefined ? 'missing' : (parent.status?.state ?? 'proposed');
    if (ps !== 'active') reasons.push(`parent ${p} is ${ps}`);
  }
  if (nr.spec.role.startsWith('network-')) {
    const network = nr.spec.role.slice('network-'.length);
    const c = nr.status?.conditions?.find((x) => x.type === 'Addressed');
    // ADR 0025: a healthy allocation writes no condition; the node's addresses come from its
    // allocations, and the run that makes the noderole active records them in its wall.
    const crowbar = nr.status?.wall?.['crowbar'] as
      { network?: Record<string, unknown> } | undefined;
    const walled = crowbar?.network?.[network] !== undefined;
    const listed = (node?.status?.addresses ?? []).some((a) => a.network === network);
    if (c !== undefined && c.status !== 'True')
      reasons.push(`network ${network}: Addressed=${c.status} (${c.reason}): ${c.message}`);
    else if (!walled && !listed && node !== undefined)
      reasons.push(
        `network ${network}: node ${nr.spec.node} lists no address on it yet (the allocator has not allocated one)`,
      );
  }
  if (node !== undefined) {
    const busy = w.all.filter(
      (x) =>
        x.spec.node === nr.spec.node &&
        x.metadata.name !== name &&
        (x.status?.state === 'transition' || x.status?.state === 'error'),
    );
    for (const b of busy)
      reasons.push(`its node has ${b.metadata.name ?? ''} in ${b.status?.state ?? ''}`);
  }
  if (state === 'todo') {
    const running = w.all.filter((x) => x.status?.state === 'transition').length;
    const ahead = w.all.filter(
      (x) => x.status?.state === 'todo' && x.metadata.name !== name && cohortOrder(x, nr) < 0,
    ).length;
    if (running >= w.maxConcurrentRuns || ahead > 0)
      reasons.push(
        `run queue: ${String(running)} of ${String(w.maxConcurrentRuns)} run slots in use, ${String(ahead)} todo noderole(s) ahead in (cohort, name) order`,
      );
  }
  return reasons;
}

/** The `why` screen. */
export function renderWhy(w: WhyInput): string {
  const nr = w.nr;
  const state = nr.status?.state ?? 'proposed';
  const out = [
    `${nr.metadata.name ?? ''}  (role ${nr.spec.role}, node ${nr.spec.node}, deployment ${nr.spec.deployment})`,
    `state: ${state}${nr.status?.message ? `: ${nr.status.message}` : ''}`,
  ];
  const reasons = whyReasons(w);
  if (state === 'active') out.push('it is active: it waits for nothing');
  else if (reasons.length === 0)
    out.push('waits for: nothing visible from here (the annealer should pick it up next)');
  else {
    out.push('waits for:');
    for (const r of reasons) out.push(`  - ${r}`);
  }
  return out.join('\n') + '\n';
}

/** The `logs` screen: the last run's facts and log tail. */
export function renderLogs(nr: NodeRole): string {
  const run = nr.status?.run;
  if (run === undefined || run.number === undefined)
    return `${nr.metadata.name ?? ''} has not run yet (state ${nr.status?.state ?? 'proposed'})\n`;
  const out = [
    `run ${String(run.number)} of ${nr.metadata.name ?? ''}: ${run.result ?? 'unknown'}` +
      (run.exitCode !== undefined ? `, exit code ${String(run.exitCode)}` : '') +
      (run.executor ? `, executor ${run.executor}` : ''),
    `started:  ${run.started ?? '-'}`,
    `finished: ${run.finished ?? '-'}`,
    '--- log tail ---',
  ];
  out.push(run.logTail ? run.logTail.replace(/\n$/, '') : '(empty)');
  return out.join('\n') + '\n';
}

/** Fill colours of states in the graph. */
export const STATE_COLOURS: Record<State, string> = {
  proposed: '#d9d9d9',
  todo: '#fff2a8',
  blocked: '#f4c27a',
  transition: '#9fc5f8',
  active: '#a8e0a0',
  error: '#f08080',
};

const q = (s: string): string => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
/** A quoted Graphviz label of several lines (`\n` escapes, never a raw newline in the source). */
const qLines = (...lines: string[]): string =>
  `"${lines.map((l) => q(l).slice(1, -1)).join('\\n')}"`;

/** Graphviz dot text of the noderole graph: a cluster per node, parent -> child edges. */
export function renderDot(nrs: readonly NodeRole[]): string {
  const names = new Set(nrs.map((n) => n.metadata.name ?? ''));
  const byNode = new Map<string, NodeRole[]>();
  for (const nr of nrs) byNode.set(nr.spec.node, [...(byNode.get(nr.spec.node) ?? []), nr]);
  const out = [
    'digraph crowbar {',
    '  rankdir=LR;',
    '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
    '  edge [color="#555555"];',
  ];
  let i = 0;
  for (const node of [...byNode.keys()].sort()) {
    out.push(`  subgraph cluster_${String(i++)} {`, `    label=${q(node)};`, '    style=dashed;');
    for (const nr of (byNode.get(node) ?? []).sort(cohortOrder)) {
      const state = nr.status?.state ?? 'proposed';
      out.push(
        `    ${q(nr.metadata.name ?? '')} [label=${qLines(nr.spec.role, state)}, fillcolor=${q(STATE_COLOURS[state])}];`,
      );
    }
    out.push('  }');
  }
  for (const nr of [...nrs].sort(cohortOrder))
    for (const p of nr.status?.parents ?? [])
      if (names.has(p)) out.push(`  ${q(p)} -> ${q(nr.metadata.name ?? '')};`);
  out.push('}');
  return out.join('\n') + '\n';
}
