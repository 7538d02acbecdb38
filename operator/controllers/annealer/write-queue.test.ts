import { describe, expect, it } from 'vitest';
import { ROUTINE, URGENT, WriteQueue } from './write-queue.ts';

/** A request the test finishes by hand, recording when it was sent. */
function gated(
  log: string[],
  label: string,
): { request: () => Promise<string>; finish: () => void } {
  let finish = (): void => undefined;
  const done = new Promise<void>((r) => (finish = r));
  return {
    request: async () => {
      log.push(label);
      await done;
      return label;
    },
    finish: () => {
      finish();
    },
  };
}

/** A request that is sent and done at once. */
const record = (log: string[], label: string) => (): Promise<string> => {
  log.push(label);
  return Promise.resolve(label);
};

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe('WriteQueue', () => {
  it('sends at most `concurrency` requests at once, urgent ones first', async () => {
    const q = new WriteQueue(1, () => undefined);
    const sent: string[] = [];
    const first = gated(sent, 'first');
    const p1 = q.send(first.request, { priority: ROUTINE });
    const p2 = q.send(record(sent, 'routine'), { priority: ROUTINE });
    const p3 = q.send(record(sent, 'urgent'), { priority: URGENT });
    await tick();
    expect(sent).toEqual(['first']);
    expect(q.size).toEqual({ waiting: 2, inFlight: 1 });
    first.finish();
    await Promise.all([p1, p2, p3]);
    expect(sent).toEqual(['first', 'urgent', 'routine']);
  });

  it('keeps the reserved slots for urgent requests', async () => {
    const q = new WriteQueue(3, () => undefined, 2);
    const sent: string[] = [];
    const r1 = gated(sent, 'r1');
    const u1 = gated(sent, 'u1');
    const p1 = q.send(r1.request, { priority: ROUTINE });
    const p2 = q.send(record(sent, 'r2'), { priority: ROUTINE });
    await tick();
    expect(sent).toEqual(['r1']); // one routine slot of three
    expect(q.size).toEqual({ waiting: 1, inFlight: 1 });
    const p3 = q.send(u1.request, { priority: URGENT });
    const p4 = q.send(record(sent, 'u2'), { priority: URGENT });
    await tick();
    expect(sent).toEqual(['r1', 'u1', 'u2']); // urgent ones go at once, past the waiting routine
    await p4;
    expect(sent).toEqual(['r1', 'u1', 'u2']); // and the routine one still waits for its slot
    r1.finish();
    u1.finish();
    await Promise.all([p1, p2, p3]);
    expect(sent).toEqual(['r1', 'u1', 'u2', 'r2']);
    expect(q.size).toEqual({ waiting: 0, inFlight: 0 });
  });

  it('drops a replaceable write that was not sent when a newer decision replaces it', async () => {
    const q = new WriteQueue(1, () => undefined);
    const sent: string[] = [];
    const blocker = gated(sent, 'blocker');
    const b = q.send(blocker.request, { priority: URGENT });
    const slot = q.replaceable('a.n1');
    const stale = q.send(record(sent, 'stale'), slot);
    q.replace('a.n1');
    await expect(stale).rejects.toThrow(/replaced by a newer decision for a\.n1/);
    blocker.finish();
    await b;
    expect(sent).toEqual(['blocker']);
    expect(slot.ticket?.aborted).toBe(true);
  });

  it('forgets a replaced write at once, and keeps sending the others in order', async () => {
    const q = new WriteQueue(1, () => undefined);
    const sent: string[] = [];
    const blocker = gated(sent, 'blocker');
    const b = q.send(blocker.request, { priority: URGENT });
    const writes = Array.from({ length: 2000 }, (_, i) => {
      const p = q.send(record(sent, `w${String(i)}`), q.replaceable(`k${String(i)}`));
      return p.catch(() => 'dropped');
    });
    for (let i = 0; i < 2000; i += 2) q.replace(`k${String(i)}`);
    expect(q.size).toEqual({ waiting: 1000, inFlight: 1 });
    blocker.finish();
    await b;
    const results = await Promise.all(writes);
    expect(results.filter((r) => r === 'dropped')).toHaveLength(1000);
    expect(sent).toEqual([
      'blocker',
      ...Array.from({ length: 1000 }, (_, i) => `w${String(2 * i + 1)}`),
    ]);
    expect(q.size).toEqual({ waiting: 0, inFlight: 0 });
  });

  it('passes on a request that throws instead of returning a promise', async () => {
    const q = new WriteQueue(1, () => undefined);
    await expect(
      q.send(
        () => {
          throw new Error('no promise');
        },
        { priority: ROUTINE },
      ),
    ).rejects.toThrow('no promise');
    expect(await q.send(() => Promise.resolve('next'), { priority: ROUTINE })).toBe('next');
  });

  it('never drops a write once it is sent, nor another key, nor a write that is not replaceable', async () => {
    const q = new WriteQueue(2, () => undefined);
    const sent: string[] = [];
    const inflight = gated(sent, 'a-sent');
    const slotA = q.replaceable('a.n1');
    const a = q.send(inflight.request, slotA);
    const b = q.send(record(sent, 'b'), q.replaceable('b.n1'));
    const keep = q.send(record(sent, 'keep'), { priority: ROUTINE });
    await tick();
    q.replace('a.n1'); // already sent: too late to drop
    inflight.finish();
    expect(await a).toBe('a-sent');
    expect(await b).toBe('b');
    expect(await keep).toBe('keep');
    expect(slotA.ticket?.aborted).toBe(false);
    expect(sent.sort()).toEqual(['a-sent', 'b', 'keep']);
  });

  it('runs the tasks of one key in order, and a failure does not stop the next', async () => {
    const errors: string[] = [];
    const q = new WriteQueue(4, (err, key) => {
      errors.push(`${key}: ${(err as Error).message}`);
    });
    const order: string[] = [];
    const slow = gated(order, 'a1');
    q.after('a', slow.request);
    q.after('a', () => Promise.reject(new Error('boom')));
    q.after('a', record(order, 'a3'));
    q.after('b', record(order, 'b1'));
    await tick();
    expect(order).toEqual(['a1', 'b1']); // b does not wait for a
    slow.finish();
    await new Promise((r) => setTimeout(r, 5));
    expect(order).toEqual(['a1', 'b1', 'a3']);
    expect(errors).toEqual(['a: boom']);
  });
});
