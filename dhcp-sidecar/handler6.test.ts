import { describe, expect, it } from 'vitest';
import { DEFAULT_BOOTENVS, StaticBackend, type NetworkConfig } from './backend.ts';
import {
  Msg6,
  Opt6,
  Status6,
  allOpt6,
  decode6,
  duidLl,
  duidUuid,
  encode6,
  getOpt6,
  iaAddr,
  iaNa,
  isRelay,
  lengthPrefixed,
  linkLayerOption,
  linkLocalOf,
  oro,
  parseAddressList,
  parseIaAddr,
  parseIaNa,
  parseStatusCode,
  parseVendorClass,
  u16,
  vendorClass,
  type Message6,
  type Option6,
  type Packet6,
  type Relay6,
} from './codec6.ts';
import { CLIENT_PORT, SERVER_PORT, handle6, type Server6Config } from './handler6.ts';

const MAC = '52:54:00:66:00:01';
const FAR_MAC = '52:54:00:66:00:02';
const SERVER_DUID = duidUuid(Buffer.alloc(16, 7));
const net = (over: Partial<NetworkConfig> = {}): NetworkConfig => ({
  name: 'prov',
  subnet: '10.250.9.0/24',
  dns: [],
  ntp: [],
  search: ['v6.example.com'],
  routes: [],
  v6prefix: 'fd00:6:9::/64',
  dns6: ['fd00:6:9::1'],
  ...over,
});

function backend(over: Partial<NetworkConfig> = {}, farMode?: 'off' | 'proxy') {
  return new StaticBackend({
    network: net(over),
    relayed: [
      net({
        name: 'far',
        subnet: '10.250.10.0/24',
        v6prefix: 'fd00:6:a::/64',
        search: ['far.example.com'],
        ...(farMode ? { mode: farMode } : {}),
      }),
    ],
    reservations: [
      {
        node: 'n1.v6.example.com',
        mac: MAC,
        address6: 'fd00:6:9:0::21',
        bootEnv: 'sledgehammer',
        generation: 1,
      },
      {
        node: 'n2.far.example.com',
        mac: FAR_MAC,
        addresses6: { far: 'fd00:6:a::22' },
        bootEnv: 'local',
        generation: 1,
      },
    ],
    bootEnvs: DEFAULT_BOOTENVS,
  });
}

const config: Server6Config = {
  serverDuid: SERVER_DUID,
  serverIp6: 'fd00:6:9::1',
  httpBase6: 'http://[fd00:6:9::1]:8080',
  discoveryBootEnv: 'sledgehammer',
  leaseSeconds: 3600,
  rapidCommit: true,
};

function msg(type: number, opts: Option6[], mac = MAC): Message6 {
  return {
    type,
    xid: 0x123456,
    options: [
      { code: Opt6.CLIENTID, data: duidLl(mac) },
      { code: Opt6.ELAPSED_TIME, data: u16(0) },
      ...opts,
    ],
  };
}

const IA = (addr?: string): Option6 => ({
  code: Opt6.IA_NA,
  data: iaNa({
    iaid: 9,
    t1: 0,
    t2: 0,
    options: addr
      ? [
          {
            code: Opt6.IAADDR,
            data: iaAddr({ address: addr, preferred: 0, valid: 0, options: [] }),
          },
        ]
      : [],
  }),
});
const SERVER: Option6 = { code: Opt6.SERVERID, data: SERVER_DUID };
const ORO_BOOT: Option6 = { code: Opt6.ORO, data: oro([23, 24, 59]) };

/** Runs a message through a wire round trip (encode, decode) and the handler. */
function run(p: Packet6, from = linkLocalOf(MAC), b = backend()) {
  const d = decode6(encode6(p));
  if (!d.ok) throw new Error(d.reason);
  const r = handle6(d.packet, `${from}%br0`, { backend: b, config });
  let reply: Message6 | undefined;
  if (r.reply) {
    const back = decode6(encode6(r.reply.packet));
    if (!back.ok) throw new Error(back.reason);
    let cur: Packet6 = back.packet;
    while (isRelay(cur)) cur = cur.inner;
    reply = cur;
  }
  return { r, reply };
}

