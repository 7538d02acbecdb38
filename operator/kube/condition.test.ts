import { describe, expect, it } from 'vitest';
import { conditionsCurrent, setConditions, type Condition } from './condition.ts';

const t0 = new Date('2026-11-30T10:00:00.123Z');
const t1 = new Date('2026-11-30T10:05:00.456Z');

describe('setConditions', () => {
  it('keeps lastTransitionTime while the status is unchanged, moves it when it changes', () => {
    const a = setConditions(
      undefined,
      [{ type: 'Ready', status: 'False', reason: 'R', message: 'm' }],
      t0,
      1,
    );
    expect(a).toEqual([
      {
        type: 'Ready',
        status: 'False',
        reason: 'R',
        message: 'm',
        lastTransitionTime: '2026-11-30T10:00:00Z',
        observedGeneration: 1,
      },
    ]);
    const b = setConditions(
      a,
      [{ type: 'Ready', status: 'False', reason: 'S', message: 'n' }],
      t1,
      2,
    );
    expect(b[0]?.lastTransitionTime).toBe('2026-11-30T10:00:00Z');
    expect(b[0]?.observedGeneration).toBe(2);
    const c = setConditions(
      b,
      [{ type: 'Ready', status: 'True', reason: 'S', message: 'n' }],
      t1,
      2,
    );
    expect(c[0]?.lastTransitionTime).toBe('2026-11-30T10:05:00Z');
  });

  it("keeps other controllers' condition types where they are", () => {
    const theirs: Condition = {
      type: 'Addressed',
      status: 'True',
      reason: 'A',
      message: 'a',
      lastTransitionTime: 'x',
    };
    const out = setConditions(
      [theirs],
      [{ type: 'Active', status: 'True', reason: 'B', message: 'b' }],
      t0,
    );
    expect(out.map((c) => c.type)).toEqual(['Addressed', 'Active']);
    expect(out[0]).toBe(theirs);
  });

  it('conditionsCurrent tells whether a write would change what readers see', () => {
    const a = setConditions(
      undefined,
      [{ type: 'Ready', status: 'True', reason: 'R', message: 'm' }],
      t0,
      3,
    );
    expect(
      conditionsCurrent(a, [{ type: 'Ready', status: 'True', reason: 'R', message: 'm' }], 3),
    ).toBe(true);
    expect(
      conditionsCurrent(a, [{ type: 'Ready', status: 'True', reason: 'R', message: 'm' }], 4),
    ).toBe(false);
    expect(
      conditionsCurrent(a, [{ type: 'Other', status: 'True', reason: 'R', message: 'm' }]),
    ).toBe(false);
  });
});
