/**
 * The socket loop with its answer cache, on a real UDP socket on loopback: a repeated question is
 * answered from the cache with the asker's own ID and spelling, and a zone swap is seen at once.
 */
import { createSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeMessage, type Message } from './codec.ts';
import { ALLOCATIONS, NETWORKS, edns, zoneSet } from './fixtures.test-helper.ts';
import { DnsMetrics } from './metrics.ts';
import type { ZoneSet } from './resolver.ts';
import { DnsServer } from './server.ts';

let zones: ZoneSet = zoneSet();
const server = new DnsServer({
  listen: [{ host: '127.0.0.1', port: 0 }],
  log: pino({ level: 'silent' }),
  metrics: new DnsMetrics(false),
  zones: () => zones,
  transferAllowed: () => false,
});
const client = createSocket('udp4');

beforeAll(async () => {
  await server.start();
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
});
afterAll(async () => {
  client.close();
  await server.stop();
});

/** Sends one query and waits (bounded) for the reply with its ID. */
function ask(id: number, name: string, type: string, withEdns = false): Promise<Message> {
  const port = server.bound[0]?.port ?? 0;
  const buf = dnsPacket.encode({
    type: 'query',
    id,
    questions: [{ name, type: type as 'A' }],
    ...(withEdns ? { additionals: edns() } : {}),
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      reject(new Error(`no answer to ${name} ${type} in 2 s`));
    }, 2000);
    const onMessage = (m: Buffer): void => {
      if (m.readUInt16BE(0) !== id) return;
      clearTimeout(timer);
      client.off('message', onMessage);
      resolve(decodeMessage(m));
    };
    client.on('message', onMessage);
    client.send(buf, port, '127.0.0.1');
  });
}

describe('answer cache on the UDP loop', () => {
  it('answers a repeated question from the cache with the new ID, and keeps each spelling', async () => {
    const first = await ask(1, 'node1.lab.crowbar.dev', 'A');
    const hitsBefore = server.cacheStats().udp.hits;
    const again = await ask(2, 'node1.lab.crowbar.dev', 'A');
    expect(server.cacheStats().udp.hits).toBe(hitsBefore + 1);
    expect(again.id).toBe(2);
    expect(again.answers).toEqual(first.answers);
    // Another spelling (0x20) is another key, answered with its own spelling.
    const mixed = await ask(3, 'NODE1.lab.Crowbar.dev', 'A');
    expect(mixed.questions?.[0]?.name).toBe('NODE1.lab.Crowbar.dev');
    expect(mixed.answers?.[0]?.name).toBe('NODE1.lab.Crowbar.dev');
    const mixedAgain = await ask(4, 'NODE1.lab.Crowbar.dev', 'A');
    expect(mixedAgain.id).toBe(4);
    expect(mixedAgain.answers?.[0]?.name).toBe('NODE1.lab.Crowbar.dev');
    // With EDNS the question is another key too: the answer carries an OPT record.
    const withOpt = await ask(5, 'node1.lab.crowbar.dev', 'A', true);
    expect(withOpt.additionals?.some((a) => a.type === 'OPT')).toBe(true);
  });

  it('answers from the new zones as soon as they are swapped in', async () => {
    const before = await ask(10, 'node9.lab.crowbar.dev', 'A');
    expect(before.rcode).toBe('NXDOMAIN');
    expect((await ask(11, 'node9.lab.crowbar.dev', 'A')).rcode).toBe('NXDOMAIN');
    zones = zoneSet(NETWORKS, [
      ...ALLOCATIONS,
      {
        network: 'admin',
        node: 'node9.lab.crowbar.dev',
        address: '192.168.124.99',
        family: 'ipv4',
      },
    ]);
    const after = await ask(12, 'node9.lab.crowbar.dev', 'A');
    expect(after.rcode).toBe('NOERROR');
    expect(after.answers?.[0]).toMatchObject({ data: '192.168.124.99' });
  });
});

describe('answer cache metrics', () => {
  it('are counted from the cache when scraped', async () => {
    const metrics = new DnsMetrics(false);
    const s = new DnsServer({
      listen: [{ host: '127.0.0.1', port: 0 }],
      log: pino({ level: 'silent' }),
      metrics,
      zones: () => zones,
      transferAllowed: () => false,
    });
    await s.start();
    try {
      const port = s.bound[0]?.port ?? 0;
      for (const id of [1, 2, 3]) {
        const buf = dnsPacket.encode({
          type: 'query',
          id,
          questions: [{ name: 'node1.lab.crowbar.dev', type: 'A' }],
        });
        const done = new Promise<void>((r) =>
          client.once('message', () => {
            r();
          }),
        );
        client.send(buf, port, '127.0.0.1');
        await done;
      }
      const text = await metrics.registry.metrics();
      expect(text).toContain('crowbar_dns_answer_cache_hits_total{transport="udp"} 2');
      expect(text).toContain('crowbar_dns_answer_cache_misses_total{transport="udp"} 1');
      expect(text).toContain('crowbar_dns_answer_cache_entries{transport="udp"} 1');
    } finally {
      await s.stop();
    }
  });
});
