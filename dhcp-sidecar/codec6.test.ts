import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  Msg6,
  Opt6,
  Status6,
  addressList,
  decode6,
  duidLl,
  duidMac,
  duidUuid,
  encode6,
  eui64Mac,
  getOpt6,
  iaAddr,
  iaNa,
  inPrefix6,
  ip6ToBytes,
  ip6ToString,
  isRelay,
  lengthPrefixed,
  linkLayerMac,
  linkLocalOf,
  linkLayerOption,
  normalizeIp6,
  parseAddressList,
  parseClientArch,
  parseIaAddr,
  parseIaNa,
  parseLengthPrefixed,
  parseOro,
  parseStatusCode,
  parseVendorClass,
  statusCode,
  vendorClass,
  type Message6,
  type Relay6,
} from './codec6.ts';

const captured = JSON.parse(
  readFileSync(join(import.meta.dirname, 'testdata', 'captured6.json'), 'utf8'),
) as Record<string, string>;

function hex(name: string): Buffer {
  const s = captured[name];
  if (s === undefined) throw new Error(`no capture ${name}`);
  return Buffer.from(s, 'hex');
}

/** A string matching `re` (expect.stringMatching is typed any). */
const like = (re: RegExp): unknown => expect.stringMatching(re);

describe('IPv6 addresses', () => {
  it.each([
    ['fd00:6:9::21', 'fd00:6:9::21'],
    ['FD00:0006:0009:0000:0000:0000:0000:0021', 'fd00:6:9::21'],
    ['::', '::'],
    ['::1', '::1'],
    ['fe80::5054:ff:fe66:1%br0', 'fe80::5054:ff:fe66:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // RFC 5952 §4.2.2: one zero group stays
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longer run is shortened
    ['::ffff:192.0.2.1', '::ffff:c000:201'],
  ])('%s is %s', (text, want) => {
    expect(normalizeIp6(text)).toBe(want);
  });

  it.each(['', ':', '1:2:3', '1::2::3', 'fd00::g', '1:2:3:4:5:6:7:8:9', '10.0.0.1', '::1.2.3'])(
    'rejects %s',
    (text) => {
      expect(ip6ToBytes(text)).toBeUndefined();
    },
  );

  it('text and bytes round-trip for any 16 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (a) => {
        const b = Buffer.from(a);
        expect(ip6ToBytes(ip6ToString(b))?.equals(b)).toBe(true);
      }),
    );
  });

  it('prefix membership', () => {
    expect(inPrefix6('fd00:6:9::21', 'fd00:6:9::/64')).toBe(true);
    expect(inPrefix6('fd00:6:a::21', 'fd00:6:9::/64')).toBe(false);
    expect(inPrefix6('fd00:6:9::21', 'fd00:6::/36')).toBe(true);
    expect(inPrefix6('fd00:6:9::21', 'fd00:7::/36')).toBe(false);
    expect(inPrefix6('nonsense', 'fd00:6:9::/64')).toBe(false);
    expect(inPrefix6('fd00::1', 'fd00::/129')).toBe(false);
  });

  it('EUI-64 link-local addresses and MACs', () => {
    expect(linkLocalOf('52:54:00:66:00:01')).toBe('fe80::5054:ff:fe66:1');
    expect(eui64Mac('fe80::5054:ff:fe66:1')).toBe('52:54:00:66:00:01');
    expect(eui64Mac('fe80::5054:ff:fe66:1%br0')).toBe('52:54:00:66:00:01');
    expect(eui64Mac('fe80::1234:5678:9abc:def0')).toBeUndefined(); // privacy address
    expect(eui64Mac('fd00::5054:ff:fe66:1')).toBeUndefined(); // not link-local
  });
});

