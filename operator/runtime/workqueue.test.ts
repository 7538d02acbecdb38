import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TerminalError, WorkQueue, runWorkers } from './workqueue.ts';

describe('WorkQueue', () => {
  it('de-duplicates keys that wait', async () => {
    const q = new WorkQueue<string>();
    q.add('a');
    q.add('a');
    q.add('b');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  it('never hands a key to two workers at once, and re-queues a key added while in flight', async () => {
    const q = new WorkQueue<string>();
    q.add('a');
    const k = await q.get();
    q.add('a'); // arrives while 'a' is processing
    expect(q.length).toBe(0);
    let second: string | undefined;
    const p = q.get().then((v) => (second = v));
    await Promise.resolve();
    expect(second).toBeUndefined();
    q.done(k!);
    await p;
    expect(second).toBe('a');
  });

  it('backs off exponentially per key and forgets on success', () => {
    const q = new WorkQueue<string>({ baseMs: 10, maxMs: 35 });
    expect(q.addRateLimited('a')).toBe(10);
    expect(q.addRateLimited('a')).toBe(20);
    expect(q.addRateLimited('a')).toBe(35);
    expect(q.addRateLimited('b')).toBe(10);
    q.forget('a');
    expect(q.addRateLimited('a')).toBe(10);
    q.shutDown();
  });

  it('addAfter keeps the earliest pending time', async () => {
    const q = new WorkQueue<string>();
    q.addAfter('a', 10_000);
    q.addAfter('a', 5);
    const k = await q.get();
    expect(k).toBe('a');
    q.shutDown();
  });

  it('property: with many workers no key is ever processed concurrently and every add is seen', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 60 }),
        async (adds) => {
          const q = new WorkQueue<number>();
          const active = new Set<number>();
          let overlap = false;
          const seen = new Map<number, number>();
          const workers = runWorkers(q, 4, async (k) => {
            if (active.has(k)) overlap = true;
            active.add(k);
            await new Promise((r) => setTimeout(r, Math.random() * 2));
            seen.set(k, (seen.get(k) ?? 0) + 1);
            active.delete(k);
            return undefined;
          });
          for (const a of adds) {
            q.add(a);
            if (Math.random() < 0.3) await new Promise((r) => setTimeout(r, 1));
          }
          const deadline = Date.now() + 5000;
          while ((q.length > 0 || q.inFlight > 0) && Date.now() < deadline)
            await new Promise((r) => setTimeout(r, 2));
          q.shutDown();
          await workers;
          expect(overlap).toBe(false);
          for (const a of new Set(adds)) expect(seen.get(a) ?? 0).toBeGreaterThanOrEqual(1);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('retries failures with backoff, but not terminal errors', async () => {
    const q = new WorkQueue<string>({ baseMs: 1, maxMs: 4 });
    const calls = new Map<string, number>();
    const outcomes: string[] = [];
    const done = runWorkers(
      q,
      2,
      (k) => {
        const n = (calls.get(k) ?? 0) + 1;
        calls.set(k, n);
        if (k === 'flaky' && n < 3) return Promise.reject(new Error('transient'));
        if (k === 'bad') return Promise.reject(new TerminalError('spec.x is invalid'));
        return Promise.resolve(undefined);
      },
      { onResult: (k, o) => outcomes.push(`${k}:${o}`) },
    );
    q.add('flaky');
    q.add('bad');
    const end = Date.now() + 2000;
    while ((calls.get('flaky') ?? 0) < 3 && Date.now() < end)
      await new Promise((r) => setTimeout(r, 2));
    await new Promise((r) => setTimeout(r, 20));
    q.shutDown();
    await done;
    expect(calls.get('flaky')).toBe(3);
    expect(calls.get('bad')).toBe(1);
    expect(outcomes).toContain('bad:terminal');
    expect(q.failuresOf('flaky')).toBe(0);
  });
});
