import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MessageType,
  Op,
  Opt,
  decode,
  encode,
  getClientArch,
  getEncapsulated,
  getIpxeBusId,
  getString,
  getU8,
  getUserClasses,
  intToIp,
  ipToInt,
  macOf,
  optClasslessRoutes,
  optDomainSearch,
  optEncapsulated,
  optIps,
  type DhcpPacket,
} from './codec.ts';

const captured = JSON.parse(
  readFileSync(join(import.meta.dirname, 'testdata', 'captured.json'), 'utf8'),
) as Record<string, string>;

function packet(over: Partial<DhcpPacket> = {}): DhcpPacket {
  return {
    op: Op.BOOTREQUEST,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x12345678,
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: Buffer.concat([Buffer.from([0x52, 0x54, 0, 0x12, 0x34, 0x56]), Buffer.alloc(10)]),
    sname: '',
    file: '',
    options: new Map([[Opt.MESSAGE_TYPE, Buffer.from([MessageType.DISCOVER])]]),
    ...over,
  };
}

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

describe('decode: captured packets from real clients', () => {
  it('reads a DISCOVER from isc-dhcp-client (dhclient)', () => {
    const r = decode(hex(captured['dhclient-discover']!));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.packet.op).toBe(Op.BOOTREQUEST);
    expect(macOf(r.packet)).toBe('52:54:00:aa:bb:01');
    expect(getU8(r.packet, Opt.MESSAGE_TYPE)).toBe(MessageType.DISCOVER);
    expect(r.packet.options.get(Opt.PARAM_LIST)?.includes(Opt.SUBNET_MASK)).toBe(true);
  });

  it('reads a DISCOVER from busybox udhcpc with its hostname and vendor class', () => {
    const r = decode(hex(captured['udhcpc-discover']!));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(getU8(r.packet, Opt.MESSAGE_TYPE)).toBe(MessageType.DISCOVER);
    expect(getString(r.packet, Opt.HOSTNAME)).toBe('cap');
    expect(getString(r.packet, Opt.VENDOR_CLASS)).toBe('capvendor');
    expect(r.packet.options.get(Opt.CLIENT_ID)?.subarray(1).toString('hex')).toBe('525400aabb01');
  });

  it('round-trips captured packets byte for byte in their options', () => {
    for (const h of Object.values(captured)) {
      const r = decode(hex(h));
      if (!r.ok) throw new Error(r.reason);
      const again = decode(encode(r.packet));
      if (!again.ok) throw new Error(again.reason);
      expect(again.packet).toEqual(r.packet);
    }
  });
});

