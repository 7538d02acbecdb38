/**
 * The socket loop with its answer cache, on a real UDP socket on loopback, for both UDP engines:
 * Node's dgram and the native loop (native/udp.c, which answers repeated questions in C): a
 * repeated question is answered from the cache with the asker's own ID and spelling, a zone swap
 * is seen at once, the metrics count both paths, and malformed datagrams of every size pass
 * through the native loop without stopping it.
 */
import { createSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeMessage, type Message } from './codec.ts';
import { ALLOCATIONS, NETWORKS, edns, zoneSet } from './fixtures.test-helper.ts';
import { malformed, prng } from './fuzz.test-helper.ts';
import { DnsMetrics } from './metrics.ts';
import type { ZoneSet } from './resolver.ts';
import { DnsServer } from './server.ts';

const client = createSocket('udp4');
beforeAll(async () => {
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
});
afterAll(() => {
  client.close();
});

/** Sends one message and waits (bounded) for the reply with this ID. */
function exchange(port: number, buf: Buffer, id: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      reject(new Error(`no answer to query ${id} in 2 s`));
    }, 2000);
    const onMessage = (m: Buffer): void => {
      if (m.length < 2 || m.readUInt16BE(0) !== id) return;
      clearTimeout(timer);
      client.off('message', onMessage);
      resolve(m);
    };
    client.on('message', onMessage);
    client.send(buf, port, '127.0.0.1');
  });
}

function query(id: number, name: string, type: string, withEdns = false): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    questions: [{ name, type: type as 'A' }],
    ...(withEdns ? { additionals: edns() } : {}),
  });
}

describe.each(['dgram', 'native'] as const)('UDP loop (%s)', (engine) => {
  let zones: ZoneSet = zoneSet();
  const metrics = new DnsMetrics(false);
  const server = new DnsServer({
    listen: [{ host: '127.0.0.1', port: 0 }],
    log: pino({ level: 'silent' }),
    metrics,
    zones: () => zones,
    transferAllowed: () => false,
    udpEngine: engine,
    udpThreads: 2,
  });
  const port = (): number => server.bound[0]?.port ?? 0;
  const ask = async (id: number, name: string, type: string, withEdns = false) =>
    decodeMessage(await exchange(port(), query(id, name, type, withEdns), id));

  beforeAll(async () => {
    await server.start();
  });
  afterAll(async () => {
    await server.stop();
  });

  it('serves UDP with the engine asked for (the native addon is built by make native)', () => {
    expect(server.udpEngine).toBe(engine);
  });

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
    const withOptAgain = await ask(6, 'node1.lab.crowbar.dev', 'A', true);
    expect(withOptAgain.additionals?.some((a) => a.type === 'OPT')).toBe(true);
    expect(withOptAgain.answers).toEqual(withOpt.answers);
  });

  it('answers from the new zones as soon as they are swapped in', async () => {
    const before = await ask(10, 'node9.lab.crowbar.dev', 'A');
    expect(before.rcode).toBe('NXDOMAIN');
    const hits = server.cacheStats().udp.hits;
    expect((await ask(11, 'node9.lab.crowbar.dev', 'A')).rcode).toBe('NXDOMAIN');
    expect(server.cacheStats().udp.hits).toBe(hits + 1);
    zones = zoneSet(NETWORKS, [
      ...ALLOCATIONS,
      {
        network: 'admin',
        node: 'node9.lab.crowbar.dev',
        address: '192.168.124.99',
        family: 'ipv4',
      },
    ]);
    // What the sidecar does on every swap (the native loop answers hits without asking JS).
    server.zonesChanged();
    const after = await ask(12, 'node9.lab.crowbar.dev', 'A');
    expect(after.rcode).toBe('NOERROR');
    expect(after.answers?.[0]).toMatchObject({ data: '192.168.124.99' });
  });

  it('counts queries, durations and cache use of both paths when scraped', async () => {
    const name = 'node2.lab.crowbar.dev';
    for (const id of [21, 22, 23]) await ask(id, name, 'AAAA');
    const text = await metrics.registry.metrics();
    const num = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
    const stats = server.cacheStats().udp;
    expect(num(/crowbar_dns_answer_cache_hits_total\{transport="udp"\} (\d+)/)).toBe(stats.hits);
    expect(num(/crowbar_dns_answer_cache_misses_total\{transport="udp"\} (\d+)/)).toBe(
      stats.misses,
    );
    expect(stats.entries).toBeGreaterThan(0);
    // Every answered query is in the query counts and in the duration histogram, hit or miss.
    const queries = [...text.matchAll(/crowbar_dns_queries_total\{transport="udp"[^}]*\} (\d+)/g)]
      .map((m) => Number(m[1]))
      .reduce((a, b) => a + b, 0);
    const count = num(/crowbar_dns_query_duration_seconds_count\{transport="udp"\} (\d+)/);
    expect(queries).toBe(count);
    expect(count).toBe(stats.hits + stats.misses);
    expect(text).toContain(`crowbar_dns_udp_engine{engine="${engine}"} 1`);
  });

  it('keeps answering through malformed datagrams of every size, repeated ones too', async () => {
    const r = prng(21);
    const sizes = [0, 1, 2, 11, 12, 13, 512, 4096, 65_507];
    const garbage = [
      ...sizes.map((n) => Buffer.alloc(n, 0xc0)),
      ...Array.from({ length: 2000 }, () => malformed(r).msg),
    ];
    // Twice: the second time, what was answered (FORMERR and the like) comes from the cache.
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < garbage.length; i += 100) {
        await Promise.all(
          garbage.slice(i, i + 100).map(
            (g) =>
              new Promise<void>((resolve) => {
                client.send(g, port(), '127.0.0.1', () => {
                  resolve();
                });
              }),
          ),
        );
        // A good query after each burst is the barrier that bounds what is in flight.
        const id = 0x7000 + pass * 100 + i / 100;
        const ok = await ask(id, 'node1.lab.crowbar.dev', 'A');
        expect(ok.rcode).toBe('NOERROR');
      }
    }
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/crowbar_dns_dropped_total\{transport="udp",reason="malformed"\} \d{3,}/);
  }, 60_000);
});

describe('native UDP loop fallback', () => {
  it('serves UDP with dgram, and says why, when the addon does not load', async () => {
    const lines: string[] = [];
    const log = pino(
      { level: 'warn' },
      {
        write: (l: string) => {
          lines.push(l);
        },
      },
    );
    const server = new DnsServer({
      listen: [{ host: '127.0.0.1', port: 0 }],
      log,
      metrics: new DnsMetrics(false),
      zones: () => zoneSet(),
      transferAllowed: () => false,
      udpEngine: 'native',
      nativeAddon: '/nonexistent/crowbar_udp.node',
    });
    expect(server.udpEngine).toBe('dgram');
    expect(lines.join('')).toContain('native UDP addon not loaded; serving UDP with dgram');
    expect(lines.join('')).toContain('/nonexistent/crowbar_udp.node');
    await server.start();
    try {
      const port = server.bound[0]?.port ?? 0;
      const m: Message = decodeMessage(
        await exchange(port, query(31, 'node1.lab.crowbar.dev', 'A'), 31),
      );
      expect(m.rcode).toBe('NOERROR');
    } finally {
      await server.stop();
    }
  });
});
