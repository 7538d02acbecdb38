import { describe, expect, it } from 'vitest';
import { DEFAULT_BOOTENVS, StaticBackend, type Reservation } from './backend.ts';
import {
  BROADCAST_FLAG,
  MessageType,
  Op,
  Opt,
  decode,
  encode,
  getIp,
  getString,
  getU8,
  optIps,
  optU8,
  type DhcpPacket,
} from './codec.ts';
import { handle, type HandlerDeps, type ServerConfig } from './handler.ts';
import { Pool } from './pool.ts';

const SERVER = '10.20.0.1';
const cfg: ServerConfig = {
  serverIp: SERVER,
  httpBase: `http://${SERVER}:8080`,
  discoveryBootEnv: 'sledgehammer',
  leaseSeconds: 3600,
  poolLeaseSeconds: 600,
  pxeLeaseSeconds: 60,
};
const KNOWN = '52:54:00:00:00:01';
const UNKNOWN = '52:54:00:00:00:99';

function deps(over: { bootEnv?: string; now?: number; pool?: Pool } = {}): HandlerDeps {
  const reservations: Reservation[] = [
    {
      node: 'node1.rack1.example.com',
      mac: KNOWN,
      address: '10.20.0.50',
      bootEnv: over.bootEnv ?? 'ubuntu-24.04-install',
      generation: 3,
    },
  ];
  const backend = new StaticBackend({
    network: {
      name: 'admin',
      subnet: '10.20.0.0/24',
      router: '10.20.0.254',
      pool: { first: '10.20.0.100', last: '10.20.0.102' },
      dns: ['10.20.0.2'],
      ntp: ['10.20.0.3'],
      domain: 'example.com',
      search: ['example.com'],
      routes: [{ destination: '10.30.0.0/16', router: '10.20.0.254' }],
    },
    reservations,
    bootEnvs: {
      ...DEFAULT_BOOTENVS,
      'ubuntu-24.04-install': { kernel: 'ubuntu/linux', initrds: ['ubuntu/initrd'] },
    },
  });
  const pool =
    over.pool ??
    new Pool({
      first: '10.20.0.100',
      last: '10.20.0.102',
      isExcluded: (a) => backend.isReserved(a),
    });
  return { backend, pool, config: cfg, now: over.now ?? 1000 };
}

function req(
  type: number,
  mac: string,
  opts: [number, Buffer][] = [],
  over: Partial<DhcpPacket> = {},
): DhcpPacket {
  const chaddr = Buffer.alloc(16);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
  const p: DhcpPacket = {
    op: Op.BOOTREQUEST,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 42,
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr,
    sname: '',
    file: '',
    options: new Map([[Opt.MESSAGE_TYPE, optU8(type)], ...opts]),
    ...over,
  };
  // Every request goes through the wire format, as in production.
  const r = decode(encode(p));
  if (!r.ok) throw new Error(r.reason);
  return r.packet;
}

const PXE_BIOS: [number, Buffer][] = [
  [Opt.VENDOR_CLASS, Buffer.from('PXEClient:Arch:00000:UNDI:002001')],
  [Opt.CLIENT_ARCH, Buffer.from([0, 0])],
];
const PXE_UEFI: [number, Buffer][] = [
  [Opt.VENDOR_CLASS, Buffer.from('PXEClient:Arch:00007:UNDI:003016')],
  [Opt.CLIENT_ARCH, Buffer.from([0, 7])],
];
const HTTP_UEFI: [number, Buffer][] = [
  [Opt.VENDOR_CLASS, Buffer.from('HTTPClient:Arch:00016:UNDI:003001')],
  [Opt.CLIENT_ARCH, Buffer.from([0, 16])],
];
const IPXE: [number, Buffer][] = [
  ...PXE_BIOS,
  [Opt.USER_CLASS, Buffer.from('iPXE')],
  [Opt.IPXE_ENCAP, Buffer.from([19, 1, 1])],
];