function addrs(m: Message6 | undefined): { address: string; valid: number }[] {
  const out: { address: string; valid: number }[] = [];
  for (const d of allOpt6(m?.options ?? [], Opt6.IA_NA))
    for (const a of allOpt6(parseIaNa(d)?.options ?? [], Opt6.IAADDR)) {
      const x = parseIaAddr(a);
      if (x) out.push({ address: x.address, valid: x.valid });
    }
  return out;
}

function iaStatus(m: Message6 | undefined): number | undefined {
  const d = getOpt6(m?.options ?? [], Opt6.IA_NA);
  const s = getOpt6(parseIaNa(d ?? Buffer.alloc(0))?.options ?? [], Opt6.STATUS_CODE);
  return s ? parseStatusCode(s)?.code : undefined;
}

function topStatus(m: Message6 | undefined): number | undefined {
  const s = getOpt6(m?.options ?? [], Opt6.STATUS_CODE);
  return s ? parseStatusCode(s)?.code : undefined;
}

function bootUrl(m: Message6 | undefined): string | undefined {
  return getOpt6(m?.options ?? [], Opt6.BOOTFILE_URL)?.toString('latin1');
}

/** A string matching `re` (expect.stringMatching is typed any). */
const like = (re: RegExp): unknown => expect.stringMatching(re);

describe('SOLICIT, REQUEST: the reserved address and the boot options', () => {
  it('ADVERTISE carries the Node’s v6 allocation, DNS, search list and a first-stage URL', () => {
    const { r, reply } = run(msg(Msg6.SOLICIT, [IA(), ORO_BOOT]));
    expect(r).toMatchObject({ outcome: 'advertised', mac: MAC, address: 'fd00:6:9::21' });
    expect(r.reply).toMatchObject({ address: `${linkLocalOf(MAC)}%br0`, port: CLIENT_PORT });
    expect(reply?.type).toBe(Msg6.ADVERTISE);
    expect(reply?.xid).toBe(0x123456);
    expect(addrs(reply)).toEqual([{ address: 'fd00:6:9::21', valid: 3600 }]);
    const ia = parseIaNa(getOpt6(reply?.options ?? [], Opt6.IA_NA) ?? Buffer.alloc(0));
    expect(ia).toMatchObject({ iaid: 9, t1: 1800, t2: 2880 });
    expect(getOpt6(reply?.options ?? [], Opt6.SERVERID)?.equals(SERVER_DUID)).toBe(true);
    expect(getOpt6(reply?.options ?? [], Opt6.CLIENTID)?.equals(duidLl(MAC))).toBe(true);
    expect(
      parseAddressList(getOpt6(reply?.options ?? [], Opt6.DNS_SERVERS) ?? Buffer.alloc(0)),
    ).toEqual(['fd00:6:9::1']);
    expect(getOpt6(reply?.options ?? [], Opt6.DOMAIN_LIST)).toBeDefined();
    // No option 61 (firmware that omits it): the UEFI first stage over TFTP.
    expect(bootUrl(reply)).toBe('tftp://[fd00:6:9::1]/snponly.efi');
  });

  it('Rapid Commit: a REPLY straight away, with option 14', () => {
    const { r, reply } = run(
      msg(Msg6.SOLICIT, [IA(), { code: Opt6.RAPID_COMMIT, data: Buffer.alloc(0) }]),
    );
    expect(r.outcome).toBe('replied');
    expect(reply?.type).toBe(Msg6.REPLY);
    expect(getOpt6(reply?.options ?? [], Opt6.RAPID_COMMIT)).toBeDefined();
    expect(addrs(reply)).toEqual([{ address: 'fd00:6:9::21', valid: 3600 }]);
  });

  it('Rapid Commit off: ADVERTISE even when the client asks', () => {
    const d = decode6(
      encode6(msg(Msg6.SOLICIT, [IA(), { code: Opt6.RAPID_COMMIT, data: Buffer.alloc(0) }])),
    );
    if (!d.ok) throw new Error(d.reason);
    const r = handle6(d.packet, linkLocalOf(MAC), {
      backend: backend(),
      config: { ...config, rapidCommit: false },
    });
    expect(r.outcome).toBe('advertised');
  });

  it('REQUEST naming us gets a REPLY with the address; naming another server is ignored', () => {
    const ok = run(msg(Msg6.REQUEST, [SERVER, IA('fd00:6:9::21')]));
    expect(ok.r.outcome).toBe('replied');
    expect(addrs(ok.reply)).toEqual([{ address: 'fd00:6:9::21', valid: 3600 }]);
    const other = run(
      msg(Msg6.REQUEST, [{ code: Opt6.SERVERID, data: duidUuid(Buffer.alloc(16, 1)) }, IA()]),
    );
    expect(other.r).toMatchObject({
      outcome: 'ignored',
      reason: like(/another server/),
    });
    expect(other.r.reply).toBeUndefined();
    expect(run(msg(Msg6.REQUEST, [IA()])).r.outcome).toBe('dropped');
  });

  it('an unknown MAC gets NoAddrsAvail (no address, never a guess)', () => {
    const { r, reply } = run(
      msg(Msg6.SOLICIT, [IA()], '52:54:00:99:99:99'),
      linkLocalOf('52:54:00:99:99:99'),
    );
    expect(r.outcome).toBe('advertised');
    expect(addrs(reply)).toEqual([]);
    expect(iaStatus(reply)).toBe(Status6.NoAddrsAvail);
    expect(topStatus(reply)).toBe(Status6.NoAddrsAvail);
  });

  it('SOLICIT without a client identifier, or with a server identifier, is dropped', () => {
    expect(run({ type: Msg6.SOLICIT, xid: 1, options: [IA()] }).r.outcome).toBe('dropped');
    expect(run(msg(Msg6.SOLICIT, [SERVER, IA()])).r.outcome).toBe('dropped');
  });

  it('server messages sent to the server are dropped', () => {
    for (const t of [Msg6.ADVERTISE, Msg6.REPLY, Msg6.RECONFIGURE, 200])
      expect(run(msg(t, [])).r.outcome).toBe('dropped');
  });
});

