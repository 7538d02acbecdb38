import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { nextWall, replacementPatch } from './wall.ts';

/** RFC 7386 MergePatch, as the API server applies it. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out = new Map<string, unknown>(
    typeof target === 'object' && target !== null && !Array.isArray(target)
      ? Object.entries(target)
      : [],
  );
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) out.delete(k);
    else out.set(k, mergePatch(out.get(k), v));
  }
  return Object.fromEntries(out);
}

const json = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 4 }),
  fc.oneof(
    fc.integer(),
    fc.string(),
    fc.array(fc.integer(), { maxLength: 3 }),
    fc.dictionary(fc.string({ minLength: 1, maxLength: 3 }), fc.oneof(fc.integer(), fc.string())),
  ),
);

describe('replacementPatch', () => {
  it('removes keys the new wall lacks, at any depth', () => {
    const from = { a: 1, b: { c: 2, d: 3 }, e: [1, 2] };
    const to = { b: { c: 2 }, e: [3] };
    expect(replacementPatch(from, to)).toEqual({ a: null, b: { d: null, c: 2 }, e: [3] });
    expect(mergePatch(from, replacementPatch(from, to))).toEqual(to);
  });

  it('applied as a merge patch, always yields exactly the new wall', () => {
    fc.assert(
      fc.property(json, json, (from, to) => {
        expect(mergePatch(from, replacementPatch(from, to))).toEqual(to);
      }),
    );
  });
});

describe('nextWall', () => {
  it("keeps the allocator's addresses and drops everything else the jig no longer returns", () => {
    const current = { old: 1, crowbar: { network: { admin: { addresses: ['10.0.0.5'] } }, x: 1 } };
    expect(nextWall(current, { fresh: 2 })).toEqual({
      fresh: 2,
      crowbar: { network: { admin: { addresses: ['10.0.0.5'] } } },
    });
    expect(nextWall({ old: 1 }, { fresh: 2 })).toEqual({ fresh: 2 });
    expect(nextWall(undefined, {})).toEqual({});
  });
});
