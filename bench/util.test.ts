import { describe, expect, it } from 'vitest';
import { histogramQuantileMs } from './util.ts';

const scrape = (counts: [string, number][]): string =>
  counts.map(([le, n]) => `x_seconds_bucket{le="${le}"} ${String(n)}`).join('\n');

describe('histogramQuantileMs', () => {
  it('reads the quantile of what was observed between two scrapes, as a bucket bound', () => {
    const before = scrape([
      ['0.01', 5],
      ['0.1', 5],
      ['+Inf', 5],
    ]);
    // Since then: 90 observations <= 10 ms, 9 <= 100 ms, 1 above.
    const after = scrape([
      ['0.01', 95],
      ['0.1', 104],
      ['+Inf', 105],
    ]);
    expect(histogramQuantileMs(before, after, 'x_seconds', 0.5)).toBe(10);
    expect(histogramQuantileMs(before, after, 'x_seconds', 0.99)).toBe(100);
    expect(histogramQuantileMs(before, after, 'x_seconds', 1)).toBe(Infinity);
    expect(histogramQuantileMs(after, after, 'x_seconds', 0.5)).toBeUndefined();
  });
});
