import dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { decodeMessage } from './codec.ts';
import { handleMessage } from './handler.ts';
import { ALLOCATIONS, NETWORKS, ask, edns, q, zoneSet } from './fixtures.test-helper.ts';

const zones = zoneSet();
const AA = 0x0400;
const TC = 0x0200;
const rcodeOf = (flags: number | undefined) => (flags ?? 0) & 0xf;
const ctx = { zones, transport: 'udp' as const, remote: '127.0.0.1', transferAllowed: () => false };

describe('answers', () => {
  it('answers A with AA, echoing the question case (0x20)', () => {
    const r = ask(zones, q('NoDe1.LAB.crowbar.DEV', 'A'))!;
    expect(r.msg.rcode).toBe('NOERROR');
    expect(r.msg.flag_aa).toBe(true);
    expect(r.msg.flag_qr).toBe(true);
    expect(r.msg.flag_ra).toBe(false);
    expect(r.msg.id).toBe(4242);
    expect(r.msg.questions?.[0]?.name).toBe('NoDe1.LAB.crowbar.DEV');
    expect(r.msg.answers).toMatchObject([
      { name: 'NoDe1.LAB.crowbar.DEV', type: 'A', ttl: 300, data: '192.168.124.81' },
    ]);
    expect(r.msg.authorities).toEqual([]);
  });

  it('answers AAAA and PTR for v4, v6 and RFC 2317 names', () => {
    expect(ask(zones, q('node1.lab.crowbar.dev', 'AAAA'))!.msg.answers?.[0]).toMatchObject({
      data: 'fd00:1:2:3::51',
    });
    expect(ask(zones, q('82.124.168.192.in-addr.arpa', 'PTR'))!.msg.answers?.[0]).toMatchObject({
      data: 'node2.rack1.lab.crowbar.dev',
    });
    const v6 = '1.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa';
    expect(ask(zones, q(v6, 'PTR'))!.msg.answers?.[0]).toMatchObject({
      data: 'node1.lab.crowbar.dev',
    });
    expect(ask(zones, q('70.64-26.8.9.10.in-addr.arpa', 'PTR'))!.msg.answers?.[0]).toMatchObject({
      data: 'node1.bmc.lab.crowbar.dev',
    });
  });

  it('answers NXDOMAIN with the SOA (TTL min(TTL, MINIMUM)) per RFC 2308', () => {
    const r = ask(zones, q('nope.lab.crowbar.dev', 'A'))!;
    expect(r.msg.rcode).toBe('NXDOMAIN');
    expect(r.msg.flag_aa).toBe(true);
    expect(r.msg.answers).toEqual([]);
    expect(r.msg.authorities).toMatchObject([
      { name: 'lab.crowbar.dev', type: 'SOA', ttl: 300, data: { mname: 'ns1.lab.crowbar.dev' } },
    ]);
  });

  it('answers NODATA for a missing type and for an empty non-terminal', () => {
    for (const [name, type] of [
      ['node2.rack1.lab.crowbar.dev', 'AAAA'],
      ['rack1.lab.crowbar.dev', 'A'],
      ['124.168.192.in-addr.arpa', 'PTR'],
    ] as const) {
      const r = ask(zones, q(name, type))!;
      expect(r.msg.rcode, name).toBe('NOERROR');
      expect(r.msg.flag_aa).toBe(true);
      expect(r.msg.answers).toEqual([]);
      expect(r.msg.authorities?.[0]).toMatchObject({ type: 'SOA' });
    }
  });

  it('answers SOA and NS at the apex, with in-zone NS addresses as additional data (as NSD)', () => {
    const soa = ask(zones, q('lab.crowbar.dev', 'SOA'))!;
    expect(soa.msg.answers?.[0]).toMatchObject({ type: 'SOA' });
    expect(soa.msg.answers?.[0]?.type === 'SOA' && soa.msg.answers[0].data.serial).toBeGreaterThan(
      0,
    );
    const ns = ask(zones, q('124.168.192.in-addr.arpa', 'NS'))!;
    expect(ns.msg.answers).toMatchObject([{ type: 'NS', data: 'ns1.lab.crowbar.dev' }]);
    expect(ns.msg.additionals).toEqual([]); // the NS target is in another zone
    const fwd = ask(zones, q('lab.crowbar.dev', 'NS'))!;
    expect(fwd.msg.additionals?.map((a) => a.type).sort()).toEqual(['A', 'AAAA']);
  });

  it('answers ANY with one RRset (RFC 8482)', () => {
    const r = ask(zones, q('node1.lab.crowbar.dev', 'ANY'))!;
    expect(r.msg.answers).toMatchObject([{ type: 'A' }]);
    const apex = ask(zones, q('lab.crowbar.dev', 'ANY'))!;
    expect(apex.msg.answers?.every((a) => a.type === 'NS')).toBe(true);
  });

  it('refuses names outside its zones and classes other than IN', () => {
    for (const p of [q('example.com', 'A'), q('crowbar.dev', 'SOA'), q('.', 'NS')]) {
      const r = ask(zones, p)!;
      expect(r.msg.rcode).toBe('REFUSED');
      expect(r.msg.flag_aa).toBe(false);
    }
    const ch = ask(zones, {
      questions: [{ name: 'node1.lab.crowbar.dev', type: 'A', class: 'CH' }],
    });
    expect(ch!.msg.rcode).toBe('REFUSED');
  });

  it('copies RD, not CD (as NSD), never sets RA', () => {
    const r = ask(zones, q('node1.lab.crowbar.dev', 'A', { flags: 0x0100 | 0x0010 }))!;
    expect(r.msg.flag_rd).toBe(true);
    expect(r.msg.flag_cd).toBe(false);
    expect(r.msg.flag_ra).toBe(false);
  });
});

