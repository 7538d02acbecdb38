/**
 * Run by native-udp.test.ts in a child node with AddressSanitizer and UBSan preloaded: drives the
 * DHCP addon given as argv[2] with argv[3] datagrams of random sizes (0 to 6,000 bytes, so some
 * are cut at the 4,096-byte slot) from four clients, each keeping a few outstanding. JS answers
 * every datagram of a batch with one send(): the datagram reversed, or "TRUNC" and its sequence
 * number when the loop flagged it as cut. Every reply is checked against its question, and every
 * datagram's IP_PKTINFO (destination 127.0.0.1 on an interface). Then this thread blocks while a
 * client floods: the loop reads no further than its two batches in flight (the kernel's buffer
 * holds or drops the rest), and serves again once JS is back. Then close() while datagrams still
 * arrive, and the handle is collected after. Prints one JSON line; a sanitizer finding aborts.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  FLAG_TRUNCATED,
  META,
  META_WORDS,
  SEND_META_WORDS,
  type NativeDhcpHandle,
  type NativeDhcpUdp,
} from '../native-udp.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const addon = createRequire(import.meta.url)(process.argv[2] ?? '') as NativeDhcpUdp;
const TOTAL = Number(process.argv[3] ?? 20_000);
const WINDOW = 8;
const LOOPBACK = 0x7f000001;
let seed = 11;
const rand = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;

const reversed = (b: Buffer): Buffer => Buffer.from(b).reverse();
const truncReply = (seq: number): Buffer => {
  const b = Buffer.from('TRUNC....');
  b.writeUInt32BE(seq, 5);
  return b;
};

let datagrams = 0;
let batches = 0;
let maxBatch = 0;
let badInfo = 0;
let truncated = 0;
/** Replies to the clients are checked until the flood; after it they are ignored. */
let checking = true;
const sendMeta = new Uint32Array(64 * SEND_META_WORDS);
let h: NativeDhcpHandle | undefined = addon.open('127.0.0.1', 0, 1 << 20, (data, meta, n) => {
  if (h === undefined) return;
  batches++;
  maxBatch = Math.max(maxBatch, n);
  const replies: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    datagrams++;
    const w = i * META_WORDS;
    const off = meta[w + META.OFFSET] ?? 0;
    const len = meta[w + META.LENGTH] ?? 0;
    if (meta[w + META.DESTINATION] !== LOOPBACK || (meta[w + META.IFINDEX] ?? 0) === 0) badInfo++;
    const msg = data.subarray(off, off + len);
    let reply: Buffer;
    if (((meta[w + META.FLAGS] ?? 0) & FLAG_TRUNCATED) !== 0) {
      truncated++;
      reply = truncReply(msg.length >= 4 ? msg.readUInt32BE(0) : 0);
    } else reply = reversed(msg);
    const k = replies.length;
    replies.push(reply);
    sendMeta[k * SEND_META_WORDS] = meta[w + META.SOURCE] ?? 0;
    sendMeta[k * SEND_META_WORDS + 1] = meta[w + META.SOURCE_PORT] ?? 0;
    sendMeta[k * SEND_META_WORDS + 2] = LOOPBACK;
  }
  addon.send(h, replies, sendMeta, replies.length);
});
const port = addon.port(h);

let bad = 0;
let replies = 0;
let sent = 0;
const pending = new Map<number, Buffer>();
let finish: () => void = () => undefined;
const done = new Promise<void>((r) => (finish = r));

function question(seq: number): Buffer {
  // Mostly DHCP-sized, some empty or tiny, some past the slot.
  const r = rand();
  const n =
    r < 0.02
      ? Math.floor(rand() * 4)
      : r < 0.1
        ? 4097 + Math.floor(rand() * 1900)
        : 240 + Math.floor(rand() * 600);
  const b = Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  if (n >= 4) b.writeUInt32BE(seq, 0);
  return b;
}

function sendNext(s: Socket): void {
  if (sent >= TOTAL) return;
  const seq = sent++;
  const q = question(seq);
  if (q.length < 4) {
    // Too short to carry a sequence number: its reply is checked by length only.
    pending.set(-1 - seq, q);
  } else pending.set(seq, q);
  s.send(q, port, '127.0.0.1');
}

