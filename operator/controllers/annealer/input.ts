/**
 * The data a run starts with (§4.1 all_transition_data), later sources winning in a deep merge:
 *
 * 1. what the role `wants` (attribute paths) from the walls of its ancestors on other nodes,
 *    farthest first, so the closest holder of a path wins (§4.1 step 2, NodeRoleAttribLink);
 * 2. the whole walls of its ancestors on the same node, farthest first (§4.1 step 3);
 * 3. the noderole's own data (§4.1 step 4): the role's template, the data of its deployment's
 *    chain from `system` down to its own, then its committed data;
 * 4. the `crowbar` key: where and what is running, the node's hints, quirks and addresses.
 *
 * "Farthest first" is cohort order, lowest first; equal cohorts are taken in name order, so the
 * last name wins a tie. Another node's data never arrives unasked ([SOTW]: cross-node data only
 * from a server role; here, only through `wants`). The digest of the input is recorded with each
 * run, so the annealer can tell when an edit changes what a run would get.
 */
import { createHash } from 'node:crypto';
import type { Deployment, Node, NodeRole, Role } from '../../../generated/crowbar.ts';
import { deploymentChain } from '../../annealer/world.ts';

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Deep merge where `b` wins; arrays and scalars are replaced, objects merged. */
export function deepMerge(a: Json, b: Json): Json {
  const out: Json = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = isObj(cur) && isObj(v) ? deepMerge(cur, v) : v;
  }
  return out;
}

/** Transitive parents of `name`, farthest first: (cohort, name) ascending, each once. */
export function ancestors(
  name: string,
  get: (n: string) => Readonly<NodeRole> | undefined,
): Readonly<NodeRole>[] {
  const seen = new Set<string>();
  const out: Readonly<NodeRole>[] = [];
  const stack = [...(get(name)?.status?.parents ?? [])];
  // Iterative, and bounded by `seen`: a cycle that slipped past admission cannot loop.
  for (let p = stack.pop(); p !== undefined; p = stack.pop()) {
    if (seen.has(p) || p === name) continue;
    seen.add(p);
    const pnr = get(p);
    if (!pnr) continue;
    out.push(pnr);
    stack.push(...(pnr.status?.parents ?? []));
  }
  const key = (nr: Readonly<NodeRole>): string => nr.metadata.name ?? '';
  return out.sort(
    (x, y) =>
      (x.status?.cohort ?? 0) - (y.status?.cohort ?? 0) ||
      (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0),
  );
}

/** The value at a slash-separated path, or undefined. */
function at(data: Json | undefined, path: readonly string[]): unknown {
  let cur: unknown = data;
  for (const part of path) {
    if (!isObj(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}

/** `{a: {b: value}}` for the path a/b. */
function nest(path: readonly string[], value: unknown): Json {
  let out: unknown = value;
  for (const part of [...path].reverse()) out = { [part]: out };
  return out as Json;
}

export function runInput(args: {
  noderole: Readonly<NodeRole>;
  role: Readonly<Role>;
  node: Readonly<Node>;
  getDeployment: (n: string) => Readonly<Deployment> | undefined;
  get: (n: string) => Readonly<NodeRole> | undefined;
}): Json {
  const { noderole, role, node, getDeployment, get } = args;
  const here = noderole.spec.node;
  const all = ancestors(noderole.metadata.name ?? '', get);
  let data: Json = {};
  const wants = (role.spec.wants ?? []).map((w) => w.split('/'));
  for (const p of all) {
    if (p.spec.node === here) continue;
    for (const path of wants) {
      const v = at(p.status?.wall, path);
      if (v !== undefined) data = deepMerge(data, nest(path, v));
    }
  }
  for (const p of all) if (p.spec.node === here) data = deepMerge(data, p.status?.wall ?? {});
  data = deepMerge(data, role.spec.template ?? {});
  // From the root down to the noderole's own deployment (a loop or a gap ends the chain).
  const chain = deploymentChain((d) => getDeployment(d)?.spec.parent, noderole.spec.deployment);
  for (const name of chain.reverse()) data = deepMerge(data, getDeployment(name)?.spec.data ?? {});
  data = deepMerge(data, noderole.status?.committedData ?? noderole.spec.data ?? {});
  return deepMerge(data, {
    crowbar: {
      node: node.metadata.name,
      role: role.metadata.name,
      deployment: noderole.spec.deployment,
      admin: node.spec.admin ?? false,
      hints: node.spec.hints ?? {},
      quirks: node.spec.quirks ?? [],
      addresses: node.status?.addresses ?? [],
    },
  });
}

/** JSON with object keys sorted, so equal data always serializes the same. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObj(v)) {
    const keys = Object.keys(v)
      .filter((k) => v[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** `sha256:<hex>` of the input's canonical JSON. */
export function inputDigest(input: Json): string {
  return `sha256:${createHash('sha256').update(canonical(input)).digest('hex')}`;
}
