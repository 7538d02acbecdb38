/**
 * Malformed DNS messages for the fuzz tests, from a seeded PRNG so any failure can be replayed:
 * compression loops and forward pointers, counts past the end of the message, giant and
 * reserved-type labels, over-long names, broken OPT records, truncations, bit flips of good
 * queries, responses, and plain random bytes.
 */
import dnsPacket from 'dns-packet';

/** mulberry32. */
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

const GOOD = [
  dnsPacket.encode({
    type: 'query',
    id: 1,
    questions: [{ name: 'node1.lab.crowbar.dev', type: 'A' }],
  }),
  dnsPacket.encode({
    type: 'query',
    id: 2,
    flags: 0x0100,
    questions: [{ name: '81.124.168.192.in-addr.arpa', type: 'PTR' }],
    additionals: [
      {
        name: '.',
        type: 'OPT',
        udpPayloadSize: 4096,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: 0x8000,
        flag_do: true,
        options: [{ code: 12, type: 'PADDING', length: 8 }],
      },
    ],
  }),
];

function header(r: () => number, qd: number, an = 0, ns = 0, ar = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(Math.floor(r() * 65536), 0);
  b.writeUInt16BE(Math.floor(r() * 65536) & 0x7fff, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
}

const KINDS = [
  'loop',
  'forward-pointer',
  'counts',
  'giant-label',
  'reserved-label',
  'long-name',
  'bad-opt',
  'truncated',
  'bitflip',
  'response',
  'random',
] as const;
export type FuzzKind = (typeof KINDS)[number];

/** One malformed message of a random kind. */
export function malformed(r: () => number): { kind: FuzzKind; msg: Buffer } {
  const kind = KINDS[Math.floor(r() * KINDS.length)] ?? 'random';
  const int = (n: number) => Math.floor(r() * n);
  const good = GOOD[int(GOOD.length)] ?? Buffer.alloc(12);
  let msg: Buffer;
  switch (kind) {
    case 'loop': {
      // A name that points at itself, or two pointers pointing at each other.
      const self = Buffer.from([0xc0, 12, 0, 1, 0, 1]);
      const pair = Buffer.from([1, 0x61, 0xc0, 14, 0xc0, 12, 0, 1, 0, 1]);
      msg = Buffer.concat([header(r, 1), r() < 0.5 ? self : pair]);
      break;
    }
    case 'forward-pointer':
      msg = Buffer.concat([header(r, 1), Buffer.from([0xc0, 12 + int(200), 0, 1, 0, 1])]);
      break;
    case 'counts':
      msg = Buffer.concat([
        header(r, 1 + int(65535), int(65536), int(65536), int(65536)),
        good.subarray(12, 12 + int(good.length - 12)),
      ]);
      break;
    case 'giant-label': {
      const len = 63 + int(2) * 128; // 63, or a length byte with the pointer/extended bits
      msg = Buffer.concat([header(r, 1), Buffer.from([len]), Buffer.alloc(int(80), 0x61)]);
      break;
    }
    case 'reserved-label':
      msg = Buffer.concat([header(r, 1), Buffer.from([0x40 | int(64), 0x61, 0, 0, 1, 0, 1])]);
      break;
    case 'long-name': {
      const labels = Array.from({ length: 5 + int(5) }, () =>
        Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x62)]),
      );
      msg = Buffer.concat([header(r, 1), ...labels, Buffer.from([0, 0, 1, 0, 1])]);
      break;
    }
    case 'bad-opt': {
      // The good query with an OPT whose RDLENGTH or option lengths run past the end.
      const q = GOOD[0] ?? Buffer.alloc(12);
      const opt = Buffer.from([0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 12, 0xff, 0xf0]);
      msg = Buffer.concat([q, opt.subarray(0, 9 + int(7))]);
      msg.writeUInt16BE(1, 10);
      break;
    }
    case 'truncated':
      msg = good.subarray(0, int(good.length));
      break;
    case 'bitflip': {
      msg = Buffer.from(good);
      for (let i = 0, n = 1 + int(4); i < n; i++) {
        const at = 12 + int(msg.length - 12);
        msg[at] = (msg[at] ?? 0) ^ (1 << int(8));
      }
      break;
    }
    case 'response':
      msg = Buffer.from(good);
      msg.writeUInt16BE(msg.readUInt16BE(2) | 0x8000, 2);
      break;
    case 'random':
      msg = Buffer.from(Array.from({ length: int(600) }, () => int(256)));
      break;
  }
  return { kind, msg };
}
