/**
 * The DHCP socket loop (like smee): receive, decode, hand to the handler, send the reply, count.
 *
 * Port 67 is served by the native loop (native/udp4.c, ADR 0023) when it loads: one socket on
 * 0.0.0.0 that reads batches with recvmmsg and IP_PKTINFO and sends each batch's replies with one
 * sendmmsg, every reply from the server address. Otherwise by dgram (ADR 0006): dgram cannot read
 * IP_PKTINFO nor set a reply's source, so two sockets share port 67: one on 0.0.0.0 receives the
 * broadcasts; one on the server address receives unicasts (renewals, relays) and sends every
 * reply, because Linux routes 255.255.255.255 out of the interface that owns the source address.
 * Either way a sidecar serves one provisioning interface (ADR 0006).
 */
import dgram from 'node:dgram';
import type { Backend, NetworkConfig } from './backend.ts';
import { literalLookup } from './literal-lookup.ts';
import { decode, encode, getIp, intToIp, ipToInt, messageTypeName, Opt, getU8 } from './codec.ts';
import {
  FLAG_TRUNCATED,
  META,
  META_WORDS,
  SEND_META_WORDS,
  loadNativeDhcpUdp,
  type NativeDhcpHandle,
  type NativeDhcpUdp,
} from './native-udp.ts';
import { handle, type Result, type ServerConfig } from './handler.ts';
import type { Logger, Metrics } from './metrics.ts';
import type { Pool } from './pool.ts';

/** Larger datagrams are dropped before decoding (DHCP messages fit in 1500 bytes). */
const MAX_DATAGRAM = 4096;

export interface DhcpServerOptions {
  config: ServerConfig;
  backend: Backend;
  pool: () => Pool | undefined;
  /** The discovery pool of a network reached through relays (giaddr). */
  poolFor?: (net: NetworkConfig) => Pool | undefined;
  metrics: Metrics;
  log: Logger;
  port?: number;
  /**
   * Kernel receive buffer per socket (SO_RCVBUF; default 256 KiB, a few hundred DHCP messages).
   * A burst (a rack powering on) waits in it; under sustained overload it is also how stale the
   * oldest waiting message can get, so it must stay well under a client's retransmission timeout:
   * answering a DISCOVER the client has given up on costs as much as a fresh one and helps nobody.
   */
  recvBufferBytes?: number;
  /** The PXE boot-server port for proxyDHCP (default 4011; 0: none). */
  pxePort?: number;
  /** Called after each handled message (for the acknowledgement and tests). */
  onResult?: (r: Result) => void;
  now?: () => number;
  /**
   * `native` (default): the batched C loop when it loads, else dgram with a log line saying why;
   * `dgram`: dgram outright.
   */
  engine?: 'native' | 'dgram';
  /** Where to load the native addon from (tests of the fallback). */
  nativePath?: string;
}

function senderText(from: string | number): string {
  return typeof from === 'number' ? intToIp(from) : from;
}

/** A reply ready for the kernel. */
interface Outgoing {
  bytes: Buffer;
  address: string;
  port: number;
  /** Its message type's latency histogram, observed once the reply is with the kernel. */
  latency: { observe(v: number): void };
}

/** Per-type metric children, looked up once (prom-client hashes the labels on every call). */
interface TypeMetrics {
  received: { inc(): void };
  latency: { observe(v: number): void };
  outcomes: Map<string, { inc(): void }>;
}

export class DhcpServer {
  private readonly o: DhcpServerOptions;
  private readonly byType = new Map<string, TypeMetrics>();
  private readonly any = dgram.createSocket({
    type: 'udp4',
    reuseAddr: true,
    lookup: literalLookup(4),
  });
  private readonly own = dgram.createSocket({
    type: 'udp4',
    reuseAddr: true,
    lookup: literalLookup(4),
  });
  /** PXE boot-server port 4011 (proxyDHCP REQUESTs from iPXE); replies leave from it too. */
  private readonly pxe = dgram.createSocket({
    type: 'udp4',
    reuseAddr: true,
    lookup: literalLookup(4),
  });

  private native: { udp: NativeDhcpUdp; handle: NativeDhcpHandle } | undefined;
  /** The server address as sendmmsg wants it: every reply's source. */
  private readonly serverIpInt: number;
  /** One batch's replies' send words, reused (a batch holds at most 64 datagrams). */
  private sendMeta = new Uint32Array(64 * SEND_META_WORDS);

