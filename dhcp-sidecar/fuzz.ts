/**
 * Hostile DHCP packets for fuzz tests (deterministic from a seed): truncations, option lengths
 * past the end, overload loops, zero-length and repeated options, giant packets, bit flips and
 * random bytes, all derived from well-formed client messages. A third of them come "through a
 * relay": a giaddr (the served network, a relayed one, a proxy-mode one or one nobody serves) and
 * an option 82 with circuit id, RFC 3527 link selection and RFC 5107 server identifier override
 * sub-options of right and wrong lengths.
 */
import { MessageType, Op, Opt, encode, optIps, optU8, type DhcpPacket } from './codec.ts';

/** mulberry32: a small deterministic PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Link addresses the fuzz test's backend knows (served, relayed, proxy) and one it does not. */
export const FUZZ_LINKS = ['10.0.0.254', '10.1.0.1', '10.2.0.1', '192.0.2.1'] as const;

/** Option 82 with random sub-options: 1 (circuit id), 5 and 11 (4 bytes, or not), junk. */
function agentOption(rand: () => number): Buffer {
  const parts: number[] = [1, 4, 101, 116, 104, 49];
  const n = Math.floor(rand() * 4);
  for (let i = 0; i < n; i++) {
    const code = [5, 11, 2, Math.floor(rand() * 256)][Math.floor(rand() * 4)] ?? 5;
    const len = rand() < 0.7 ? 4 : Math.floor(rand() * 8);
    parts.push(code, len);
    for (let k = 0; k < len; k++) parts.push(code === 5 && k === 0 ? 10 : Math.floor(rand() * 3));
  }
  // Sometimes a sub-option whose length runs past the option's end.
  if (rand() < 0.2) parts.push(5, 200, 10);
  return Buffer.from(parts);
}

function base(rand: () => number): Buffer {
  const type = [MessageType.DISCOVER, MessageType.REQUEST, MessageType.INFORM][
    Math.floor(rand() * 3)
  ] as number;
  const chaddr = Buffer.alloc(16);
  for (let i = 0; i < 6; i++) chaddr[i] = Math.floor(rand() * 256);
  chaddr[0] = 0x52;
  const p: DhcpPacket = {
    op: Op.BOOTREQUEST,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: Math.floor(rand() * 0xffffffff),
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr,
    sname: '',
    file: '',
    options: new Map([
      [Opt.MESSAGE_TYPE, optU8(type)],
      [Opt.PARAM_LIST, Buffer.from([1, 3, 6, 15, 66, 67])],
      [Opt.VENDOR_CLASS, Buffer.from('PXEClient:Arch:00000:UNDI:002001')],
      [Opt.CLIENT_ARCH, Buffer.from([0, Math.floor(rand() * 20)])],
      [Opt.REQUESTED_IP, optIps(['10.0.0.5'])],
    ]),
  };
  if (rand() < 1 / 3) {
    p.giaddr = FUZZ_LINKS[Math.floor(rand() * FUZZ_LINKS.length)] ?? '10.1.0.1';
    p.hops = 1;
    p.options.set(Opt.RELAY_AGENT, agentOption(rand));
  }
  return encode(p);
}

const MUTATIONS = [
  // truncated anywhere
  (b: Buffer, r: () => number) => b.subarray(0, Math.floor(r() * b.length)),
  // an option whose length runs past the end
  (b: Buffer, r: () => number) =>
    Buffer.concat([b.subarray(0, 240), Buffer.from([12, 100 + Math.floor(r() * 155), 65, 66])]),
  // overload loop: 52 in options, file and sname each pointing at the others
  (b: Buffer) => {
    const c = Buffer.from(b);
    c.fill(0, 44, 236);
    Buffer.from([52, 1, 3, 255]).copy(c, 240);
    Buffer.from([52, 1, 3, 52, 1, 2, 255]).copy(c, 108);
    Buffer.from([52, 1, 1, 255]).copy(c, 44);
    return c;
  },
  // zero-length options everywhere
  (b: Buffer, r: () => number) => {
    const n = Math.floor(r() * 100);
    const z: number[] = [];
    for (let i = 0; i < n; i++) z.push(1 + Math.floor(r() * 254), 0);
    return Buffer.concat([b.subarray(0, 240), Buffer.from(z), Buffer.from([255])]);
  },
  // giant packet of repeated long options (RFC 3396 concatenation), up to about 16 KB
  (b: Buffer, r: () => number) => {
    const n = Math.floor(r() * 64);
    const parts: Buffer[] = [b.subarray(0, 240)];
    for (let i = 0; i < n; i++) parts.push(Buffer.from([43, 255]), Buffer.alloc(255, i));
    return Buffer.concat(parts);
  },
  // bit flips
  (b: Buffer, r: () => number) => {
    const c = Buffer.from(b);
    const n = 1 + Math.floor(r() * 16);
    for (let i = 0; i < n; i++) {
      const at = Math.floor(r() * c.length);
      c[at] = (c[at] ?? 0) ^ (1 << Math.floor(r() * 8));
    }
    return c;
  },
  // random bytes with a valid cookie
  (_b: Buffer, r: () => number) => {
    const c = Buffer.alloc(Math.floor(r() * 1500));
    for (let i = 0; i < c.length; i++) c[i] = Math.floor(r() * 256);
    if (c.length >= 240) c.writeUInt32BE(0x63825363, 236);
    return c;
  },
  // bad hlen / htype / op, message type 0 or 255, option 53 of the wrong length
  (b: Buffer, r: () => number) => {
    const c = Buffer.from(b);
    c[[0, 1, 2][Math.floor(r() * 3)] ?? 0] = Math.floor(r() * 256);
    Buffer.from([53, Math.floor(r() * 3), 255, 0]).copy(c, 240);
    return c;
  },
];

/** Yields `count` hostile packets. */
export function* hostilePackets(seed: number, count: number): Generator<Buffer> {
  const rand = prng(seed);
  let b = base(rand);
  for (let i = 0; i < count; i++) {
    if (i % 64 === 0) b = base(rand);
    const m = MUTATIONS[Math.floor(rand() * MUTATIONS.length)] ?? MUTATIONS[0];
    if (m) yield m(b, rand);
  }
}

/**
 * Sends packets to HOST:PORT over UDP of the given family from the namespace it runs in (the fuzz
 * tests' entry points), skipping what no datagram can carry.
 */
export async function sendPackets(
  packets: Iterable<Buffer>,
  family: 'udp4' | 'udp6',
  host: string,
  port: number,
) {
  const dgram = await import('node:dgram');
  const s = dgram.createSocket(family);
  let sent = 0;
  for (const p of packets) {
    if (p.length === 0 || p.length > 65_000) continue;
    await new Promise<void>((resolve) => {
      s.send(p, port, host, () => {
        resolve();
      });
    });
    sent++;
    // Pace the burst so the kernel's socket buffer, not the server, is not what drops packets.
    if (sent % 200 === 0) await new Promise((r) => setImmediate(r));
  }
  s.close();
  return sent;
}

if (process.argv[1]?.endsWith('fuzz.ts') && process.argv.length >= 5) {
  const [host = '', port = '67', count = '1000', seed = '1'] = process.argv.slice(2);
  sendPackets(hostilePackets(Number(seed), Number(count)), 'udp4', host, Number(port))
    .then((n) => {
      console.log(JSON.stringify({ sent: n }));
    })
    .catch((e: unknown) => {
      console.error(e);
      process.exit(1);
    });
}