describe('who the client is: MAC, never the DUID alone', () => {
  it('a DUID-UUID client (no link-layer part) is found by the EUI-64 of its link-local source', () => {
    const m: Message6 = {
      type: Msg6.SOLICIT,
      xid: 2,
      options: [{ code: Opt6.CLIENTID, data: duidUuid(Buffer.alloc(16, 3)) }, IA()],
    };
    const { r, reply } = run(m, linkLocalOf(MAC));
    expect(r.mac).toBe(MAC);
    expect(addrs(reply)[0]?.address).toBe('fd00:6:9::21');
  });

  it('the same machine with a new DUID (next boot stage) gets the same address', () => {
    const a = run(msg(Msg6.SOLICIT, [IA()]));
    const m: Message6 = {
      type: Msg6.SOLICIT,
      xid: 3,
      options: [{ code: Opt6.CLIENTID, data: Buffer.from('0002000001370102030405', 'hex') }, IA()],
    };
    const b = run(m, linkLocalOf(MAC));
    expect(addrs(b.reply)).toEqual(addrs(a.reply));
  });

  it('a privacy link-local source and a DUID without a MAC: unknown, no address', () => {
    const m: Message6 = {
      type: Msg6.SOLICIT,
      xid: 4,
      options: [{ code: Opt6.CLIENTID, data: duidUuid(Buffer.alloc(16, 3)) }, IA()],
    };
    const { r, reply } = run(m, 'fe80::1234:5678:9abc:def0');
    expect(r.mac).toBeUndefined();
    expect(addrs(reply)).toEqual([]);
  });
});

function relayed(
  inner: Packet6,
  linkAddress: string,
  peerAddress: string,
  opts: Option6[] = [],
  hop = 0,
): Relay6 {
  return { type: Msg6.RELAY_FORW, hopCount: hop, linkAddress, peerAddress, options: opts, inner };
}

