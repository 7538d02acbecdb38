import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BOOTENVS, StaticBackend, type NetworkConfig } from './backend.ts';
import { decode, encode } from './codec.ts';
import { hostilePackets } from './fuzz.ts';
import { handle } from './handler.ts';
import { Pool } from './pool.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('fuzz: 1,000,000 hostile packets, a third of them relayed', () => {
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
      // Reached through relays: one in full mode with its own pool, one in proxy mode.
      relayed: [
        {
          name: 'fuzz-relayed',
          subnet: '10.1.0.0/24',
          pool: { first: '10.1.0.100', last: '10.1.0.200' },
          dns: [],
          ntp: [],
          search: [],
          routes: [],
        },
        {
          name: 'fuzz-proxy',
          subnet: '10.2.0.0/24',
          mode: 'proxy',
          dns: [],
          ntp: [],
          search: [],
          routes: [],
        },
      ],
      reservations: [],
      bootEnvs: DEFAULT_BOOTENVS,
    });
    const pool = new Pool({ first: '10.0.0.100', last: '10.0.0.200' });
    const relayedPool = new Pool({ first: '10.1.0.100', last: '10.1.0.200' });
    const poolFor = (n: NetworkConfig) => (n.name === 'fuzz-relayed' ? relayedPool : undefined);
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
    let relayedReplies = 0;
    let heapAfterWarmup = 0;
    let i = 0;
    for (const p of hostilePackets(20261130, 1_000_000)) {
      const d = decode(p);
      if (d.ok) {
        ok++;
        const r = handle(d.packet, { backend, pool, poolFor, config, now: i });
        if (r.reply) {
          encode(r.reply.packet, r.reply.maxSize);
          replies++;
          if (d.packet.giaddr !== '0.0.0.0') relayedReplies++;
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
    expect(relayedReplies).toBeGreaterThan(0);
    // The pools' lease tables (101 addresses each) are the only state; 900,000 more packets add
    // nothing.
    expect(growth).toBeLessThan(8 * 1024 * 1024);
  }, 300_000);
});
