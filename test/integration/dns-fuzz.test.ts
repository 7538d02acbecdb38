/**
 * Fuzz (issue 11): 1,000,000 malformed messages (compression loops, counts past the end, giant
 * labels, broken OPT, truncations, bit flips, random bytes) through the sidecar's codec path, then
 * 200,000 over UDP (through the native UDP loop, the default) and 20,000 over TCP (with broken
 * framing too) to the running sidecar: it never crashes, its memory stays flat, and it keeps
 * answering good queries between the bad ones.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeMessage } from '../../dns-sidecar/codec.ts';
import { zoneSet } from '../../dns-sidecar/fixtures.test-helper.ts';
import { malformed, prng } from '../../dns-sidecar/fuzz.test-helper.ts';
import { handleMessage } from '../../dns-sidecar/handler.ts';
import { startDnsSidecar, type DnsSidecarProc } from '../../dns-sidecar/lab.ts';
import { uid } from '../harness/context.ts';
import { loopback } from '../harness/dns.ts';
import { tcpPipeline, udpExchange } from '../harness/dns-servers.ts';

const logDir = inject('cpDir');
const id = uid();
const host = loopback();
const PORT = 5353;
const tmp = mkdtempSync(join(tmpdir(), 'cbdns-fuzz-'));
let dns: DnsSidecarProc | undefined;

const good = (qid: number) =>
  dnsPacket.encode({
    type: 'query',
    id: qid,
    questions: [{ name: 'node1.lab.crowbar.dev', type: 'A' }],
  });

/**
 * A good query is answered. A flood may overflow the socket's receive buffer, where the kernel
 * drops datagrams (ours too) before the server sees them, so liveness allows a few tries.
 */
async function answersGood(qid: number): Promise<boolean> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const r = await udpExchange(host, PORT, good(qid), 500);
    if (!r) continue;
    const m = decodeMessage(r);
    return m.rcode === 'NOERROR' && m.answers?.[0]?.type === 'A';
  }
  return false;
}

async function rss(): Promise<number> {
  const text = (await dns!.http('/metrics')).body;
  const m = /^process_resident_memory_bytes (\d+)/m.exec(text);
  return Number(m?.[1]);
}

beforeAll(async () => {
  const src = join(tmp, 'zones.yaml');
  writeFileSync(
    src,
    `kind: Network
metadata: {name: admin}
spec: {category: admin, subnet: 192.168.124.0/24}
---
kind: NetworkAllocation
metadata: {name: admin.192-168-124-81}
spec: {network: admin, node: node1.lab.crowbar.dev, address: 192.168.124.81/24, family: ipv4, range: host}
`,
  );
  dns = await startDnsSidecar({
    domains: ['lab.crowbar.dev'],
    host,
    port: PORT,
    source: `file:${src}`,
    allowTransfer: ['127.0.0.0/8'],
    logFile: join(logDir, `dns-fuzz-${id}.log`),
    env: { LOG_LEVEL: 'warn' },
  });
});

afterAll(async () => {
  await dns?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('fuzz', () => {
  it('survives 1,000,000 malformed messages through the codec path', () => {
    const zones = zoneSet();
    const r = prng(11);
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 1_000_000; i++) {
      const { msg } = malformed(r);
      const h = handleMessage(msg, {
        zones,
        transport: i % 4 === 0 ? 'tcp' : 'udp',
        remote: '127.0.0.1',
        transferAllowed: () => i % 8 === 0,
      });
      const key = h.outcome === 'drop' ? `drop:${h.reason ?? ''}` : h.outcome;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    }
    const total = [...outcomes.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(1_000_000);
    expect(outcomes.get('drop:malformed') ?? 0).toBeGreaterThan(100_000);
  }, 300_000);

  it('keeps answering over UDP through 200,000 malformed datagrams, memory flat', async () => {
    const r = prng(12);
    const sock = createSocket('udp4');
    sock.on('message', () => undefined); // FORMERR and the like come back; nobody reads them
    let baseline = 0;
    try {
      // Batches of 100 stay below what the server's receive buffer holds, so the kernel drops
      // little; the good query after each batch is the barrier that bounds what is in flight.
      for (let batch = 0; batch < 2000; batch++) {
        await Promise.all(
          Array.from(
            { length: 100 },
            () =>
              new Promise<void>((resolve) => {
                sock.send(malformed(r).msg, PORT, host, () => {
                  resolve();
                });
              }),
          ),
        );
        expect(await answersGood(batch)).toBe(true);
        if (batch === 200) baseline = await rss();
      }
    } finally {
      sock.close();
    }
    const end = await rss();
    // The datagrams went through the native loop (native/udp.c), as they do by default.
    expect((await dns!.http('/metrics')).body).toContain(
      'crowbar_dns_udp_engine{engine="native"} 1',
    );
    console.log(
      `dns fuzz: sidecar RSS ${(baseline / 2 ** 20).toFixed(1)} MiB after 20,000 datagrams, ${(end / 2 ** 20).toFixed(1)} MiB after 200,000`,
    );
    expect(end - baseline).toBeLessThan(64 * 1024 * 1024);
    expect(dns!.proc.exitCode).toBe(null);
  }, 300_000);

  it('keeps answering over TCP through malformed messages and broken framing', async () => {
    const r = prng(13);
    for (let c = 0; c < 100; c++) {
      const msgs = Array.from({ length: 200 }, () => malformed(r).msg);
      msgs.push(good(0xbeef));
      // Pipelined garbage, then a good query: its answer arrives (bad ones are answered or dropped).
      const isGood = (b: Buffer) => b.length >= 2 && b.readUInt16BE(0) === 0xbeef;
      const replies = await tcpPipeline(host, PORT, msgs, 10_000, (rs) => rs.some(isGood));
      const last = replies.find(isGood);
      expect(last, `connection ${c}`).toBeDefined();
    }
    // Framing: a length past what is sent, a zero length, a single byte; then the peer leaves.
    for (const bytes of [
      Buffer.from([0xff, 0xff, 1, 2, 3]),
      Buffer.from([0, 0]),
      Buffer.from([7]),
    ]) {
      await new Promise<void>((resolve) => {
        const s = connect({ host, port: PORT }, () => {
          s.end(bytes);
        });
        s.on('close', () => {
          resolve();
        });
        s.on('error', () => {
          resolve();
        });
        s.resume();
      });
    }
    expect(await answersGood(7)).toBe(true);
    const metrics = (await dns!.http('/metrics')).body;
    expect(metrics).toMatch(
      /crowbar_dns_dropped_total\{transport="udp",reason="malformed"\} \d{4,}/,
    );
    expect(metrics).toMatch(/crowbar_dns_dropped_total\{transport="tcp",reason="malformed"\} \d+/);
    expect(dns!.proc.exitCode).toBe(null);
  }, 300_000);
});
