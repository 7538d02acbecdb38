/**
 * The DHCP sidecar's native port-67 loop (native/udp4.c, ADR 0023). Its C code under
 * AddressSanitizer and UBSan: the addon is built again with the sanitizers into a temp dir and
 * driven in a child node (sanitizer runtimes preloaded) by native/stress.test-helper.ts: 20,000
 * datagrams of 0 to 6,000 bytes from four clients, each answered by JS through the batched send;
 * every reply must be its question reversed (or the cut marker for those past the 4,096-byte
 * slot), and every datagram's IP_PKTINFO must name 127.0.0.1 and an interface. A flood while the
 * child's JS thread is blocked: the loop reads no more than its two batches in flight. Then
 * close() with datagrams still arriving, and the handle collected. And the fallback: without the
 * addon the server serves with dgram and says why.
 */
import { createSocket } from 'node:dgram';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { runSanitized } from '../test/harness/sanitized-addon.ts';
import { DEFAULT_BOOTENVS, StaticBackend } from './backend.ts';
import { MessageType, Op, Opt, decode, encode, getIp, getU8, optU8 } from './codec.ts';
import type { Logger } from './metrics.ts';
import { makeMetrics } from './metrics.ts';
import { DhcpServer } from './server.ts';

const MAC = Buffer.from([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

function server(log: Logger, engine: 'native' | 'dgram', nativePath?: string) {
  const metrics = makeMetrics();
  const s = new DhcpServer({
    config: {
      serverIp: '127.0.0.1',
      httpBase: 'http://127.0.0.1:8080',
      discoveryBootEnv: 'sledgehammer',
      leaseSeconds: 3600,
      poolLeaseSeconds: 600,
      pxeLeaseSeconds: 60,
    },
    backend: new StaticBackend({
      network: { name: 'n', subnet: '127.0.0.0/8', dns: [], ntp: [], search: [], routes: [] },
      reservations: [
        {
          node: 'n1.lab.crowbar.dev',
          mac: '52:54:00:12:34:56',
          address: '127.0.0.2',
          bootEnv: 'local',
          generation: 1,
        },
      ],
      bootEnvs: DEFAULT_BOOTENVS,
    }),
    pool: () => undefined,
    metrics,
    log,
    port: 0,
    pxePort: 0,
    engine,
    ...(nativePath ? { nativePath } : {}),
  });
  return { server: s, metrics };
}

describe('native DHCP UDP loop under the sanitizers', () => {
  it('answers 20,000 datagrams exactly with their packet info, reads no further than its batches in flight while JS is blocked, and closes cleanly', async () => {
    const { result: r, stderr } = await runSanitized(
      'dhcp-sidecar/native/udp4.c',
      'dhcp-sidecar/native/stress.test-helper.ts',
      ['20000'],
      240_000,
    );
    expect(stderr).not.toMatch(/AddressSanitizer|runtime error/);
    expect(r['sent']).toBe(20_000);
    expect(r['replies']).toBe(20_000);
    expect(r['bad']).toBe(0);
    expect(r['badInfo']).toBe(0);
    expect(r['truncated']).toBeGreaterThan(100);
    expect(r['flooded']).toBeGreaterThan(1000);
    // Two batches in flight of at most 64 datagrams: the rest waited in (or overflowed) the
    // kernel's buffer, the only queue.
    expect(r['readWhileBlocked']).toBeLessThanOrEqual(128);
    expect((r['stats'] as { sendErrors?: number } | undefined)?.sendErrors).toBe(0);
    expect(r['servedAfter']).toBe(true);
  }, 300_000);
});

describe.each(['native', 'dgram'] as const)('the %s engine', (engine) => {
  it('answers a renewal at the client address from the server address, and counts a datagram past 4,096 bytes as malformed', async () => {
    const { server: s, metrics } = server(pino({ level: 'warn' }), engine);
    // RFC 2131 §4.1: a RENEWING client (ciaddr set) gets its ACK unicast at ciaddr:68.
    const client = createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((r) => client.bind(68, '127.0.0.2', r));
    await s.start();
    try {
      expect(s.engine).toBe(engine);
      const req = encode({
        op: Op.BOOTREQUEST,
        htype: 1,
        hlen: 6,
        hops: 0,
        xid: 0x1234abcd,
        secs: 0,
        flags: 0,
        ciaddr: '127.0.0.2',
        yiaddr: '0.0.0.0',
        siaddr: '0.0.0.0',
        giaddr: '0.0.0.0',
        chaddr: Buffer.concat([MAC, Buffer.alloc(10)]),
        sname: '',
        file: '',
        options: new Map([[Opt.MESSAGE_TYPE, optU8(MessageType.REQUEST)]]),
      });
      const reply = new Promise<{ msg: Buffer; from: string }>((resolve) => {
        client.once('message', (msg, rinfo) => {
          resolve({ msg, from: rinfo.address });
        });
      });
      client.send(Buffer.alloc(5000, 7), s.port(), '127.0.0.1');
      client.send(req, s.port(), '127.0.0.1');
      const { msg, from } = await reply;
      expect(from).toBe('127.0.0.1');
      const d = decode(msg);
      if (!d.ok) throw new Error(d.reason);
      expect(d.packet.xid).toBe(0x1234abcd);
      expect(getU8(d.packet, Opt.MESSAGE_TYPE)).toBe(MessageType.ACK);
      expect(d.packet.yiaddr).toBe('127.0.0.2');
      expect(getIp(d.packet, Opt.SERVER_ID)).toBe('127.0.0.1');
      const text = await metrics.registry.metrics();
      // Sent first on the same path, so handled before the renewal was answered.
      expect(text).toMatch(/crowbar_dhcp_malformed_total 1\b/);
      expect(text).toContain(`crowbar_dhcp_udp_engine{engine="${engine}"} 1`);
      expect(text).toContain('crowbar_dhcp_outcomes_total{type="REQUEST",outcome="acked"} 1');
    } finally {
      await s.stop();
      client.close();
    }
  });
});

describe('native DHCP UDP loop fallback', () => {
  it('serves with dgram, and says why, when the addon does not load', async () => {
    const lines: string[] = [];
    const log = pino(
      { level: 'warn' },
      {
        write: (l: string) => {
          lines.push(l);
        },
      },
    );
    const { server: s, metrics } = server(log, 'native', '/nonexistent/crowbar_dhcp_udp.node');
    await s.start();
    try {
      expect(s.engine).toBe('dgram');
      expect(lines.join('')).toContain('native DHCP UDP addon not loaded; serving with dgram');
      expect(lines.join('')).toContain('/nonexistent/crowbar_dhcp_udp.node');
      expect(await metrics.registry.metrics()).toContain(
        'crowbar_dhcp_udp_engine{engine="dgram"} 1',
      );
    } finally {
      await s.stop();
    }
  });
});