describe('DISCOVER', () => {
  it('a known MAC is offered its reservation with the network options', () => {
    const r = handle(req(MessageType.DISCOVER, KNOWN), deps());
    expect(r.outcome).toBe('offered');
    const p = r.reply!.packet;
    expect(p.yiaddr).toBe('10.20.0.50');
    expect(p.siaddr).toBe(SERVER);
    expect(getIp(p, Opt.SERVER_ID)).toBe(SERVER);
    expect(getIp(p, Opt.SUBNET_MASK)).toBe('255.255.255.0');
    expect(getIp(p, Opt.ROUTER)).toBe('10.20.0.254');
    expect(getIp(p, Opt.DNS)).toBe('10.20.0.2');
    expect(getIp(p, Opt.BROADCAST)).toBe('10.20.0.255');
    expect(getString(p, Opt.HOSTNAME)).toBe('node1');
    expect(getString(p, Opt.DOMAIN_NAME)).toBe('rack1.example.com');
    expect(p.options.get(Opt.LEASE_TIME)?.readUInt32BE(0)).toBe(3600);
    expect(p.options.has(Opt.BOOTFILE)).toBe(false); // not a netboot client
    expect(r.reply).toMatchObject({ address: '255.255.255.255', port: 68 });
  });

  it('an unknown MAC gets a pool address and a short lease when it PXE-boots', () => {
    const r = handle(req(MessageType.DISCOVER, UNKNOWN, PXE_BIOS), deps());
    expect(r.outcome).toBe('offered');
    expect(r.reply!.packet.yiaddr).toBe('10.20.0.100');
    expect(r.reply!.packet.options.get(Opt.LEASE_TIME)?.readUInt32BE(0)).toBe(60);
    expect(r.bootEnv).toBe('sledgehammer');
  });

  it.each([
    ['BIOS PXE', PXE_BIOS, 'undionly.kpxe', 'PXEClient', true],
    ['UEFI PXE', PXE_UEFI, 'snponly.efi', 'PXEClient', true],
    ['UEFI HTTP boot', HTTP_UEFI, `${cfg.httpBase}/boot/snponly.efi`, 'HTTPClient', false],
    ['iPXE', IPXE, `${cfg.httpBase}/ipxe/${KNOWN}`, undefined, false],
  ] as const)('%s gets its first stage', (_n, opts, file, vc, tftp) => {
    const r = handle(req(MessageType.DISCOVER, KNOWN, [...opts]), deps());
    const p = r.reply!.packet;
    expect(getString(p, Opt.BOOTFILE)).toBe(file);
    expect(p.file).toBe(file);
    expect(getString(p, Opt.VENDOR_CLASS)).toBe(vc);
    expect(getString(p, Opt.TFTP_SERVER)).toBe(tftp ? SERVER : undefined);
    expect(p.sname).toBe(tftp ? SERVER : '');
  });

  it("iPXE's boot NIC (175.177) rides in the script URL when it is PCI, and only then", () => {
    const bus = (type: number) =>
      [Opt.IPXE_ENCAP, Buffer.from([19, 1, 1, 0xb1, 5, type, 0x1a, 0xf4, 0x10, 0x41])] as [
        number,
        Buffer,
      ];
    const pci = handle(req(MessageType.DISCOVER, KNOWN, [...PXE_BIOS, bus(1)]), deps());
    expect(getString(pci.reply!.packet, Opt.BOOTFILE)).toBe(
      `${cfg.httpBase}/ipxe/${KNOWN}?pci=1af4:1041`,
    );
    // Bus type 5 (EFI, as snponly.efi may say): its numbers are not PCI IDs.
    const efi = handle(req(MessageType.DISCOVER, KNOWN, [...PXE_BIOS, bus(5)]), deps());
    expect(getString(efi.reply!.packet, Opt.BOOTFILE)).toBe(`${cfg.httpBase}/ipxe/${KNOWN}`);
  });

  it('bootEnv local gives no boot options', () => {
    const r = handle(req(MessageType.DISCOVER, KNOWN, IPXE), deps({ bootEnv: 'local' }));
    expect(r.outcome).toBe('offered');
    expect(r.reply!.packet.options.has(Opt.BOOTFILE)).toBe(false);
    expect(r.reply!.packet.file).toBe('');
  });

  it('honours the broadcast flag and answers relays at giaddr:67 with option 82', () => {
    const b = handle(req(MessageType.DISCOVER, KNOWN, [], { flags: BROADCAST_FLAG }), deps());
    expect(b.reply!.packet.flags).toBe(BROADCAST_FLAG);
    const relayed = handle(
      req(MessageType.DISCOVER, KNOWN, [[Opt.RELAY_AGENT, Buffer.from([1, 2, 0, 1])]], {
        giaddr: '10.20.0.253',
        hops: 1,
      }),
      deps(),
    );
    expect(relayed.reply).toMatchObject({ address: '10.20.0.253', port: 67 });
    expect(relayed.reply!.packet.giaddr).toBe('10.20.0.253');
    expect(relayed.reply!.packet.options.get(Opt.RELAY_AGENT)).toEqual(Buffer.from([1, 2, 0, 1]));
  });

  it('stays silent when the pool is exhausted', () => {
    const d = deps();
    for (let i = 0; i < 3; i++)
      expect(handle(req(MessageType.DISCOVER, `52:54:00:00:01:0${i}`), d).outcome).toBe('offered');
    const r = handle(req(MessageType.DISCOVER, UNKNOWN), d);
    expect(r).toMatchObject({ outcome: 'dropped', reason: 'discovery pool exhausted' });
    expect(r.reply).toBeUndefined();
  });
});

