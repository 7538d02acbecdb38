import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BOOTENVS, StaticBackend } from './backend.ts';
import { decode6, encode6, isRelay } from './codec6.ts';
import { FUZZ6_SERVER_DUID, hostilePackets6 } from './fuzz6.ts';
import { handle6 } from './handler6.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('fuzz: 1,000,000 hostile DHCPv6 packets, half of them relayed', () => {
  it('the codec and handlers never throw, and memory stays flat', () => {
    const backend = new StaticBackend({
      network: {
        name: 'fuzz6',
        subnet: '10.0.0.0/24',
        v6prefix: 'fd00:f::/64',
        dns: [],
        dns6: ['fd00:f::1'],
        ntp: [],
        search: ['example.com'],
        routes: [],
      },
      relayed: [
        {
          name: 'fuzz6-relayed',
          subnet: '10.1.0.0/24',
          v6prefix: 'fd00:f:1::/64',
          dns: [],
          ntp: [],
          search: [],
          routes: [],
        },
      ],
      reservations: [0, 1, 2, 3].map((i) => ({
        node: `n${String(i)}.example.com`,
        mac: `52:54:00:66:00:0${String(i)}`,
        address6: `fd00:f::2${String(i)}`,
        addresses6: { 'fuzz6-relayed': `fd00:f:1::2${String(i)}` },
        bootEnv: i % 2 === 0 ? 'sledgehammer' : 'local',
        generation: 1,
      })),
      bootEnvs: DEFAULT_BOOTENVS,
    });
    const config = {
      serverDuid: FUZZ6_SERVER_DUID,
      serverIp6: 'fd00:f::1',
      httpBase6: 'http://[fd00:f::1]:8080',
      discoveryBootEnv: 'sledgehammer',
      leaseSeconds: 3600,
      rapidCommit: true,
    };
    let ok = 0;
    let bad = 0;
    let replies = 0;
    let relayedReplies = 0;
    let addressed = 0;
    let heapAfterWarmup = 0;
    let i = 0;
    for (const p of hostilePackets6(20261201, 1_000_000)) {
      const d = decode6(p);
      if (d.ok) {
        ok++;
        const r = handle6(d.packet, 'fe80::5054:ff:fe66:1%br0', { backend, config });
        if (r.reply) {
          encode6(r.reply.packet);
          replies++;
          if (isRelay(r.reply.packet)) relayedReplies++;
          if (r.address !== undefined) addressed++;
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
    expect(replies).toBeGreaterThan(10_000);
    expect(relayedReplies).toBeGreaterThan(1_000);
    expect(addressed).toBeGreaterThan(1_000);
    // The handlers keep no state: 900,000 more packets add nothing.
    expect(growth).toBeLessThan(8 * 1024 * 1024);
  }, 300_000);
});
