/**
 * The wall (§4.2): the data a jig's last successful run returned. Each run's wall replaces the
 * last one (2015 semantics; 2013 deep-merged), so keys a script stops returning disappear.
 * `crowbar.network` (a network role's addresses) is the allocator's: the annealer records it in
 * the write that ends a network role's first run (ADR 0025), and no jig run replaces it.
 */
type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The wall after a successful run: the jig's output, keeping the allocator's addresses. */
export function nextWall(current: Json | undefined, fromJig: Json): Json {
  const crowbar = current?.['crowbar'];
  const network = isObj(crowbar) ? crowbar['network'] : undefined;
  if (network === undefined) return fromJig;
  const jigCrowbar = fromJig['crowbar'];
  return { ...fromJig, crowbar: { ...(isObj(jigCrowbar) ? jigCrowbar : {}), network } };
}

/**
 * A JSON merge patch (RFC 7386) that turns `from` into `to`: keys of `from` missing in `to` are
 * set to null (removed), objects are patched key by key, anything else is replaced. Written with
 * the resourceVersion `from` was read at, it replaces a field that a plain merge would merge.
 * A null inside `to` cannot be told from a removal and is dropped, as merge patch defines.
 */
export function replacementPatch(from: Json | undefined, to: Json): Json {
  const out: Json = {};
  for (const k of Object.keys(from ?? {})) if (!(k in to)) out[k] = null;
  for (const [k, v] of Object.entries(to)) {
    const before = from?.[k];
    out[k] = isObj(before) && isObj(v) ? replacementPatch(before, v) : v;
  }
  return out;
}
