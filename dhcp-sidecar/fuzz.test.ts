import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BOOTENVS, StaticBackend } from './backend.ts';
import { decode, encode } from './codec.ts';
import { hostilePackets } from './fuzz.ts';
import { handle } from './handler.ts';
import { Pool } from './pool.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('fuzz: 1,000,000 hostile packets', () => {
  it('the codec and handlers never throw, and memory stays flat', () => {
    const backend = new StaticBackend({
      network: {
        name: 'fuzz',
        subnet: '10.0.0.0/24',
        pool: { first: '10.0.0.100', last: '10.0.0.200' },
        dns: ['10.0.0.2'],
        ntp: [],
        search: ['example.com'],
        routes: [],
      },
      reservations: [],
      bootEnvs: DEFAULT_BOOTENVS,
    });
    const pool = new Pool({ first: '10.0.0.100', last: '10.0.0.200' });
    const config = {
      serverIp: '10.0.0.1',
      httpBase: 'http://10.0.0.1:8080',
      discoveryBootEnv: 'sledgehammer',
      leaseSeconds: 3600,
      poolLeaseSeconds: 600,
      pxeLeaseSeconds: 60,
    };
    let ok = 0;
    let bad = 0;
    let replies = 0;
    let heapAfterWarmup = 0;
    let i = 0;
    for (const p of hostilePackets(20261130, 1_000_000)) {
      const d = decode(p);
      if (d.ok) {
        ok++;
        const r = handle(d.packet, { backend, pool, config, now: i });
        if (r.reply) {
          encode(r.reply.packet, r.reply.maxSize);
          replies++;
        }
      } else bad++;
      if (++i === 100_000) {
        gc();
        heapAfterWarmup = process.memoryUsage().heapUsed;
      }
    }
    gc();
    const growth = process.memoryUsage().heapUsed - heapAfterWarmup;
    expect(ok + bad).toBe(1_000_000);
    expect(bad).toBeGreaterThan(100_000);
    expect(replies).toBeGreaterThan(0);
    // The pool's lease table (101 addresses) is the only state; 900,000 more packets add nothing.
    expect(growth).toBeLessThan(8 * 1024 * 1024);
  }, 300_000);
});
