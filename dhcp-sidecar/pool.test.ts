import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Pool } from './pool.ts';

const dirs: string[] = [];
/**
 * Journals live on tmpfs when there is one: these tests check what the journal holds, not the
 * disk's durability, and every restart fsyncs (close and compaction). On a busy disk those fsyncs
 * took the property test (hundreds of restarts) past its time limit.
 */
const JOURNAL_DIR = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

function journal(): string {
  const d = mkdtempSync(join(JOURNAL_DIR, 'cbdhcp-pool-'));
  dirs.push(d);
  return join(d, 'leases.jsonl');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const mac = (i: number) => `52:54:00:00:00:${i.toString(16).padStart(2, '0')}`;

describe('Pool', () => {
  it('offers, binds, keeps affinity after release, and refuses a second MAC', () => {
    const p = new Pool({ first: '10.0.0.100', last: '10.0.0.101' });
    const a = p.offer(mac(1), undefined, 0);
    expect(a.ok && a.lease.address).toBe('10.0.0.100');
    const b = p.offer(mac(2), '10.0.0.100', 0);
    expect(b.ok && b.lease.address).toBe('10.0.0.101');
    expect(p.offer(mac(3), undefined, 0)).toEqual({
      ok: false,
      reason: 'discovery pool exhausted',
    });
    expect(p.bind(mac(1), '10.0.0.100', 1000, 1).ok).toBe(true);
    expect(p.bind(mac(2), '10.0.0.100', 1000, 1).ok).toBe(false);
    expect(p.release(mac(1), '10.0.0.100', 2)).toBe(true);
    // the released address is free for others but the MAC keeps its affinity
    const again = p.offer(mac(1), undefined, 3);
    expect(again.ok && again.lease.address).toBe('10.0.0.100');
  });

  it('an expired offer frees the address', () => {
    const p = new Pool({ first: '10.0.0.100', last: '10.0.0.100', offerHoldMs: 10 });
    expect(p.offer(mac(1), undefined, 0).ok).toBe(true);
    expect(p.offer(mac(2), undefined, 5).ok).toBe(false);
    const b = p.offer(mac(2), undefined, 11);
    expect(b.ok && b.lease.address).toBe('10.0.0.100');
  });

  it('DECLINE keeps the address out of use for the hold time', () => {
    const p = new Pool({ first: '10.0.0.100', last: '10.0.0.101', declineHoldMs: 100 });
    p.bind(mac(1), '10.0.0.100', 1000, 0);
    expect(p.decline(mac(1), '10.0.0.100', 1)).toBe(true);
    const o = p.offer(mac(1), '10.0.0.100', 2);
    expect(o.ok && o.lease.address).toBe('10.0.0.101');
    expect(p.bind(mac(2), '10.0.0.100', 1000, 50).ok).toBe(false);
    expect(p.bind(mac(2), '10.0.0.100', 1000, 200).ok).toBe(true);
  });

  it('skips excluded addresses (reservations, server, router)', () => {
    const p = new Pool({
      first: '10.0.0.1',
      last: '10.0.0.3',
      isExcluded: (a) => a !== '10.0.0.3',
    });
    const o = p.offer(mac(1), '10.0.0.1', 0);
    expect(o.ok && o.lease.address).toBe('10.0.0.3');
  });

  it('survives a restart from its journal and compacts it', () => {
    const j = journal();
    const p = new Pool({ first: '10.0.0.100', last: '10.0.0.200', journal: j });
    for (let i = 0; i < 50; i++) {
      const o = p.offer(mac(i), undefined, 0);
      if (!o.ok) throw new Error(o.reason);
      p.bind(mac(i), o.lease.address, 60_000, 0);
    }
    p.close();
    expect(readFileSync(j, 'utf8').trim().split('\n')).toHaveLength(100);
    const q = new Pool({ first: '10.0.0.100', last: '10.0.0.200', journal: j });
    expect(readFileSync(j, 'utf8').trim().split('\n')).toHaveLength(50);
    for (let i = 0; i < 50; i++) expect(q.leaseOf(mac(i))?.state).toBe('bound');
    const o = q.offer(mac(99), undefined, 1);
    expect(o.ok && q.holderOf(o.lease.address, 1)).toBe(mac(99));
    expect(o.ok && p.leaseOf(mac(0))?.address !== o.lease.address).toBe(true);
    q.close();
  });

  it('property: no address is ever live for two MACs, also across restarts', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('offer' as const), m: fc.nat(12), r: fc.nat(9) }),
      fc.record({ k: fc.constant('bind' as const), m: fc.nat(12), r: fc.nat(9) }),
      fc.record({ k: fc.constant('release' as const), m: fc.nat(12), r: fc.nat(9) }),
      fc.record({ k: fc.constant('decline' as const), m: fc.nat(12), r: fc.nat(9) }),
      fc.record({ k: fc.constant('restart' as const), m: fc.nat(0), r: fc.nat(0) }),
      fc.record({ k: fc.constant('tick' as const), m: fc.nat(0), r: fc.nat(2000) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const j = journal();
        const opts = { first: '10.0.0.0', last: '10.0.0.7', journal: j, offerHoldMs: 500 };
        let p = new Pool(opts);
        let now = 0;
        for (const o of ops) {
          const m = mac(o.m);
          const addr = `10.0.0.${o.r}`;
          if (o.k === 'offer') p.offer(m, addr, now);
          else if (o.k === 'bind') p.bind(m, addr, 1000, now);
          else if (o.k === 'release') p.release(m, addr, now);
          else if (o.k === 'decline') p.decline(m, addr, now);
          else if (o.k === 'tick') now += o.r;
          else {
            const live = (q: Pool) =>
              q
                .leases()
                .filter((l) => l.state !== 'released' && l.expires > now)
                .map((l) => `${l.mac}=${l.address}`)
                .sort();
            const before = live(p);
            p.close();
            p = new Pool(opts);
            expect(live(p)).toEqual(before);
          }
          const seen = new Map<string, string>();
          for (const l of p.leases()) {
            if (l.state === 'released' || l.expires <= now) continue;
            expect(seen.get(l.address)).toBeUndefined();
            seen.set(l.address, l.mac);
          }
        }
        p.close();
      }),
      { numRuns: 200 },
    );
  });
});