  constructor(o: DhcpServerOptions) {
    this.o = o;
    this.serverIpInt = ipToInt(o.config.serverIp) >>> 0;
  }

  /** Which engine serves port 67 (after start). */
  get engine(): 'native' | 'dgram' {
    return this.native ? 'native' : 'dgram';
  }

  async start(): Promise<void> {
    const port = this.o.port ?? 67;
    const pxePort = this.o.pxePort ?? 4011;
    // Bursts queue in the kernel rather than being dropped, up to recvBufferBytes (see there).
    const rcv = this.o.recvBufferBytes ?? 256 * 1024;
    if ((this.o.engine ?? 'native') === 'native') {
      const loaded = loadNativeDhcpUdp(this.o.nativePath);
      if ('binding' in loaded) {
        const udp = loaded.binding;
        const handle = udp.open('0.0.0.0', port, rcv, (data, meta, n) => {
          this.onBatch(data, meta, n);
        });
        this.native = { udp, handle };
      } else {
        this.o.log.warn(
          { err: loaded.error },
          'native DHCP UDP addon not loaded; serving with dgram',
        );
      }
    }
    this.o.metrics.udpEngine.set({ engine: this.engine }, 1);
    const sockets: [dgram.Socket, string, number][] = this.native
      ? []
      : [
          [this.any, '0.0.0.0', port],
          [this.own, this.o.config.serverIp, port],
        ];
    if (pxePort > 0) sockets.push([this.pxe, this.o.config.serverIp, pxePort]);
    for (const [s, addr, p] of sockets) {
      s.on('message', (msg, rinfo) => {
        this.onMessage(msg, rinfo.address, s === this.pxe ? this.pxe : this.own);
      });
      s.on('error', (err) => {
        this.o.log.error({ err }, 'dhcp socket error');
      });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(p, addr, () => {
          s.off('error', reject);
          resolve();
        });
      });
    }
    if (!this.native) {
      this.own.setBroadcast(true);
      for (const sock of [this.any, this.own]) sock.setRecvBufferSize(rcv);
    }
    this.o.log.info(
      { port, server: this.o.config.serverIp, engine: this.engine },
      'dhcp listening',
    );
  }

  /** The port 67 socket's bound port (the native loop's, for port 0). */
  port(): number {
    if (this.native) return this.native.udp.port(this.native.handle);
    return this.any.address().port;
  }

  private metricsFor(type: string): TypeMetrics {
    let t = this.byType.get(type);
    if (t === undefined) {
      const m = this.o.metrics;
      t = {
        received: m.received.labels({ type }),
        latency: m.latency.labels({ type }),
        outcomes: new Map(),
      };
      this.byType.set(type, t);
    }
    return t;
  }

  private outcome(t: TypeMetrics, type: string, outcome: string): void {
    let c = t.outcomes.get(outcome);
    if (c === undefined) {
      c = this.o.metrics.outcomes.labels({ type, outcome });
      t.outcomes.set(outcome, c);
    }
    c.inc();
  }

  /** dgram: one datagram, its reply sent from `via`. */
  private onMessage(msg: Buffer, from: string, via: dgram.Socket): void {
    const t0 = performance.now();
    const out = this.answer(msg, from, t0);
    if (out === undefined) return;
    via.send(out.bytes, out.port, out.address, (err) => {
      if (err) this.o.log.warn({ err, to: out.address }, 'reply not sent');
    });
    out.latency.observe((performance.now() - t0) / 1000);
  }

  /**
   * The native loop: one call per batch read; the batch's replies leave in one sendmmsg, each
   * from the server address. Handling times are observed once the batch is sent.
   */
  private onBatch(data: Buffer, meta: Uint32Array, n: number): void {
    const native = this.native;
    if (native === undefined) return;
    const t0 = performance.now();
    this.o.metrics.udpBatches.inc();
    const replies: Buffer[] = [];
    const latency: Outgoing['latency'][] = [];
    if (this.sendMeta.length < n * SEND_META_WORDS)
      this.sendMeta = new Uint32Array(n * SEND_META_WORDS);
    const sm = this.sendMeta;
    for (let i = 0; i < n; i++) {
      const w = i * META_WORDS;
      const off = meta[w + META.OFFSET] ?? 0;
      const len = meta[w + META.LENGTH] ?? 0;
      if (((meta[w + META.FLAGS] ?? 0) & FLAG_TRUNCATED) !== 0) {
        this.o.metrics.malformed.inc();
        continue;
      }
      const out = this.answer(data.subarray(off, off + len), meta[w + META.SOURCE] ?? 0, t0);
      if (out === undefined) continue;
      const k = replies.length;
      const dst = ipToInt(out.address);
      if (Number.isNaN(dst)) {
        this.o.log.warn({ to: out.address }, 'reply not sent');
        continue;
      }
      replies.push(out.bytes);
      sm[k * SEND_META_WORDS] = dst >>> 0;
      sm[k * SEND_META_WORDS + 1] = out.port;
      sm[k * SEND_META_WORDS + 2] = this.serverIpInt;
      latency.push(out.latency);
    }
    if (replies.length === 0) return;
    const sent = native.udp.send(native.handle, replies, sm, replies.length);
    if (sent < replies.length)
      this.o.log.warn({ replies: replies.length, sent }, 'replies not sent');
    const dt = (performance.now() - t0) / 1000;
    for (const h of latency) h.observe(dt);
  }

  /**
   * Decodes, handles and encodes one message; counts it. `from` is the sender (a dotted quad, or
   * the native loop's host-order integer), used only in debug logs.
   */
  private answer(msg: Buffer, from: string | number, t0: number): Outgoing | undefined {
    const m = this.o.metrics;
    if (msg.length > MAX_DATAGRAM) {
      m.malformed.inc();
      return undefined;
    }
    const d = decode(msg);
    if (!d.ok) {
      m.malformed.inc();
      if (this.o.log.isLevelEnabled('debug'))
        this.o.log.debug({ from: senderText(from), reason: d.reason }, 'malformed packet dropped');
      return undefined;
    }
    const type = messageTypeName(getU8(d.packet, Opt.MESSAGE_TYPE));
    const tm = this.metricsFor(type);
    tm.received.inc();
    let r: Result;
    try {
      r = handle(d.packet, {
        backend: this.o.backend,
        pool: this.o.pool(),
        ...(this.o.poolFor ? { poolFor: this.o.poolFor } : {}),
        config: this.o.config,
        now: this.o.now?.() ?? Date.now(),
      });
    } catch (err) {
      // A handler bug must not take the server down; count it as dropped and log it.
      this.outcome(tm, type, 'dropped');
      this.o.log.error({ err, xid: d.packet.xid }, 'handler failed');
      return undefined;
    }
    this.outcome(tm, type, r.outcome);
    let out: Outgoing | undefined;
    if (r.reply) {
      try {
        out = {
          bytes: encode(r.reply.packet, r.reply.maxSize),
          address: r.reply.address,
          port: r.reply.port,
          latency: tm.latency,
        };
      } catch (err) {
        this.o.log.error(
          { mac: r.mac, xid: d.packet.xid.toString(16), type, err },
          'reply does not encode',
        );
      }
    } else {
      tm.latency.observe((performance.now() - t0) / 1000);
    }
    // Per-packet logs only when asked for: building them costs more than answering.
    if (this.o.log.isLevelEnabled('debug'))
      this.o.log.debug(
        {
          mac: r.mac,
          xid: d.packet.xid.toString(16),
          type,
          from: senderText(from),
          outcome: r.outcome,
          reason: r.reason,
          yiaddr: r.reply?.packet.yiaddr,
          bootEnv: r.bootEnv,
          requested: getIp(d.packet, Opt.REQUESTED_IP),
        },
        'dhcp message handled',
      );
    this.o.onResult?.(r);
    return out;
  }

  async stop(): Promise<void> {
    // Batches still queued for JS are dropped (onBatch sees no loop).
    if (this.native) this.native.udp.close(this.native.handle);
    this.native = undefined;
    await Promise.all(
      [this.any, this.own, this.pxe].map(
        (s) =>
          new Promise<void>((r) => {
            try {
              s.close(() => {
                r();
              });
            } catch {
              r();
            }
          }),
      ),
    );
  }
}
