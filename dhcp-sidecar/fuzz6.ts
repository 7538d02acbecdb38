/**
 * Hostile DHCPv6 packets for fuzz tests (deterministic from a seed), derived from well-formed
 * client messages of every type: truncations, option lengths past the end, IA_NAs and IAADDRs of
 * wrong sizes, zero-length and repeated options, giant packets, bit flips, random bytes, and half
 * of them wrapped in one to forty Relay-Forward levels (deeper than the nesting limit, relays
 * without or with two option 9s, interface-ids, client link-layer options of right and wrong
 * lengths, link-addresses on the served network, a relayed one and one nobody serves).
 */
import { prng, sendPackets } from './fuzz.ts';
import {
  Msg6,
  Opt6,
  duidLl,
  duidUuid,
  encode6,
  iaAddr,
  iaNa,
  lengthPrefixed,
  oro,
  u16,
  vendorClass,
  type Option6,
  type Packet6,
} from './codec6.ts';

/** Link-addresses the fuzz test's backend knows (served, relayed) and one it does not. */
export const FUZZ6_LINKS = ['fd00:f::1', 'fd00:f:1::1', 'fd00:9::1', '::'] as const;
/** The fuzz test's server DUID (so some REQUESTs name it). */
export const FUZZ6_SERVER_DUID = duidUuid(Buffer.alloc(16, 0x5a));

const TYPES = [
  Msg6.SOLICIT,
  Msg6.REQUEST,
  Msg6.CONFIRM,
  Msg6.RENEW,
  Msg6.REBIND,
  Msg6.RELEASE,
  Msg6.DECLINE,
  Msg6.INFORMATION_REQUEST,
  Msg6.ADVERTISE,
] as const;

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)] ?? (xs[0] as T);
}

