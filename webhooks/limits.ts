/**
 * Limits on the free-form data people write (a noderole's `spec.data`, a role's `template`, a
 * deployment's `data`, a node's `hints`). The CRDs cannot bound the depth or size of
 * `x-kubernetes-preserve-unknown-fields` objects, and data flows from them into every run's input,
 * status writes and comparisons: an object thousands of levels deep breaks recursive code
 * (JSON.stringify, deep equality) and one near etcd's object limit makes every later status write
 * of the noderole fail. So admission refuses them, with the limit in the message. The walk is
 * iterative, so the check itself cannot be broken by the depth it checks.
 */

/** Deepest nesting of objects and arrays allowed (a plain value at the top is depth 0). */
export const MAX_DEPTH = 32;
/** Largest serialized size allowed, in bytes (etcd stores whole objects up to 1.5 MiB). */
export const MAX_BYTES = 256 * 1024;

/** What is wrong with `value` as free-form data at `where`, or undefined when it is fine. */
export function dataProblem(value: unknown, where: string): string | undefined {
  let bytes = 0;
  const stack: { v: unknown; depth: number }[] = [{ v: value, depth: 0 }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { v, depth } = item;
    if (typeof v === 'string') bytes += Buffer.byteLength(v, 'utf8') + 2;
    else if (v === null || typeof v !== 'object') bytes += String(v).length;
    else {
      if (depth + 1 > MAX_DEPTH)
        return `${where} is nested more than ${MAX_DEPTH} levels deep; flatten it (keep data at most ${MAX_DEPTH} levels deep)`;
      const entries = Array.isArray(v) ? v.map((x) => ['', x] as const) : Object.entries(v);
      bytes += 2;
      for (const [k, x] of entries) {
        bytes += k === '' ? 1 : Buffer.byteLength(k, 'utf8') + 4;
        stack.push({ v: x, depth: depth + 1 });
      }
    }
    if (bytes > MAX_BYTES)
      return `${where} is larger than ${MAX_BYTES / 1024} KiB; keep large data outside the API (e.g. a ConfigMap the script reads) and pass a reference`;
  }
  return undefined;
}