describe('EDNS and truncation', () => {
  const many = ALLOCATIONS.concat(
    Array.from({ length: 60 }, (_, i) => ({
      network: 'admin',
      node: 'big.lab.crowbar.dev',
      address: `fd00:1:2:3::${(i + 256).toString(16)}`,
      family: 'ipv6' as const,
    })),
  );
  const big = zoneSet(NETWORKS, many);

  it('answers with an OPT of our payload size when asked with EDNS, DO copied', () => {
    const r = ask(zones, q('node1.lab.crowbar.dev', 'A', { additionals: edns(4096, 0x8000) }))!;
    const opt = r.msg.additionals?.find((a) => a.type === 'OPT');
    expect(opt).toMatchObject({ udpPayloadSize: 1232, ednsVersion: 0, flag_do: true });
    const plain = ask(zones, q('node1.lab.crowbar.dev', 'A'))!;
    expect(plain.msg.additionals).toEqual([]);
  });

  it('sets TC over UDP when the answer does not fit, and answers in full over TCP', () => {
    const udp = ask(big, q('big.lab.crowbar.dev', 'AAAA'))!;
    expect(udp.raw[0]!.length).toBeLessThanOrEqual(512);
    expect(udp.msg.flag_tc).toBe(true);
    expect(udp.msg.answers).toEqual([]);
    const e = ask(big, q('big.lab.crowbar.dev', 'AAAA', { additionals: edns(4096) }))!;
    expect(e.raw[0]!.length).toBeLessThanOrEqual(1232);
    expect(e.msg.flag_tc).toBe(true);
    const tcp = ask(big, q('big.lab.crowbar.dev', 'AAAA'), 'tcp')!;
    expect(tcp.msg.flag_tc).toBe(false);
    expect(tcp.msg.answers).toHaveLength(60);
  });

  it('answers an unknown EDNS version with BADVERS and version 0 (RFC 6891 §6.1.3)', () => {
    const add = edns();
    const r = ask(
      zones,
      q('node1.lab.crowbar.dev', 'A', { additionals: [{ ...add![0]!, ednsVersion: 1 } as never] }),
    )!;
    const opt = r.msg.additionals?.find((a) => a.type === 'OPT');
    expect(opt).toMatchObject({ extendedRcode: 1, ednsVersion: 0 });
    expect(r.msg.answers).toEqual([]);
  });
});