describe('decode6: captured packets from real clients and relays', () => {
  it('reads a SOLICIT from isc-dhcp-client (dhclient -6)', () => {
    const r = decode6(hex('dhclient-solicit'));
    expect(r.ok).toBe(true);
    if (!r.ok || isRelay(r.packet)) throw new Error('not a client message');
    const m = r.packet;
    expect(m.type).toBe(Msg6.SOLICIT);
    expect(m.xid).toBe(0x540f66);
    expect(duidMac(getOpt6(m.options, Opt6.CLIENTID))).toBe('52:54:00:66:00:01');
    expect(parseOro(getOpt6(m.options, Opt6.ORO))).toEqual([23, 24, 59]);
    const ia = parseIaNa(getOpt6(m.options, Opt6.IA_NA) ?? Buffer.alloc(0));
    expect(ia?.iaid).toBe(0x00660001);
    expect(ia?.t1).toBe(3600);
    expect(encode6(m).equals(hex('dhclient-solicit'))).toBe(true);
  });

  it('reads the address a REQUEST asks for', () => {
    const r = decode6(hex('dhclient-request'));
    if (!r.ok || isRelay(r.packet)) throw new Error('not a client message');
    expect(r.packet.type).toBe(Msg6.REQUEST);
    const ia = parseIaNa(getOpt6(r.packet.options, Opt6.IA_NA) ?? Buffer.alloc(0));
    const addr = parseIaAddr(getOpt6(ia?.options ?? [], Opt6.IAADDR) ?? Buffer.alloc(0));
    expect(addr?.address).toBe('fd00:6:9::21');
  });

  it('reads a Relay-Forward from dhcrelay -6 with its interface-id and the nested SOLICIT', () => {
    const b = hex('dhcrelay-relay-forw-solicit');
    const r = decode6(b);
    if (!r.ok || !isRelay(r.packet)) throw new Error('not a relay message');
    const rel = r.packet;
    expect(rel.type).toBe(Msg6.RELAY_FORW);
    expect(rel.hopCount).toBe(0);
    expect(rel.linkAddress).toBe('fd00:6:a::1');
    expect(rel.peerAddress).toBe('fe80::5054:ff:fe66:2');
    expect(getOpt6(rel.options, Opt6.INTERFACE_ID)?.length).toBeGreaterThan(0);
    expect(rel.inner.type).toBe(Msg6.SOLICIT);
    expect(encode6(rel).equals(b)).toBe(true);
  });

  it('reads our own Relay-Reply as the relay received it', () => {
    const r = decode6(hex('sidecar-relay-repl-advertise'));
    if (!r.ok || !isRelay(r.packet)) throw new Error('not a relay message');
    expect(r.packet.type).toBe(Msg6.RELAY_REPL);
    expect(r.packet.inner.type).toBe(Msg6.ADVERTISE);
  });
});

describe('decode6: malformed input is reported, never thrown', () => {
  const solicit = hex('dhclient-solicit');
  it.each([
    ['empty', Buffer.alloc(0), /too short/],
    ['three bytes', Buffer.from([1, 2, 3]), /too short/],
    ['option header cut', Buffer.concat([solicit, Buffer.from([0, 1])]), /header/],
    ['option length past the end', Buffer.concat([solicit, Buffer.from([0, 1, 0, 9, 1])]), /past/],
    ['relay too short', Buffer.from([12, 0, 0, 0, 0]), /relay message of/],
    [
      'relay without option 9',
      Buffer.concat([Buffer.from([12, 0]), Buffer.alloc(32)]),
      /without option 9/,
    ],
  ])('%s', (_name, b, why) => {
    const r = decode6(b);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(why);
  });

  it('a relay with two option 9s is refused', () => {
    const inner = hex('dhclient-solicit');
    const opt = Buffer.concat([Buffer.from([0, 9, 0, inner.length]), inner]);
    const b = Buffer.concat([Buffer.from([12, 0]), Buffer.alloc(32), opt, opt]);
    expect(decode6(b)).toMatchObject({
      ok: false,
      reason: like(/two option 9s/),
    });
  });

  it('nesting deeper than 32 relays is refused without recursion trouble', () => {
    let m: Message6 | Relay6 = { type: Msg6.SOLICIT, xid: 1, options: [] };
    for (let i = 0; i < 40; i++)
      m = {
        type: Msg6.RELAY_FORW,
        hopCount: i,
        linkAddress: '::',
        peerAddress: '::',
        options: [],
        inner: m,
      };
    const r = decode6(encode6(m));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/nesting deeper/);
  });

  it('any bytes decode or fail, never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (a) => {
        const r = decode6(Buffer.from(a));
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});