describe('REQUEST', () => {
  const sid: [number, Buffer] = [Opt.SERVER_ID, optIps([SERVER])];
  const want = (a: string): [number, Buffer] => [Opt.REQUESTED_IP, optIps([a])];

  it('SELECTING: ACKs the offered address', () => {
    const d = deps();
    handle(req(MessageType.DISCOVER, UNKNOWN), d);
    const r = handle(req(MessageType.REQUEST, UNKNOWN, [sid, want('10.20.0.100')]), d);
    expect(r.outcome).toBe('acked');
    expect(getU8(r.reply!.packet, Opt.MESSAGE_TYPE)).toBe(MessageType.ACK);
    expect(d.pool!.leaseOf(UNKNOWN)?.state).toBe('bound');
  });

  it('SELECTING another server: silent, and our offer is withdrawn', () => {
    const d = deps();
    handle(req(MessageType.DISCOVER, UNKNOWN), d);
    const other: [number, Buffer] = [Opt.SERVER_ID, optIps(['10.20.0.9'])];
    const r = handle(req(MessageType.REQUEST, UNKNOWN, [other, want('10.20.0.100')]), d);
    expect(r.outcome).toBe('ignored');
    expect(d.pool!.holderOf('10.20.0.100', d.now)).toBeUndefined();
  });

  it('NAKs an address another MAC holds, and a reserved MAC asking for the wrong address', () => {
    const d = deps();
    handle(req(MessageType.DISCOVER, UNKNOWN), d);
    const r = handle(req(MessageType.REQUEST, '52:54:00:00:00:77', [want('10.20.0.100')]), d);
    expect(r.outcome).toBe('nakked');
    expect(r.reply).toMatchObject({ address: '255.255.255.255', port: 68 });
    expect(r.reply!.packet.yiaddr).toBe('0.0.0.0');
    const k = handle(req(MessageType.REQUEST, KNOWN, [want('10.20.0.101')]), d);
    expect(k.outcome).toBe('nakked');
  });

  it('INIT-REBOOT: ACKs the reservation, NAKs an address on another network', () => {
    expect(handle(req(MessageType.REQUEST, KNOWN, [want('10.20.0.50')]), deps()).outcome).toBe(
      'acked',
    );
    expect(handle(req(MessageType.REQUEST, KNOWN, [want('192.168.1.5')]), deps()).outcome).toBe(
      'nakked',
    );
  });

  it('RENEWING: unicast ACK to ciaddr; renewing elsewhere is not ours', () => {
    const r = handle(req(MessageType.REQUEST, KNOWN, [], { ciaddr: '10.20.0.50' }), deps());
    expect(r.outcome).toBe('acked');
    expect(r.reply).toMatchObject({ address: '10.20.0.50', port: 68 });
    expect(r.reply!.packet.ciaddr).toBe('10.20.0.50');
    expect(
      handle(req(MessageType.REQUEST, KNOWN, [], { ciaddr: '192.168.1.5' }), deps()).outcome,
    ).toBe('ignored');
  });

  it('NAKs a pool client asking for a reserved address', () => {
    const r = handle(req(MessageType.REQUEST, UNKNOWN, [want('10.20.0.50')]), deps());
    expect(r.outcome).toBe('nakked');
  });
});