describe('protocol errors', () => {
  it('answers FORMERR to a query with no or two questions, or two OPTs', () => {
    expect(ask(zones, { questions: [] })!.msg.rcode).toBe('FORMERR');
    expect(
      ask(zones, {
        questions: [
          q('a.lab.crowbar.dev', 'A').questions![0]!,
          q('b.lab.crowbar.dev', 'A').questions![0]!,
        ],
      })!.msg.rcode,
    ).toBe('FORMERR');
    const two = [...edns()!, ...edns()!];
    expect(ask(zones, q('node1.lab.crowbar.dev', 'A', { additionals: two }))!.msg.rcode).toBe(
      'FORMERR',
    );
  });

  it('answers NOTIMP to opcodes other than QUERY, keeping the opcode', () => {
    const buf = dnsPacket.encode({
      type: 'query',
      id: 9,
      questions: [{ name: 'lab.crowbar.dev', type: 'SOA' }],
    });
    buf.writeUInt16BE((5 << 11) | 0x0100, 2); // UPDATE
    const h = handleMessage(buf, ctx);
    const r = decodeMessage(h.responses[0]!);
    expect(rcodeOf(r.flags)).toBe(4);
    expect(r.opcode).toBe('UPDATE');
    expect(r.flag_qr).toBe(true);
  });

  it('drops short, undecodable and response messages, and counts why', () => {
    expect(handleMessage(Buffer.alloc(5), ctx)).toMatchObject({ responses: [], reason: 'short' });
    const resp = dnsPacket.encode({
      type: 'response',
      id: 1,
      questions: [{ name: 'a', type: 'A' }],
    });
    expect(handleMessage(resp, ctx)).toMatchObject({ responses: [], reason: 'response' });
    // A compression pointer to itself, and a question count past the end of the message.
    const loop = Buffer.from('000100000001000000000000c00c00010001', 'hex');
    expect(handleMessage(loop, ctx)).toMatchObject({ responses: [], reason: 'malformed' });
    const past = Buffer.from('0001000000050000000000000161000001000100', 'hex');
    expect(handleMessage(past, ctx)).toMatchObject({ responses: [], reason: 'malformed' });
    const giant = Buffer.concat([
      Buffer.from('000100000001000000000000', 'hex'),
      Buffer.from([63]),
      Buffer.alloc(10, 97),
    ]);
    expect(handleMessage(giant, ctx)).toMatchObject({ responses: [], reason: 'malformed' });
  });

  it('answers meta types like OPT and MAILA as types without data (as NSD)', () => {
    const opt = ask(zones, { questions: [{ name: 'lab.crowbar.dev', type: 'OPT' }] })!;
    expect(opt.msg.rcode).toBe('NOERROR');
    const maila = ask(zones, {
      questions: [{ name: 'lab.crowbar.dev', type: 'UNKNOWN_254' as 'A' }],
    })!;
    expect(maila.msg.rcode).toBe('NOERROR');
    expect(maila.msg.authorities?.[0]?.type).toBe('SOA');
  });
});

