import { describe, expect, it } from 'vitest';
import { AnswerCache } from './answer-cache.ts';

const answer = (bytes: number, tag = 0) => ({ response: Buffer.alloc(bytes, tag) });

describe('answer cache', () => {
  it('returns what was stored under the exact key, and counts hits and misses', () => {
    const c = new AnswerCache(1 << 20);
    c.use('zones-1');
    const a = answer(40, 1);
    c.set('key-A', a);
    expect(c.get('key-A')).toBe(a);
    // A key differing in case only (0x20) is another question.
    expect(c.get('KEY-A')).toBeUndefined();
    expect(c.hits).toBe(1);
    expect(c.misses).toBe(1);
  });

  it('forgets everything when it is used for another zone set', () => {
    const c = new AnswerCache(1 << 20);
    const z1 = new Map();
    c.use(z1);
    c.set('k', answer(10));
    c.use(z1);
    expect(c.get('k')).toBeDefined();
    c.use(new Map());
    expect(c.get('k')).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('stays within its byte budget however many distinct questions arrive', () => {
    const budget = 64 * 1024;
    const c = new AnswerCache(budget);
    c.use(1);
    for (let i = 0; i < 10_000; i++) c.set(`q${i}`, answer(100));
    // Each entry costs at least its response's 100 bytes, so the budget caps the count.
    expect(c.size * 100).toBeLessThanOrEqual(budget);
    expect(c.size).toBeGreaterThan(0);
    // The most recent questions are still there.
    expect(c.get('q9999')).toBeDefined();
    expect(c.get('q0')).toBeUndefined();
  });

  it('keeps an entry that is asked for while one-off questions stream past', () => {
    const c = new AnswerCache(64 * 1024);
    c.use(1);
    const hot = answer(100, 7);
    c.set('hot', hot);
    for (let i = 0; i < 10_000; i++) {
      c.set(`scan${i}`, answer(100));
      if (i % 100 === 0) expect(c.get('hot')).toBe(hot);
    }
    expect(c.get('hot')).toBe(hot);
  });

  it('does not store an answer larger than a generation', () => {
    const c = new AnswerCache(1000);
    c.use(1);
    c.set('big', answer(600));
    expect(c.get('big')).toBeUndefined();
  });
});