describe('RELEASE, DECLINE, INFORM', () => {
  const sid: [number, Buffer] = [Opt.SERVER_ID, optIps([SERVER])];
  it('RELEASE frees a pool lease; DECLINE takes the address out of use', () => {
    const d = deps();
    handle(req(MessageType.DISCOVER, UNKNOWN), d);
    handle(
      req(MessageType.REQUEST, UNKNOWN, [sid, [Opt.REQUESTED_IP, optIps(['10.20.0.100'])]]),
      d,
    );
    const rel = handle(req(MessageType.RELEASE, UNKNOWN, [sid], { ciaddr: '10.20.0.100' }), d);
    expect(rel).toMatchObject({ outcome: 'released' });
    expect(rel.reply).toBeUndefined();
    expect(d.pool!.holderOf('10.20.0.100', d.now)).toBeUndefined();
    const dec = handle(
      req(MessageType.DECLINE, UNKNOWN, [sid, [Opt.REQUESTED_IP, optIps(['10.20.0.100'])]]),
      d,
    );
    expect(dec.outcome).toBe('declined');
    const again = handle(req(MessageType.DISCOVER, UNKNOWN), d);
    expect(again.reply!.packet.yiaddr).not.toBe('10.20.0.100');
  });

  it('INFORM: options without lease time, unicast to ciaddr', () => {
    const r = handle(req(MessageType.INFORM, KNOWN, [], { ciaddr: '10.20.0.50' }), deps());
    expect(r.outcome).toBe('informed');
    expect(r.reply!.packet.options.has(Opt.LEASE_TIME)).toBe(false);
    expect(r.reply!.packet.yiaddr).toBe('0.0.0.0');
    expect(getIp(r.reply!.packet, Opt.DNS)).toBe('10.20.0.2');
    expect(r.reply).toMatchObject({ address: '10.20.0.50', port: 68 });
  });

  it('drops replies, non-Ethernet clients and unknown types', () => {
    expect(handle(req(MessageType.DISCOVER, KNOWN, [], { op: Op.BOOTREPLY }), deps()).outcome).toBe(
      'dropped',
    );
    expect(handle(req(MessageType.DISCOVER, KNOWN, [], { hlen: 8 }), deps()).outcome).toBe(
      'dropped',
    );
    expect(handle(req(MessageType.OFFER, KNOWN), deps()).outcome).toBe('dropped');
  });
});

