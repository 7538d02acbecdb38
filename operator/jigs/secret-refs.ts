/**
 * Secret data in role templates and noderole data (issue 14, "secrets stay secret"). Where a value
 * must be secret, the data holds a reference instead of the value:
 *
 *   template: { db: { password: { secretRef: { name: db-credentials, key: password } } } }
 *
 * The reference names a Secret in the operator's namespace (read by name; the operator cannot list
 * Secrets). The annealer merges and records run input with the references in it, so
 * `status.run.input`, Events and logs only ever show the reference; the jig resolves them when the
 * run starts, sends the values to the node in the run's input file (removed with the run's
 * directory when the run ends), and every string the run returns (wall, message, log tail) has
 * the values replaced by {@link REDACTED} before the annealer sees it.
 * Pure: the Secret reader is passed in. Walks are iterative (data is at most 32 levels deep at
 * admission, but a wall is what a script says).
 */

export interface SecretRef {
  name: string;
  key: string;
}

export const REDACTED = '[secret]';

const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const KEY = /^[-._a-zA-Z0-9]{1,253}$/;

type Json = unknown;

/** The reference `v` holds when it is exactly `{ secretRef: { name, key } }`, else undefined. */
export function asSecretRef(v: Json): SecretRef | { invalid: string } | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length !== 1 || keys[0] !== 'secretRef') return undefined;
  const r = (v as Record<string, unknown>)['secretRef'];
  const name = (r as Record<string, unknown> | null)?.['name'];
  const key = (r as Record<string, unknown> | null)?.['key'];
  if (typeof name !== 'string' || !NAME.test(name) || typeof key !== 'string' || !KEY.test(key)) {
    return {
      invalid: `a secretRef needs {name: <Secret name>, key: <key>}, got ${JSON.stringify(r).slice(0, 200)}`,
    };
  }
  return { name, key };
}

/** Every reference in `data`, once each, in the order found. */
export function findSecretRefs(data: Json): (SecretRef | { invalid: string })[] {
  const out = new Map<string, SecretRef | { invalid: string }>();
  const stack: Json[] = [data];
  for (let v = stack.pop(); v !== undefined; v = stack.pop()) {
    const ref = asSecretRef(v);
    if (ref) {
      out.set('invalid' in ref ? ref.invalid : `${ref.name}\u0000${ref.key}`, ref);
      continue;
    }
    if (typeof v === 'object' && v !== null)
      for (const x of Object.values(v) as Json[]) stack.push(x);
  }
  return [...out.values()];
}

/** `data` with every reference replaced by `value(ref)` (a copy; `data` is not changed). */
export function substitute(data: Json, value: (ref: SecretRef) => string): Json {
  const ref = asSecretRef(data);
  if (ref && !('invalid' in ref)) return value(ref);
  if (typeof data !== 'object' || data === null) return data;
  // Depth is bounded by admission (32) for templates and data, so recursion is safe here.
  if (Array.isArray(data)) return data.map((x) => substitute(x, value));
  return Object.fromEntries(Object.entries(data).map(([k, x]) => [k, substitute(x, value)]));
}

/** The key of a reference in a map of resolved values (names and keys never hold a NUL). */
export function refKey(ref: SecretRef): string {
  return `${ref.name}\u0000${ref.key}`;
}

/**
 * `input` with every reference replaced by its value from `values` (keyed by {@link refKey}), and
 * the values used, to redact from what the run returns; or an error naming the first reference
 * that is bad or has no value.
 */
export function applySecretValues(
  input: Record<string, unknown>,
  values: ReadonlyMap<string, string>,
): { input: Record<string, unknown>; values: string[] } | { error: string } {
  const refs = findSecretRefs(input);
  if (refs.length === 0) return { input, values: [] };
  const used: string[] = [];
  for (const ref of refs) {
    if ('invalid' in ref) return { error: `the run input has a bad secretRef: ${ref.invalid}` };
    const v = values.get(refKey(ref));
    if (v === undefined) return { error: `secretRef ${ref.name}/${ref.key} has no value` };
    used.push(v);
  }
  const resolved = substitute(input, (r) => values.get(refKey(r)) ?? '') as Record<string, unknown>;
  return { input: resolved, values: used };
}

/** `text` with every occurrence of each secret value replaced by {@link REDACTED}. */
export function redact(text: string, values: readonly string[]): string {
  let out = text;
  // Longest first, so a value that contains another is replaced whole.
  for (const v of [...values].sort((a, b) => b.length - a.length)) {
    if (v !== '') out = out.split(v).join(REDACTED);
  }
  return out;
}

/** `data` with every string (keys included) redacted (iterative: a wall may be deep). */
export function redactDeep(data: Json, values: readonly string[]): Json {
  if (values.every((v) => v === '')) return data;
  const fix = (v: Json): Json => (typeof v === 'string' ? redact(v, values) : v);
  const root: { v: Json } = { v: data };
  const stack: { parent: Record<string, Json> | Json[]; key: string | number }[] = [];
  const copy = (v: Json): Json => {
    if (typeof v !== 'object' || v === null) return fix(v);
    const c: Record<string, Json> | Json[] = Array.isArray(v)
      ? [...(v as Json[])]
      : Object.fromEntries(Object.entries(v).map(([k, x]) => [redact(k, values), x]));
    for (const k of Object.keys(c))
      stack.push({ parent: c, key: Array.isArray(c) ? Number(k) : k });
    return c;
  };
  root.v = copy(data);
  for (let it = stack.pop(); it !== undefined; it = stack.pop()) {
    const p = it.parent as Record<string | number, Json>;
    p[it.key] = copy(p[it.key]);
  }
  return root.v;
}