describe('zone transfers', () => {
  const allowed = (r: string) => r === '127.0.0.1';

  it('refuses AXFR to addresses not allowed, and for names that are not an apex', () => {
    expect(ask(zones, q('lab.crowbar.dev', 'AXFR'), 'tcp', '127.0.0.2', allowed)!.msg.rcode).toBe(
      'REFUSED',
    );
    expect(
      ask(zones, q('node1.lab.crowbar.dev', 'AXFR'), 'tcp', '127.0.0.1', allowed)!.msg.rcode,
    ).toBe('REFUSED');
  });

  it('transfers the whole zone over TCP, SOA first and last', () => {
    const r = ask(zones, q('lab.crowbar.dev', 'AXFR'), 'tcp', '127.0.0.1', allowed)!;
    const rrs = r.all.flatMap((m) => m.answers ?? []);
    expect(rrs[0]?.type).toBe('SOA');
    expect(rrs.at(-1)?.type).toBe('SOA');
    expect(rrs.filter((a) => a.type === 'SOA')).toHaveLength(2);
    expect(rrs.some((a) => a.type === 'A' && a.name === 'node1.lab.crowbar.dev')).toBe(true);
    expect(rrs.filter((a) => a.type === 'NS')).toHaveLength(1);
  });

  it('answers AXFR over UDP with NOTIMP and IXFR over UDP with the SOA alone', () => {
    expect(ask(zones, q('lab.crowbar.dev', 'AXFR'), 'udp', '127.0.0.1', allowed)!.msg.rcode).toBe(
      'NOTIMP',
    );
    const ixfr = ask(zones, q('lab.crowbar.dev', 'IXFR'), 'udp', '127.0.0.1', allowed)!;
    expect(ixfr.msg.answers).toMatchObject([{ type: 'SOA' }]);
  });

  it('splits a large zone over several messages', () => {
    const allocs = Array.from({ length: 2000 }, (_, i) => ({
      network: 'storage',
      node: `n${i}.lab.crowbar.dev`,
      address: `172.16.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      family: 'ipv4' as const,
    }));
    const zs = zoneSet(NETWORKS, allocs);
    const r = ask(zs, q('lab.crowbar.dev', 'AXFR'), 'tcp', '127.0.0.1', allowed)!;
    expect(r.all.length).toBeGreaterThan(1);
    expect(r.raw.every((b) => b.length <= 65535)).toBe(true);
    expect(r.all.flatMap((m) => m.answers ?? []).filter((a) => a.type === 'A')).toHaveLength(2001);
  });
});

describe('flags helpers', () => {
  it('reads AA and TC from raw flags', () => {
    const r = ask(zones, q('node1.lab.crowbar.dev', 'A'))!;
    expect((r.msg.flags ?? 0) & AA).toBe(AA);
    expect((r.msg.flags ?? 0) & TC).toBe(0);
  });
});

describe('CNAME aliases (RFC 1034 §3.6.2, §4.3.2)', () => {
  const aliased = zoneSet(NETWORKS, ALLOCATIONS, 1000, [
    {
      name: 'node1.lab.crowbar.dev',
      aliases: [
        'www.lab.crowbar.dev',
        'db.rack9.lab.crowbar.dev',
        // Not served: another node's own name, the apex, a name outside the forward zones.
        'node2.rack1.lab.crowbar.dev',
        'lab.crowbar.dev',
        'www.example.com',
      ],
    },
    // The first node by name keeps an alias both claim.
    {
      name: 'node2.rack1.lab.crowbar.dev',
      aliases: ['www.lab.crowbar.dev', 'gone.lab.crowbar.dev'],
    },
    { name: 'ghost.lab.crowbar.dev', aliases: ['spook.lab.crowbar.dev'] },
  ]);
  const rr = (r: ReturnType<typeof ask>, section: 'answers' | 'authorities' = 'answers') =>
    (r?.msg[section] ?? []).map(
      (a) => `${a.name} ${a.type} ${JSON.stringify('data' in a ? a.data : null)}`,
    );

  it('answers a question for another type with the CNAME and the target records', () => {
    const r = ask(aliased, q('WWW.lab.crowbar.dev', 'A'));
    expect(r?.msg.rcode).toBe('NOERROR');
    expect(r?.msg.flag_aa).toBe(true);
    expect(rr(r)).toEqual([
      'WWW.lab.crowbar.dev CNAME "node1.lab.crowbar.dev"',
      'node1.lab.crowbar.dev A "192.168.124.81"',
    ]);
    expect(rr(ask(aliased, q('db.rack9.lab.crowbar.dev', 'AAAA')))).toEqual([
      'db.rack9.lab.crowbar.dev CNAME "node1.lab.crowbar.dev"',
      'node1.lab.crowbar.dev AAAA "fd00:1:2:3::51"',
    ]);
  });

  it('answers CNAME and ANY questions with the CNAME alone', () => {
    for (const type of ['CNAME', 'ANY']) {
      expect(rr(ask(aliased, q('www.lab.crowbar.dev', type)))).toEqual([
        'www.lab.crowbar.dev CNAME "node1.lab.crowbar.dev"',
      ]);
    }
  });

  it('gives NODATA and NXDOMAIN of the target with its SOA (RFC 2308, RFC 6604)', () => {
    const nodata = ask(aliased, q('www.lab.crowbar.dev', 'MX'));
    expect(nodata?.msg.rcode).toBe('NOERROR');
    expect(rr(nodata)).toEqual(['www.lab.crowbar.dev CNAME "node1.lab.crowbar.dev"']);
    expect(nodata?.msg.authorities?.map((a) => a.type)).toEqual(['SOA']);
    const dangling = ask(aliased, q('spook.lab.crowbar.dev', 'A'));
    expect(dangling?.msg.rcode).toBe('NXDOMAIN');
    expect(rr(dangling)).toEqual(['spook.lab.crowbar.dev CNAME "ghost.lab.crowbar.dev"']);
    expect(dangling?.msg.authorities?.map((a) => a.type)).toEqual(['SOA']);
  });

  it('keeps no other data at a CNAME owner and one owner per alias', () => {
    const zone = aliased.get('lab.crowbar.dev');
    expect([...(zone?.names.get('www.lab.crowbar.dev')?.keys() ?? [])]).toEqual([5]);
    expect(zone?.names.get('www.lab.crowbar.dev')?.get(5)?.[0]?.data).toBe('node1.lab.crowbar.dev');
    expect([...(zone?.names.get('node2.rack1.lab.crowbar.dev')?.keys() ?? [])]).toEqual([1]);
    expect([...(zone?.names.get('lab.crowbar.dev')?.keys() ?? [])].sort()).toEqual([2, 6]);
    expect(zone?.names.get('gone.lab.crowbar.dev')?.get(5)?.[0]?.data).toBe(
      'node2.rack1.lab.crowbar.dev',
    );
    // The alias's parent becomes an empty non-terminal.
    expect(ask(aliased, q('rack9.lab.crowbar.dev', 'A'))?.msg.rcode).toBe('NOERROR');
  });

  it('stops a CNAME loop after a bounded chain', () => {
    const loop = zoneSet(NETWORKS, ALLOCATIONS, 1000, [
      { name: 'a.lab.crowbar.dev', aliases: ['b.lab.crowbar.dev'] },
      { name: 'b.lab.crowbar.dev', aliases: ['a.lab.crowbar.dev'] },
    ]);
    const r = ask(loop, q('a.lab.crowbar.dev', 'A'));
    expect(r?.msg.rcode).toBe('NOERROR');
    expect(rr(r)).toEqual([
      'a.lab.crowbar.dev CNAME "b.lab.crowbar.dev"',
      'b.lab.crowbar.dev CNAME "a.lab.crowbar.dev"',
    ]);
  });
});
