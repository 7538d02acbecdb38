import { describe, expect, it } from 'vitest';
import { DutyCycle } from './duty-cycle.ts';

describe('DutyCycle', () => {
  it('spaces a costly key so that it runs at most its share of the time, bounded', () => {
    const d = new DutyCycle(0.05, 30_000);
    expect(d.wait('big', 0)).toBe(0);
    d.ran('big', 1000, 1100); // 100 ms: next start 1.9 s after its end
    expect(d.wait('big', 1100)).toBe(1900);
    expect(d.wait('big', 2500)).toBe(500);
    expect(d.wait('big', 3000)).toBe(0);
    d.ran('big', 0, 10_000);
    expect(d.wait('big', 10_000)).toBe(30_000);
  });
  it('leaves cheap keys alone and forgets keys', () => {
    const d = new DutyCycle(0.05, 30_000);
    d.ran('small', 0, 0);
    expect(d.size).toBe(0);
    d.ran('small', 0, 2);
    expect(d.wait('small', 2)).toBe(38);
    d.forget('small');
    expect(d.wait('small', 2)).toBe(0);
    expect(() => new DutyCycle(0, 1)).toThrow(/share/);
  });
});
