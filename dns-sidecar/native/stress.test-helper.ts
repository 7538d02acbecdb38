/**
 * Run by native-udp.test.ts in a child node with AddressSanitizer and UBSan preloaded: drives the
 * addon given as argv[2] with argv[3] random datagrams (every size up to the largest UDP payload)
 * from four clients, a 64 KiB table that keeps turning generations over, and clear() calls, and
 * checks that every reply is exactly the answer stored for its question with the asker's ID. Then
 * a flood of large one-off datagrams while this thread is blocked: the queue of misses for JS
 * stays within its byte bound (the rest are dropped and counted) and memory with it.
 * Prints one JSON line of counts; any sanitizer finding aborts the process.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { NativeUdp } from '../native-udp.ts';

const addon = createRequire(import.meta.url)(process.argv[2] ?? '') as NativeUdp;
const TOTAL = Number(process.argv[3] ?? 50_000);
let seed = 7;
const rand = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;

/** The answer for a question: a function of its bytes, so that every reply can be checked. */
function answerFor(q: Buffer): Buffer {
  const len = 12 + ((q.length * 7) % 600);
  const out = Buffer.alloc(len);
  for (let i = 2; i < len; i++) out[i] = (q[2 + (i % Math.max(1, q.length - 2))] ?? 0) ^ 0x5a;
  out[0] = q[0] ?? 0;
  out[1] = q[1] ?? 0;
  return out;
}

let misses = 0;
const h = addon.open('127.0.0.1', 0, 3, 64 * 1024, [0.0001, 0.001], (msgs, addrs, ports) => {
  for (const [i, q] of msgs.entries()) {
    misses++;
    if (q.length <= 12) continue; // never cached and not answered, as the sidecar drops them
    const a = answerFor(q);
    addon.send(h, a, addrs[i] ?? '', ports[i] ?? 0);
    addon.put(h, q, a, i % 40);
  }
});
const port = addon.port(h);

const sizes = [0, 1, 12, 13, 65_507];
/** A small set of questions (so that most are hits) of every size; one in ten sent is one-off. */
const pool: Buffer[] = Array.from({ length: 400 }, (_, k) => {
  const n = sizes[k] ?? 13 + Math.floor(rand() * (k % 50 === 0 ? 4000 : 200));
  return Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
});
const pick = (): Buffer => pool[Math.floor(rand() * pool.length)] ?? Buffer.alloc(0);

let bad = 0;
let replies = 0;
/** The question sent with each ID (the first two bytes); IDs are not reused in one run. */
const pending = new Map<number, Buffer>();
const clients: Socket[] = [];
for (let c = 0; c < 4; c++) {
  const s = createSocket('udp4');
  s.on('message', (m: Buffer) => {
    replies++;
    const q = m.length >= 2 ? pending.get(m.readUInt16BE(0)) : undefined;
    if (q === undefined) return; // the last question, checked below
    if (!answerFor(q).equals(m)) bad++;
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  clients.push(s);
}
const send = (s: Socket | undefined, q: Buffer): Promise<void> =>
  new Promise((r) => {
    s?.send(q, port, '127.0.0.1', () => {
      r();
    });
  });

for (let sent = 0; sent < TOTAL; sent += 200) {
  await Promise.all(
    Array.from({ length: 200 }, (_, j) => {
      const q = rand() < 0.9 ? Buffer.from(pick()) : Buffer.from(pick()).reverse();
      const id = (sent + j) & 0xffff;
      if (q.length >= 2) q.writeUInt16BE(id, 0);
      if (q.length > 2) pending.set(id, Buffer.from(q));
      return send(clients[j % 4], q);
    }),
  );
  if (sent % 10_000 === 0) addon.clear(h);
  // Let the loop catch up before the next burst (the kernel drops past its buffer otherwise).
  await new Promise((r) => setImmediate(r));
}

// A last question, twice: a miss after a clear, then a hit; both must be its answer.
addon.clear(h);
const last = Buffer.from(pool[10] ?? Buffer.alloc(20));
last.writeUInt16BE(0xfffe, 0);
const client = clients[0];
for (let k = 0; k < 2 && client; k++) {
  const got = await new Promise<Buffer>((resolve, reject) => {
    const onMessage = (m: Buffer): void => {
      if (m.length < 2 || m.readUInt16BE(0) !== 0xfffe) return; // a late reply of the flood
      clearTimeout(t);
      client.off('message', onMessage);
      resolve(m);
    };
    const t = setTimeout(() => {
      client.off('message', onMessage);
      reject(new Error('no answer to the last question'));
    }, 5000);
    client.on('message', onMessage);
    void send(client, last);
  });
  if (!answerFor(last).equals(got)) bad++;
}
// The flood: a worker thread sends datagrams of the largest size, each another question, until
// the native threads have read FLOOD_READ of them (or FLOOD_MAX are sent), while this thread never
// returns to its event loop; the native threads read on meanwhile and can hand JS nothing until
// this thread is back. Counting reads rather than sends keeps it independent of how much CPU the
// reader gets: on a starved machine the kernel drops more, and the worker just sends longer.
const FLOOD_READ = 400;
const FLOOD_MAX = 200_000;
const before = addon.stats(h);
const rssBefore = process.memoryUsage.rss();
/** [0]: the worker is done (1); [1]: stop sending (1). */
const flag = new Int32Array(new SharedArrayBuffer(8));
const flooder = new Worker(
  `const { createSocket } = require('node:dgram');
   const { workerData: { port, count, flag } } = require('node:worker_threads');
   const s = createSocket('udp4');
   const big = Buffer.alloc(65507, 0x41);
   let sent = 0;
   const next = () => {
     if (sent === count || Atomics.load(flag, 1) === 1) {
       s.close(); Atomics.store(flag, 0, 1); Atomics.notify(flag, 0); return;
     }
     big.writeUInt32BE(sent++, 4);
     s.send(big, port, '127.0.0.1', next);
   };
   next();`,
  { eval: true, workerData: { port, count: FLOOD_MAX, flag } },
);
// Bounded: the worker stops when told, after FLOOD_MAX sends, or exits (an error) and sets the
// flag either way; this thread waits at most 120 s.
flooder.on('exit', () => {
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
});
const floodEnd = Date.now() + 120_000;
while (Atomics.load(flag, 0) === 0 && Date.now() < floodEnd) {
  if (addon.stats(h).misses - before.misses >= FLOOD_READ) Atomics.store(flag, 1, 1);
  Atomics.wait(flag, 0, 0, 10);
}
const rssFlood = process.memoryUsage.rss();
await new Promise((r) => setImmediate(r));
const stats = addon.stats(h);
addon.close(h);
for (const s of clients) s.close();
console.log(
  JSON.stringify({
    bad,
    replies,
    misses,
    hits: stats.hits,
    queueFull: stats.queueFull,
    truncated: stats.truncated,
    floodRead: stats.misses - before.misses,
    floodDropped: stats.queueFull - before.queueFull,
    floodRssMb: Math.round((rssFlood - rssBefore) / 2 ** 20),
  }),
);