describe('relays: Relay-Forward in, Relay-Reply out, nested, interface-id echoed', () => {
  it('the relay’s link-address picks the network; the reply goes back to the relay on 547', () => {
    const p = relayed(
      msg(Msg6.SOLICIT, [IA(), ORO_BOOT], FAR_MAC),
      'fd00:6:a::1',
      linkLocalOf(FAR_MAC),
      [{ code: Opt6.INTERFACE_ID, data: Buffer.from('lan0') }],
    );
    const d = decode6(encode6(p));
    if (!d.ok) throw new Error(d.reason);
    const r = handle6(d.packet, 'fd00:6:9::253', { backend: backend(), config });
    expect(r).toMatchObject({ outcome: 'advertised', relayed: true, address: 'fd00:6:a::22' });
    expect(r.reply).toMatchObject({ address: 'fd00:6:9::253', port: SERVER_PORT });
    const out = r.reply?.packet;
    if (!out || !isRelay(out)) throw new Error('not a relay reply');
    expect(out).toMatchObject({
      type: Msg6.RELAY_REPL,
      hopCount: 0,
      linkAddress: 'fd00:6:a::1',
      peerAddress: linkLocalOf(FAR_MAC),
    });
    expect(getOpt6(out.options, Opt6.INTERFACE_ID)?.toString()).toBe('lan0');
    // n2's boot environment is local: no boot file URL.
    expect(getOpt6((out.inner as Message6).options, Opt6.BOOTFILE_URL)).toBeUndefined();
  });

  it('two relays: two Relay-Reply levels, each with its own interface-id', () => {
    const inner = relayed(msg(Msg6.SOLICIT, [IA()], FAR_MAC), 'fd00:6:a::1', linkLocalOf(FAR_MAC), [
      { code: Opt6.INTERFACE_ID, data: Buffer.from('inner') },
    ]);
    const outer = relayed(
      inner,
      '::',
      'fd00:6:b::1',
      [{ code: Opt6.INTERFACE_ID, data: Buffer.from('outer') }],
      1,
    );
    const d = decode6(encode6(outer));
    if (!d.ok) throw new Error(d.reason);
    const r = handle6(d.packet, 'fd00:6:9::254', { backend: backend(), config });
    expect(r.address).toBe('fd00:6:a::22');
    const o = r.reply?.packet;
    if (!o || !isRelay(o) || !isRelay(o.inner)) throw new Error('not two levels');
    expect(getOpt6(o.options, Opt6.INTERFACE_ID)?.toString()).toBe('outer');
    expect(o.hopCount).toBe(1);
    expect(getOpt6(o.inner.options, Opt6.INTERFACE_ID)?.toString()).toBe('inner');
    expect(o.inner.inner.type).toBe(Msg6.ADVERTISE);
  });

  it('option 79 (RFC 6939) wins over the DUID: the DUID may be another stage’s', () => {
    // The DUID names MAC (n1), the relay saw FAR_MAC on the wire: the wire is right.
    const p = relayed(msg(Msg6.SOLICIT, [IA()], MAC), 'fd00:6:a::1', 'fe80::1', [
      { code: Opt6.CLIENT_LINKLAYER_ADDR, data: linkLayerOption(FAR_MAC) },
    ]);
    const { r } = run(p, 'fd00:6:9::253');
    expect(r.mac).toBe(FAR_MAC);
    expect(r.address).toBe('fd00:6:a::22');
  });

  it('a relay from a prefix no Network has, or a network that is off or proxy, is ignored', () => {
    const p = relayed(msg(Msg6.SOLICIT, [IA()], FAR_MAC), 'fd00:9::1', linkLocalOf(FAR_MAC));
    expect(run(p, 'fd00:6:9::253').r).toMatchObject({
      outcome: 'ignored',
      reason: like(/no network/),
    });
    const q = relayed(msg(Msg6.SOLICIT, [IA()], FAR_MAC), 'fd00:6:a::1', linkLocalOf(FAR_MAC));
    expect(run(q, 'fd00:6:9::253', backend({}, 'off')).r.outcome).toBe('ignored');
    expect(run(q, 'fd00:6:9::253', backend({}, 'proxy')).r.outcome).toBe('ignored');
  });

  it('a Relay-Reply sent to the server is dropped', () => {
    const p: Relay6 = { ...relayed(msg(Msg6.SOLICIT, []), '::', '::'), type: Msg6.RELAY_REPL };
    expect(run(p).r.outcome).toBe('dropped');
  });
});