const clients: Socket[] = [];
for (let c = 0; c < 4; c++) {
  // An IP literal handed straight back: dgram then sends at once, even while this thread is busy
  // (its default lookup answers on a later tick, which the flood below would never reach).
  const s = createSocket({
    type: 'udp4',
    lookup: (address, _o, cb) => {
      cb(null, address, 4);
    },
  });
  s.on('message', (m: Buffer) => {
    if (!checking) return;
    replies++;
    let ok = false;
    if (m.length >= 9 && m.toString('latin1', 0, 5) === 'TRUNC') {
      const q = pending.get(m.readUInt32BE(5));
      ok = q !== undefined && q.length > 4096;
      pending.delete(m.readUInt32BE(5));
    } else if (m.length >= 4) {
      // The reply is the question reversed: its last four bytes are the sequence number reversed.
      const seq = Buffer.from(m.subarray(m.length - 4))
        .reverse()
        .readUInt32BE(0);
      const q = pending.get(seq);
      ok = q !== undefined && reversed(q).equals(m);
      pending.delete(seq);
    } else {
      for (const [k, q] of pending)
        if (k < 0 && q.length === m.length && reversed(q).equals(m)) {
          pending.delete(k);
          ok = true;
          break;
        }
    }
    if (!ok) bad++;
    if (replies >= TOTAL) finish();
    else sendNext(s);
  });
  clients.push(s);
}
await Promise.all(clients.map((s) => new Promise<void>((r) => s.bind(0, '127.0.0.1', r))));
for (const s of clients) for (let i = 0; i < WINDOW; i++) sendNext(s);
// Loopback with a 1 MiB buffer and 32 outstanding drops nothing; the bound is only a guard.
const guard = setTimeout(finish, 120_000);
await done;
clearTimeout(guard);

// Flood while this thread is blocked: the loop reads its batches in flight and no more (the
// kernel's buffer holds or drops the rest), so what it read meanwhile stays within 2 x 64.
const flooder = clients[0];
if (flooder === undefined) throw new Error('no client');
checking = false;
const flood = Buffer.alloc(300, 1);
const before = addon.stats(h).datagrams;
// A count, not a time: on a loaded machine (and slowed by the sanitizers) 300 ms of sending was
// once fewer than 1,000 datagrams. 5,000 is far past the 128 the loop may read; 20 s bounds it.
const until = Date.now() + 20_000;
let flooded = 0;
// A busy wait, on purpose: the JS thread must not take batches meanwhile. Bounded by count and
// time; dgram sends synchronously when the socket can take it.
while (Date.now() < until && flooded < 5_000) {
  flooder.send(flood, port, '127.0.0.1');
  flooded++;
}
const readWhileBlocked = addon.stats(h).datagrams - before;
// Back from the block, the loop serves again: one more question is answered.
const after = await new Promise<boolean>((resolve) => {
  const q = Buffer.from([0, 0, 0, 0, 9, 9]);
  const probe = createSocket('udp4');
  // Asked again every 100 ms (the flood may still fill the buffer), at most 300 times.
  let tries = 0;
  const again = setInterval(() => {
    if (++tries > 300) {
      clearInterval(again);
      probe.close();
      resolve(false);
    } else probe.send(q, port, '127.0.0.1');
  }, 100);
  probe.on('message', (m: Buffer) => {
    if (!m.equals(reversed(q))) return;
    clearInterval(again);
    probe.close();
    resolve(true);
  });
  probe.bind(0, '127.0.0.1');
});
const stats = addon.stats(h);

// Close while a client still sends, then let the handle be collected.
const closing = setInterval(() => {
  flooder.send(flood, port, '127.0.0.1');
}, 1);
addon.close(h);
addon.close(h);
h = undefined;
clearInterval(closing);
gc();
await new Promise<void>((r) => setTimeout(r, 50));
gc();
for (const s of clients) s.close();
console.log(
  JSON.stringify({
    sent,
    replies,
    bad,
    badInfo,
    truncated,
    datagrams,
    batches,
    maxBatch,
    flooded,
    readWhileBlocked,
    servedAfter: after,
    stats,
  }),
);