function mac(r: () => number): string {
  const b = [0x52, 0x54, 0, 0x66, 0, Math.floor(r() * 4)];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

function base(r: () => number): Packet6 {
  const type = pick(r, TYPES);
  const opts: Option6[] = [];
  if (r() < 0.95)
    opts.push({
      code: Opt6.CLIENTID,
      data: r() < 0.7 ? duidLl(mac(r)) : duidUuid(Buffer.alloc(16, 9)),
    });
  if (r() < 0.5)
    opts.push({ code: Opt6.SERVERID, data: r() < 0.7 ? FUZZ6_SERVER_DUID : duidLl(mac(r)) });
  opts.push({ code: Opt6.ORO, data: oro([23, 24, 59]) });
  if (r() < 0.8) {
    const addr = pick(r, ['fd00:f::21', 'fd00:f:1::22', 'fd00:9::5']);
    opts.push({
      code: Opt6.IA_NA,
      data: iaNa({
        iaid: Math.floor(r() * 1000),
        t1: 0,
        t2: 0,
        options:
          r() < 0.5
            ? [
                {
                  code: Opt6.IAADDR,
                  data: iaAddr({ address: addr, preferred: 0, valid: 0, options: [] }),
                },
              ]
            : [],
      }),
    });
  }
  if (r() < 0.3) opts.push({ code: Opt6.RAPID_COMMIT, data: Buffer.alloc(0) });
  if (r() < 0.3) opts.push({ code: Opt6.CLIENT_ARCH, data: u16(pick(r, [0, 7, 9, 16, 11])) });
  if (r() < 0.3)
    opts.push({
      code: Opt6.VENDOR_CLASS,
      data: vendorClass(343, [pick(r, ['PXEClient:Arch:00007', 'HTTPClient:Arch:00016'])]),
    });
  if (r() < 0.2) opts.push({ code: Opt6.USER_CLASS, data: lengthPrefixed(['iPXE']) });
  let p: Packet6 = { type, xid: Math.floor(r() * 0xffffff), options: opts };
  if (r() < 0.5) {
    const levels = r() < 0.9 ? 1 + Math.floor(r() * 3) : 30 + Math.floor(r() * 10);
    for (let i = 0; i < levels; i++) {
      const ro: Option6[] = [];
      if (r() < 0.6) ro.push({ code: Opt6.INTERFACE_ID, data: Buffer.from(`if${i}`) });
      if (r() < 0.4) {
        const ll = Buffer.concat([u16(1), Buffer.from(mac(r).replace(/:/g, ''), 'hex')]);
        ro.push({
          code: Opt6.CLIENT_LINKLAYER_ADDR,
          data: r() < 0.8 ? ll : ll.subarray(0, Math.floor(r() * 8)),
        });
      }
      p = {
        type: r() < 0.97 ? Msg6.RELAY_FORW : Msg6.RELAY_REPL,
        hopCount: i,
        linkAddress: pick(r, FUZZ6_LINKS),
        peerAddress: r() < 0.5 ? 'fe80::5054:ff:fe66:1' : 'fe80::1',
        options: ro,
        inner: p,
      };
    }
  }
  return p;
}

/** Appends a raw option (code, claimed length, bytes) to `b`. */
function rawOption(b: Buffer, code: number, len: number, data: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(code, 0);
  h.writeUInt16BE(len & 0xffff, 2);
  return Buffer.concat([b, h, data]);
}

const MUTATIONS: ((b: Buffer, r: () => number) => Buffer)[] = [
  // well-formed (the handlers must see plenty of these)
  (b) => b,
  (b) => b,
  // truncated anywhere
  (b, r) => b.subarray(0, Math.floor(r() * b.length)),
  // an option whose length runs past the end
  (b, r) =>
    rawOption(b, pick(r, [1, 3, 9, 79]), 100 + Math.floor(r() * 60000), Buffer.from([1, 2])),
  // IA_NA / IAADDR / status / DUID / arch of wrong sizes, appended
  (b, r) => {
    const code = pick(r, [
      Opt6.IA_NA,
      Opt6.IAADDR,
      Opt6.STATUS_CODE,
      Opt6.CLIENTID,
      Opt6.CLIENT_ARCH,
      Opt6.VENDOR_CLASS,
      Opt6.USER_CLASS,
    ]);
    const n = Math.floor(r() * 30);
    const d = Buffer.alloc(n);
    for (let i = 0; i < n; i++) d[i] = Math.floor(r() * 256);
    return rawOption(b, code, n, d);
  },
  // a relay header with no option 9, or two
  (b, r) => {
    const h = Buffer.concat([Buffer.from([Msg6.RELAY_FORW, 0]), Buffer.alloc(32)]);
    if (r() < 0.5) return h;
    const o = rawOption(Buffer.alloc(0), Opt6.RELAY_MSG, b.length, b);
    return Buffer.concat([h, o, o]);
  },
  // zero-length options everywhere
  (b, r) => {
    let c = b.subarray(0, 4);
    const n = Math.floor(r() * 60);
    for (let i = 0; i < n; i++) c = rawOption(c, Math.floor(r() * 100), 0, Buffer.alloc(0));
    return c;
  },
  // giant packet of long options, up to about 8 KB
  (b, r) => {
    const n = Math.floor(r() * 32);
    let c = b;
    for (let i = 0; i < n; i++) c = rawOption(c, 17, 255, Buffer.alloc(255, i));
    return c;
  },
  // bit flips
  (b, r) => {
    const c = Buffer.from(b);
    const n = 1 + Math.floor(r() * 16);
    for (let i = 0; i < n && c.length > 0; i++) {
      const at = Math.floor(r() * c.length);
      c[at] = (c[at] ?? 0) ^ (1 << Math.floor(r() * 8));
    }
    return c;
  },
  // random bytes behind a valid message type
  (_b, r) => {
    const c = Buffer.alloc(Math.floor(r() * 1500));
    for (let i = 0; i < c.length; i++) c[i] = Math.floor(r() * 256);
    if (c.length > 0) c[0] = pick(r, [1, 3, 11, 12, 13]);
    return c;
  },
];

/** Yields `count` hostile DHCPv6 packets. */
export function* hostilePackets6(seed: number, count: number): Generator<Buffer> {
  const rand = prng(seed);
  let b = encode6(base(rand));
  for (let i = 0; i < count; i++) {
    if (i % 16 === 0) b = encode6(base(rand));
    yield pick(rand, MUTATIONS)(b, rand);
  }
}

if (process.argv[1]?.endsWith('fuzz6.ts') && process.argv.length >= 5) {
  const [host = '', port = '547', count = '1000', seed = '1'] = process.argv.slice(2);
  sendPackets(hostilePackets6(Number(seed), Number(count)), 'udp6', host, Number(port))
    .then((n) => {
      console.log(JSON.stringify({ sent: n }));
    })
    .catch((e: unknown) => {
      console.error(e);
      process.exit(1);
    });
}
