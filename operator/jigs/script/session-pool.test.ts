import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SessionPool, poolTarget } from './session-pool.ts';
import type { SshSession } from './ssh.ts';

/** A session with no socket: `close` ends it as ssh2 does, by emitting 'close' on the client. */
function fakeSession(hostKey = 'SHA256:a'): SshSession & { closes: number } {
  const client = new EventEmitter();
  let isOpen = true;
  const s = {
    client: client as unknown as SshSession['client'],
    hostKey,
    newHostKey: undefined,
    closes: 0,
    close: () => {
      s.closes++;
      isOpen = false;
      client.emit('close');
    },
    destroy: () => {
      s.close();
    },
    open: () => isOpen,
  };
  return s;
}

const T = poolTarget('n1.example.com', '10.0.0.1', 22, Buffer.from('key'));

afterEach(() => {
  vi.useRealTimers();
});

describe('SessionPool', () => {
  it('hands a kept connection out once, newest first', () => {
    const pool = new SessionPool();
    const a = fakeSession();
    const b = fakeSession();
    pool.give(T, a);
    pool.give(T, b);
    expect(pool.take(T, undefined)).toBe(b);
    expect(pool.take(T, 'SHA256:a')).toBe(a);
    expect(pool.take(T, undefined)).toBeUndefined();
    expect(pool.reused).toBe(2);
  });

  it('targets differ by node, address, port and key', () => {
    const targets = [
      poolTarget('n2.example.com', '10.0.0.1', 22, Buffer.from('key')),
      poolTarget('n1.example.com', '10.0.0.2', 22, Buffer.from('key')),
      poolTarget('n1.example.com', '10.0.0.1', 2222, Buffer.from('key')),
      poolTarget('n1.example.com', '10.0.0.1', 22, Buffer.from('rotated key')),
    ];
    expect(new Set([T, ...targets]).size).toBe(5);
    const pool = new SessionPool();
    pool.give(T, fakeSession());
    for (const t of targets) expect(pool.take(t, undefined)).toBeUndefined();
  });

  it('closes a kept connection whose host key is no longer the one on the Node', () => {
    const pool = new SessionPool();
    const a = fakeSession('SHA256:old');
    pool.give(T, a);
    expect(pool.take(T, 'SHA256:new')).toBeUndefined();
    expect(a.closes).toBe(1);
    expect(pool.size).toBe(0);
  });

  it('forgets a connection its peer closed, and never keeps a closed one', () => {
    const pool = new SessionPool();
    const a = fakeSession();
    pool.give(T, a);
    a.client.emit('close');
    expect(pool.size).toBe(0);
    expect(pool.take(T, undefined)).toBeUndefined();
    const b = fakeSession();
    b.close();
    pool.give(T, b);
    expect(pool.size).toBe(0);
  });

  it('is bounded per target and in all, closing the oldest', () => {
    const pool = new SessionPool({ maxPerTarget: 2, maxIdle: 3 });
    const [a, b, c] = [fakeSession(), fakeSession(), fakeSession()];
    pool.give(T, a);
    pool.give(T, b);
    pool.give(T, c);
    expect(a.closes).toBe(1);
    expect(pool.size).toBe(2);
    const others = [1, 2, 3].map((i) => {
      const s = fakeSession();
      pool.give(poolTarget(`o${String(i)}`, '10.0.0.9', 22, Buffer.from('key')), s);
      return s;
    });
    expect(pool.size).toBe(3);
    expect([b.closes, c.closes, others[0]?.closes]).toEqual([1, 1, 0]);
  });

  it('closes what stayed idle past idleMs, and everything on close()', () => {
    vi.useFakeTimers();
    const pool = new SessionPool({ idleMs: 1000 });
    const a = fakeSession();
    pool.give(T, a);
    vi.advanceTimersByTime(999);
    expect(a.closes).toBe(0);
    vi.advanceTimersByTime(1);
    expect(a.closes).toBe(1);
    expect(pool.size).toBe(0);
    const b = fakeSession();
    pool.give(T, b);
    pool.close();
    expect(b.closes).toBe(1);
    expect(pool.size).toBe(0);
  });
});