describe('relays (RFC 3046, 3527, 5107)', () => {
  const RELAYED = '10.40.0.0/24';
  /** Admin is served on the link; `rack2` (10.40.0.0/24) is reached through a relay. */
  function relayDeps(): HandlerDeps {
    const base = deps();
    const backend = new StaticBackend({
      network: base.backend.network()!,
      relayed: [
        {
          name: 'rack2',
          subnet: RELAYED,
          router: '10.40.0.1',
          pool: { first: '10.40.0.100', last: '10.40.0.101' },
          dns: ['10.20.0.2'],
          ntp: [],
          search: [],
          routes: [],
        },
      ],
      reservations: [
        {
          node: 'node1.rack1.example.com',
          mac: KNOWN,
          address: '10.20.0.50',
          addresses: { rack2: '10.40.0.50' },
          bootEnv: 'local',
          generation: 3,
        },
      ],
      bootEnvs: DEFAULT_BOOTENVS,
    });
    const pools = new Map<string, Pool>();
    return {
      ...base,
      backend,
      poolFor: (n) => {
        let p = pools.get(n.name);
        if (!p && n.pool) pools.set(n.name, (p = new Pool({ ...n.pool })));
        return p;
      },
    };
  }
  /** Option 82: circuit id "eth1", plus the given sub-options. */
  const agent = (...sub: [number, number[]][]): [number, Buffer] => [
    Opt.RELAY_AGENT,
    Buffer.from([1, 4, ...Buffer.from('eth1'), ...sub.flatMap(([c, d]) => [c, d.length, ...d])]),
  ];

  it('giaddr selects the network: the reservation and options of the relay’s network', () => {
    const opt82 = agent();
    const r = handle(
      req(MessageType.DISCOVER, KNOWN, [opt82], { giaddr: '10.40.0.1', hops: 1 }),
      relayDeps(),
    );
    expect(r.outcome).toBe('offered');
    const p = r.reply!.packet;
    expect(p.yiaddr).toBe('10.40.0.50');
    expect(getIp(p, Opt.ROUTER)).toBe('10.40.0.1');
    expect(getIp(p, Opt.SUBNET_MASK)).toBe('255.255.255.0');
    expect(getIp(p, Opt.SERVER_ID)).toBe(SERVER);
    expect(p.giaddr).toBe('10.40.0.1');
    expect(p.options.get(Opt.RELAY_AGENT)).toEqual(opt82[1]); // RFC 3046 §2.2: unchanged
    expect(r.reply).toMatchObject({ address: '10.40.0.1', port: 67 });
  });

  it('an unknown MAC behind a relay gets an address from that network’s pool', () => {
    const d = relayDeps();
    const r = handle(req(MessageType.DISCOVER, UNKNOWN, [], { giaddr: '10.40.0.1' }), d);
    expect(r.reply!.packet.yiaddr).toBe('10.40.0.100');
    const ack = handle(
      req(
        MessageType.REQUEST,
        UNKNOWN,
        [
          [Opt.SERVER_ID, optIps([SERVER])],
          [Opt.REQUESTED_IP, optIps(['10.40.0.100'])],
        ],
        { giaddr: '10.40.0.1' },
      ),
      d,
    );
    expect(ack.outcome).toBe('acked');
    expect(d.pool!.leases()).toEqual([]); // the served network's pool is untouched
  });

  it('RFC 3527 link selection picks the network, replies still go to giaddr', () => {
    const r = handle(
      req(MessageType.DISCOVER, KNOWN, [agent([5, [10, 40, 0, 0]])], { giaddr: '10.20.0.253' }),
      relayDeps(),
    );
    expect(r.reply!.packet.yiaddr).toBe('10.40.0.50');
    expect(r.reply).toMatchObject({ address: '10.20.0.253', port: 67 });
  });

  it('RFC 5107 server identifier override: option 54 carries it, and REQUESTs naming it are ours', () => {
    const d = relayDeps();
    const opt82 = agent([11, [10, 40, 0, 1]]);
    const offer = handle(req(MessageType.DISCOVER, KNOWN, [opt82], { giaddr: '10.40.0.1' }), d);
    expect(getIp(offer.reply!.packet, Opt.SERVER_ID)).toBe('10.40.0.1');
    const ack = handle(
      req(
        MessageType.REQUEST,
        KNOWN,
        [[Opt.SERVER_ID, optIps(['10.40.0.1'])], [Opt.REQUESTED_IP, optIps(['10.40.0.50'])], opt82],
        { giaddr: '10.40.0.1' },
      ),
      d,
    );
    expect(ack.outcome).toBe('acked');
    expect(getIp(ack.reply!.packet, Opt.SERVER_ID)).toBe('10.40.0.1');
    expect(ack.reply!.packet.options.get(Opt.RELAY_AGENT)).toEqual(opt82[1]);
    // Without the override, a REQUEST naming the relay's address chose another server.
    const other = handle(
      req(
        MessageType.REQUEST,
        KNOWN,
        [
          [Opt.SERVER_ID, optIps(['10.40.0.1'])],
          [Opt.REQUESTED_IP, optIps(['10.40.0.50'])],
        ],
        { giaddr: '10.40.0.1' },
      ),
      d,
    );
    expect(other.outcome).toBe('ignored');
  });

  it('a giaddr on no known network is ignored; malformed option 82 is not fatal', () => {
    const r = handle(req(MessageType.DISCOVER, KNOWN, [], { giaddr: '192.0.2.1' }), relayDeps());
    expect(r).toMatchObject({ outcome: 'ignored' });
    expect(r.reason).toMatch(/relayed from 192\.0\.2\.1, on no network/);
    const bad = handle(
      req(MessageType.DISCOVER, KNOWN, [[Opt.RELAY_AGENT, Buffer.from([5, 9, 1])]], {
        giaddr: '10.40.0.1',
      }),
      relayDeps(),
    );
    expect(bad.reply!.packet.yiaddr).toBe('10.40.0.50');
  });
});

