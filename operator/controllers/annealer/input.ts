/**
 * The data a run starts with (§4.1, simplified): the role's template, then the deployment's data,
 * then the walls of the noderole's transitive parents from the farthest to the closest (so a
 * child sees what its parents' jigs returned), then the noderole's committed data; the `crowbar`
 * key says where and what is running. Later sources win in a deep merge.
 */
import type { Deployment, Node, NodeRole, Role } from '../../../generated/crowbar.ts';

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

/** Transitive parents of `name`, farthest first (descending cohort distance), each once. */
export function ancestors(
  name: string,
  get: (n: string) => Readonly<NodeRole> | undefined,
): Readonly<NodeRole>[] {
  const seen = new Set<string>();
  const out: Readonly<NodeRole>[] = [];
  const visit = (n: string): void => {
    for (const p of get(n)?.status?.parents ?? []) {
      if (seen.has(p)) continue;
      seen.add(p);
      const pnr = get(p);
      if (pnr) out.push(pnr);
      visit(p);
    }
  };
  visit(name);
  return out.sort((x, y) => (x.status?.cohort ?? 0) - (y.status?.cohort ?? 0));
}

export function runInput(args: {
  noderole: Readonly<NodeRole>;
  role: Readonly<Role>;
  node: Readonly<Node>;
  deployment: Readonly<Deployment> | undefined;
  get: (n: string) => Readonly<NodeRole> | undefined;
}): Json {
  const { noderole, role, node, deployment, get } = args;
  let data: Json = deepMerge({}, role.spec.template ?? {});
  data = deepMerge(data, deployment?.spec.data ?? {});
  for (const p of ancestors(noderole.metadata.name ?? '', get))
    data = deepMerge(data, p.status?.wall ?? {});
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