describe('encode6 and option helpers', () => {
  it('a nested Relay-Reply round-trips', () => {
    const p: Relay6 = {
      type: Msg6.RELAY_REPL,
      hopCount: 1,
      linkAddress: '::',
      peerAddress: 'fd00:6:9::253',
      options: [{ code: Opt6.INTERFACE_ID, data: Buffer.from('outer') }],
      inner: {
        type: Msg6.RELAY_REPL,
        hopCount: 0,
        linkAddress: 'fd00:6:a::1',
        peerAddress: 'fe80::5054:ff:fe66:2',
        options: [{ code: Opt6.INTERFACE_ID, data: Buffer.from('inner') }],
        inner: {
          type: Msg6.REPLY,
          xid: 0xabcdef,
          options: [{ code: Opt6.RAPID_COMMIT, data: Buffer.alloc(0) }],
        },
      },
    };
    const r = decode6(encode6(p));
    expect(r).toEqual({ ok: true, packet: p });
  });

  it('IA_NA with an IAADDR and a status code', () => {
    const d = iaNa({
      iaid: 7,
      t1: 100,
      t2: 160,
      options: [
        {
          code: Opt6.IAADDR,
          data: iaAddr({ address: 'fd00::5', preferred: 200, valid: 300, options: [] }),
        },
        { code: Opt6.STATUS_CODE, data: statusCode(Status6.Success, 'ok') },
      ],
    });
    const ia = parseIaNa(d);
    expect(ia).toMatchObject({ iaid: 7, t1: 100, t2: 160 });
    expect(parseIaAddr(getOpt6(ia?.options ?? [], Opt6.IAADDR) ?? Buffer.alloc(0))).toEqual({
      address: 'fd00::5',
      preferred: 200,
      valid: 300,
      options: [],
    });
    expect(
      parseStatusCode(getOpt6(ia?.options ?? [], Opt6.STATUS_CODE) ?? Buffer.alloc(0)),
    ).toEqual({ code: 0, message: 'ok' });
    expect(parseIaNa(Buffer.alloc(11))).toBeUndefined();
    expect(parseIaAddr(Buffer.alloc(23))).toBeUndefined();
  });

  it('DUIDs: the MAC of DUID-LL and DUID-LLT, none for DUID-EN/UUID', () => {
    expect(duidMac(duidLl('52:54:00:aa:bb:cc'))).toBe('52:54:00:aa:bb:cc');
    const llt = Buffer.from('0001000132a11a265254006600010000', 'hex').subarray(0, 14);
    expect(duidMac(llt)).toBe('52:54:00:66:00:01');
    expect(duidMac(duidUuid(Buffer.alloc(16, 1)))).toBeUndefined();
    expect(duidMac(Buffer.from('0002000001370102', 'hex'))).toBeUndefined();
    expect(duidMac(Buffer.from('0003000652540066', 'hex'))).toBeUndefined(); // not Ethernet
  });

  it('client link-layer address (79), vendor and user classes, arch, DNS', () => {
    expect(linkLayerMac(linkLayerOption('52:54:00:01:02:03'))).toBe('52:54:00:01:02:03');
    expect(linkLayerMac(Buffer.from([0, 6, 1, 2, 3, 4, 5, 6]))).toBeUndefined();
    expect(parseVendorClass(vendorClass(343, ['HTTPClient:Arch:00016']))).toEqual({
      enterprise: 343,
      data: ['HTTPClient:Arch:00016'],
    });
    expect(parseLengthPrefixed(lengthPrefixed(['iPXE', 'x']))).toEqual(['iPXE', 'x']);
    expect(parseLengthPrefixed(Buffer.from([0, 5, 65]))).toBeUndefined();
    expect(parseClientArch(Buffer.from([0, 16, 0, 7]))).toEqual([16, 7]);
    expect(parseClientArch(Buffer.from([0]))).toBeUndefined();
    expect(parseAddressList(addressList(['fd00::1', 'fd00::2']))).toEqual(['fd00::1', 'fd00::2']);
    expect(parseAddressList(Buffer.alloc(15))).toBeUndefined();
  });
});