describe('spec.dhcp.mode: proxy and off', () => {
  function modeDeps(mode: 'proxy' | 'off', bootEnv = 'sledgehammer'): HandlerDeps {
    const base = deps({ bootEnv });
    const backend = new StaticBackend({
      network: { ...base.backend.network()!, mode },
      reservations: [
        {
          node: 'node1.rack1.example.com',
          mac: KNOWN,
          address: '10.20.0.50',
          bootEnv,
          generation: 3,
        },
      ],
      bootEnvs: DEFAULT_BOOTENVS,
    });
    return { ...base, backend };
  }
  const DNSMASQ = '10.20.0.9';

  it('proxy: a BIOS PXE DISCOVER gets boot information only (no address, no lease)', () => {
    const guid: [number, Buffer] = [
      Opt.CLIENT_GUID,
      Buffer.from([0, ...Array<number>(16).fill(7)]),
    ];
    const r = handle(req(MessageType.DISCOVER, UNKNOWN, [...PXE_BIOS, guid]), modeDeps('proxy'));
    expect(r.outcome).toBe('offered');
    const p = r.reply!.packet;
    expect(p.yiaddr).toBe('0.0.0.0');
    expect(p.siaddr).toBe(SERVER);
    expect(getIp(p, Opt.SERVER_ID)).toBe(SERVER);
    expect(getString(p, Opt.VENDOR_CLASS)).toBe('PXEClient');
    expect(getString(p, Opt.BOOTFILE)).toBe('undionly.kpxe');
    expect(p.file).toBe('undionly.kpxe');
    expect(p.options.get(Opt.CLIENT_GUID)).toEqual(guid[1]);
    for (const o of [Opt.LEASE_TIME, Opt.SUBNET_MASK, Opt.ROUTER, Opt.DNS, Opt.HOSTNAME])
      expect(p.options.has(o)).toBe(false);
    expect(r.reply).toMatchObject({ address: '255.255.255.255', port: 68 });
  });

  it('proxy: iPXE’s REQUEST to port 4011 (from its address) gets its script URL', () => {
    const r = handle(
      req(MessageType.REQUEST, KNOWN, [...IPXE], { ciaddr: '10.20.0.120' }),
      modeDeps('proxy'),
    );
    expect(r.outcome).toBe('acked');
    expect(getString(r.reply!.packet, Opt.BOOTFILE)).toBe(`${cfg.httpBase}/ipxe/${KNOWN}`);
    expect(getString(r.reply!.packet, Opt.VENDOR_CLASS)).toBe('PXEClient');
    expect(r.reply!.packet.yiaddr).toBe('0.0.0.0');
    expect(r.reply).toMatchObject({ address: '10.20.0.120', port: 68 });
  });

  it('proxy: leaves non-PXE clients, REQUESTs for the address server and local boots alone', () => {
    const d = modeDeps('proxy');
    expect(handle(req(MessageType.DISCOVER, KNOWN), d).outcome).toBe('ignored');
    const toDnsmasq = handle(
      req(MessageType.REQUEST, KNOWN, [
        ...PXE_BIOS,
        [Opt.SERVER_ID, optIps([DNSMASQ])],
        [Opt.REQUESTED_IP, optIps(['10.20.0.120'])],
      ]),
      d,
    );
    expect(toDnsmasq).toMatchObject({ outcome: 'ignored' });
    expect(handle(req(MessageType.RELEASE, KNOWN, PXE_BIOS), d).outcome).toBe('ignored');
    const local = handle(req(MessageType.DISCOVER, KNOWN, PXE_BIOS), modeDeps('proxy', 'local'));
    expect(local).toMatchObject({ outcome: 'ignored', reason: 'local boots locally' });
    expect(d.pool!.leases()).toEqual([]);
  });

  it('off: nothing is answered', () => {
    const r = handle(req(MessageType.DISCOVER, KNOWN, PXE_BIOS), modeDeps('off'));
    expect(r).toMatchObject({ outcome: 'ignored', reason: 'DHCP is off on network admin' });
  });
});
