import { describe, expect, it } from 'vitest';
import { dataProblem, MAX_BYTES, MAX_DEPTH } from './limits.ts';

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? { a: v } : [v];
  return v;
}

describe('dataProblem', () => {
  it('allows data up to the depth limit and refuses one level more', () => {
    expect(dataProblem(nested(MAX_DEPTH), 'spec.data')).toBeUndefined();
    expect(dataProblem(nested(MAX_DEPTH + 1), 'spec.data')).toMatch(
      /^spec\.data is nested more than 32 levels deep; flatten it/,
    );
  });

  it('survives data far deeper than any recursion limit', () => {
    expect(dataProblem(nested(200_000), 'spec.template')).toMatch(/nested more than/);
  });

  it('refuses data larger than the size limit, with the limit in the message', () => {
    expect(dataProblem({ s: 'x'.repeat(MAX_BYTES - 100) }, 'spec.data')).toBeUndefined();
    expect(dataProblem({ s: 'x'.repeat(MAX_BYTES) }, 'spec.hints')).toMatch(
      /^spec\.hints is larger than 256 KiB; keep large data outside the API/,
    );
    const many = Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [`k${i}`, i]));
    expect(dataProblem(many, 'spec.data')).toMatch(/larger than/);
  });

  it('allows plain values and empty objects', () => {
    expect(dataProblem(undefined, 'x')).toBeUndefined();
    expect(dataProblem({}, 'x')).toBeUndefined();
    expect(dataProblem('text', 'x')).toBeUndefined();
  });
});