describe('decode: malformed input is refused with a reason', () => {
  const good = encode(packet());
  const cases: [string, Buffer, RegExp][] = [
    ['empty', Buffer.alloc(0), /too short/],
    ['truncated header', good.subarray(0, 239), /too short/],
    ['no cookie', Buffer.concat([good.subarray(0, 236), Buffer.alloc(4)]), /magic/],
    [
      'option length past the end',
      Buffer.concat([good.subarray(0, 240), Buffer.from([12, 200, 1, 2])]),
      /past the end/,
    ],
    [
      'option without length',
      Buffer.concat([good.subarray(0, 240), Buffer.from([12])]),
      /no length/,
    ],
    [
      'bad overload value',
      Buffer.concat([good.subarray(0, 240), Buffer.from([52, 1, 9, 255])]),
      /overload/,
    ],
    [
      'overload with a bad option inside file',
      (() => {
        const b = Buffer.concat([good.subarray(0, 240), Buffer.from([52, 1, 1, 255])]);
        b[108] = 12;
        b[109] = 250;
        return b;
      })(),
      /in file/,
    ],
  ];
  it.each(cases)('%s', (_name, bytes, reason) => {
    const r = decode(bytes);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it('hlen over 16 is refused', () => {
    const b = Buffer.from(good);
    b[2] = 17;
    expect(decode(b).ok).toBe(false);
  });
});

describe('options', () => {
  it('concatenates split instances of one option (RFC 3396)', () => {
    const long = Buffer.alloc(600, 7);
    const b = encode(packet({ options: new Map([[Opt.VENDOR_SPECIFIC, long]]) }), 1500);
    const r = decode(b);
    expect(r.ok && r.packet.options.get(Opt.VENDOR_SPECIFIC)).toEqual(long);
  });

  it('overloads file and sname when options exceed the client maximum (option 52)', () => {
    const opts = new Map<number, Buffer>([[Opt.MESSAGE_TYPE, Buffer.from([MessageType.OFFER])]]);
    for (let c = 128; c < 128 + 13; c++) opts.set(c, Buffer.alloc(30, c));
    const b = encode(packet({ options: opts }), 576);
    expect(b.length).toBeLessThanOrEqual(576);
    const r = decode(b);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.packet.options).toEqual(opts);
    expect(r.packet.file).toBe('');
  });

  it('ignores an option 52 inside an overloaded field (no loops)', () => {
    const b = Buffer.alloc(300);
    encode(packet()).copy(b);
    b.fill(0, 240);
    Buffer.from([53, 1, 1, 52, 1, 3, 255]).copy(b, 240);
    Buffer.from([52, 1, 3, 12, 2, 0x68, 0x69, 255]).copy(b, 108);
    Buffer.from([52, 1, 1, 255]).copy(b, 44);
    const r = decode(b);
    expect(r.ok && getString(r.packet, Opt.HOSTNAME)).toBe('hi');
  });

  it('reads option 93, 77 (RFC 3004 and iPXE bare form)', () => {
    const p = packet({
      options: new Map([
        [Opt.CLIENT_ARCH, Buffer.from([0, 7])],
        [Opt.USER_CLASS, Buffer.from('iPXE')],
      ]),
    });
    expect(getClientArch(p)).toBe(7);
    expect(getUserClasses(p)).toEqual(['iPXE']);
    p.options.set(Opt.USER_CLASS, Buffer.from([4, ...Buffer.from('iPXE'), 2, 0x61, 0x62]));
    expect(getUserClasses(p)).toEqual(['iPXE', 'ab']);
  });

  it("reads iPXE's bus ID (175.177) among its other encapsulated options, and nothing from a bad block", () => {
    // As iPXE's dhcp_create_request lays them out: 175 holds the features (e.g. 19 = HTTP,
    // 17 = PXE ext) as sub-options, then 177 = dhcp_netdev_desc {type 1 PCI, vendor, device}.
    const block = optEncapsulated([
      [19, Buffer.from([1])],
      [17, Buffer.from([1])],
      [0xb1, Buffer.from([1, 0x1a, 0xf4, 0x10, 0x00])],
    ]);
    const p = packet({ options: new Map([[Opt.IPXE_ENCAP, block]]) });
    expect(getIpxeBusId(p)).toEqual({ busType: 1, vendor: '1af4', device: '1000' });
    expect(getEncapsulated(p, Opt.IPXE_ENCAP, 17)).toEqual(Buffer.from([1]));
    // Padding is skipped; a sub-option whose length runs past the block is no answer.
    p.options.set(Opt.IPXE_ENCAP, Buffer.concat([Buffer.from([0, 0]), block]));
    expect(getIpxeBusId(p)?.vendor).toBe('1af4');
    p.options.set(Opt.IPXE_ENCAP, Buffer.from([0xb1, 9, 1, 0x80, 0x86]));
    expect(getIpxeBusId(p)).toBeUndefined();
    p.options.set(Opt.IPXE_ENCAP, Buffer.from([0xb1, 3, 1, 0x80, 0x86]));
    expect(getIpxeBusId(p)).toBeUndefined();
    p.options.delete(Opt.IPXE_ENCAP);
    expect(getIpxeBusId(p)).toBeUndefined();
  });

  it('never throws on arbitrary option 175 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        const p = packet({ options: new Map([[Opt.IPXE_ENCAP, Buffer.from(b)]]) });
        const id = getIpxeBusId(p);
        if (id) expect(id.vendor).toMatch(/^[0-9a-f]{4}$/);
      }),
    );
  });

  it.each([
    [['example.com'], '076578616d706c6503636f6d00'],
    [['a.b', 'c'], '01610162000163' + '00'],
  ])('domain search %j', (domains, want) => {
    expect(optDomainSearch(domains).toString('hex')).toBe(want);
  });

  it('classless static routes (RFC 3442 examples)', () => {
    expect(
      optClasslessRoutes([
        { destination: '0.0.0.0/0', router: '10.0.0.1' },
        { destination: '10.17.0.0/16', router: '10.0.0.2' },
      ]).toString('hex'),
    ).toBe('00' + '0a000001' + '100a11' + '0a000002');
  });

  it('addresses round-trip through integers', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => {
        expect(ipToInt(intToIp(n))).toBe(n);
      }),
    );
    expect(optIps(['1.2.3.4']).toString('hex')).toBe('01020304');
  });
});

describe('properties', () => {
  const ip = fc.integer({ min: 0, max: 0xffffffff }).map(intToIp);
  const opts = fc
    .dictionary(
      fc
        .integer({ min: 1, max: 254 })
        .filter((c) => c !== Opt.OVERLOAD)
        .map(String),
      fc.uint8Array({ minLength: 0, maxLength: 40 }),
      { maxKeys: 12 },
    )
    .map((d) => new Map(Object.entries(d).map(([k, v]) => [Number(k), Buffer.from(v)] as const)));
  const pkt = fc.record({
    op: fc.constantFrom(1, 2),
    htype: fc.constant(1),
    hlen: fc.constant(6),
    hops: fc.integer({ min: 0, max: 255 }),
    xid: fc.integer({ min: 0, max: 0xffffffff }),
    secs: fc.integer({ min: 0, max: 0xffff }),
    flags: fc.constantFrom(0, 0x8000),
    ciaddr: ip,
    yiaddr: ip,
    siaddr: ip,
    giaddr: ip,
    chaddr: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a)),
    sname: fc.constant(''),
    file: fc.constant(''),
    options: opts,
  });

  it('decode(encode(p)) == p, with overload when needed', () => {
    fc.assert(
      fc.property(pkt, (p) => {
        const r = decode(encode(p, 576));
        expect(r.ok).toBe(true);
        if (r.ok) expect(r.packet).toEqual(p);
      }),
      { numRuns: 500 },
    );
  });

  it('decode never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 700 }), (a) => {
        const b = Buffer.from(a);
        if (b.length >= 240) b.writeUInt32BE(0x63825363, 236);
        decode(b);
      }),
      { numRuns: 2000 },
    );
  });
});