describe('RENEW, REBIND, RELEASE, DECLINE, CONFIRM, INFORMATION-REQUEST', () => {
  it('RENEW extends the reservation and ends any other address (lifetime 0)', () => {
    const { r, reply } = run(msg(Msg6.RENEW, [SERVER, IA('fd00:6:9::99')]));
    expect(r.outcome).toBe('replied');
    expect(addrs(reply)).toEqual([
      { address: 'fd00:6:9::21', valid: 3600 },
      { address: 'fd00:6:9::99', valid: 0 },
    ]);
  });

  it('REBIND (no server id) is answered; an unknown client gets NoBinding', () => {
    expect(addrs(run(msg(Msg6.REBIND, [IA('fd00:6:9::21')])).reply)).toEqual([
      { address: 'fd00:6:9::21', valid: 3600 },
    ]);
    const u = run(
      msg(Msg6.REBIND, [IA('fd00:6:9::77')], '52:54:00:99:99:99'),
      linkLocalOf('52:54:00:99:99:99'),
    );
    expect(iaStatus(u.reply)).toBe(Status6.NoBinding);
  });

  it('RELEASE and DECLINE get Success; the reservation stays', () => {
    const rel = run(msg(Msg6.RELEASE, [SERVER, IA('fd00:6:9::21')]));
    expect(rel.r.outcome).toBe('released');
    expect(topStatus(rel.reply)).toBe(Status6.Success);
    const dec = run(msg(Msg6.DECLINE, [SERVER, IA('fd00:6:9::21')]));
    expect(dec.r).toMatchObject({
      outcome: 'declined',
      reason: like(/in use/),
    });
    expect(addrs(run(msg(Msg6.SOLICIT, [IA()])).reply)[0]?.address).toBe('fd00:6:9::21');
    expect(run(msg(Msg6.RELEASE, [IA()])).r.outcome).toBe('dropped');
  });

  it('CONFIRM: Success on link, NotOnLink elsewhere, silence without addresses', () => {
    expect(topStatus(run(msg(Msg6.CONFIRM, [IA('fd00:6:9::21')])).reply)).toBe(Status6.Success);
    expect(topStatus(run(msg(Msg6.CONFIRM, [IA('fd00:7::21')])).reply)).toBe(Status6.NotOnLink);
    const none = run(msg(Msg6.CONFIRM, [IA()]));
    expect(none.r.outcome).toBe('ignored');
    expect(none.r.reply).toBeUndefined();
  });

  it('INFORMATION-REQUEST: DNS and search list, no address; with an IA it is dropped', () => {
    const m: Message6 = {
      type: Msg6.INFORMATION_REQUEST,
      xid: 5,
      options: [{ code: Opt6.ORO, data: oro([23, 24]) }],
    };
    const { r, reply } = run(m);
    expect(r.outcome).toBe('informed');
    expect(reply?.type).toBe(Msg6.REPLY);
    expect(
      parseAddressList(getOpt6(reply?.options ?? [], Opt6.DNS_SERVERS) ?? Buffer.alloc(0)),
    ).toEqual(['fd00:6:9::1']);
    expect(addrs(reply)).toEqual([]);
    expect(run({ ...m, options: [IA()] }).r.outcome).toBe('dropped');
  });
});

describe('boot options by architecture, vendor class and user class', () => {
  it('UEFI HTTP boot (arch 16, HTTPClient): the first stage over HTTP, class echoed', () => {
    const { reply } = run(
      msg(Msg6.SOLICIT, [
        IA(),
        { code: Opt6.CLIENT_ARCH, data: u16(16) },
        { code: Opt6.VENDOR_CLASS, data: vendorClass(343, ['HTTPClient:Arch:00016:UNDI:003016']) },
      ]),
    );
    expect(bootUrl(reply)).toBe('http://[fd00:6:9::1]:8080/boot/snponly.efi');
    expect(
      parseVendorClass(getOpt6(reply?.options ?? [], Opt6.VENDOR_CLASS) ?? Buffer.alloc(0))?.data,
    ).toEqual(['HTTPClient']);
  });

  it('UEFI PXE (arch 7, PXEClient): TFTP URL', () => {
    const { reply } = run(
      msg(Msg6.SOLICIT, [
        IA(),
        { code: Opt6.CLIENT_ARCH, data: u16(7) },
        { code: Opt6.VENDOR_CLASS, data: vendorClass(343, ['PXEClient:Arch:00007:UNDI:003016']) },
      ]),
    );
    expect(bootUrl(reply)).toBe('tftp://[fd00:6:9::1]/snponly.efi');
  });

  it('iPXE (user class): the per-node script over HTTP', () => {
    const { reply } = run(
      msg(Msg6.SOLICIT, [
        IA(),
        ORO_BOOT,
        { code: Opt6.USER_CLASS, data: lengthPrefixed(['iPXE']) },
      ]),
    );
    expect(bootUrl(reply)).toBe(`http://[fd00:6:9::1]:8080/ipxe/${MAC}`);
  });

  it('a client that neither asks for option 59 nor says it boots gets none', () => {
    expect(bootUrl(run(msg(Msg6.SOLICIT, [IA()])).reply)).toBeUndefined();
  });
});
