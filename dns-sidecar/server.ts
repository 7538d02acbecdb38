/**
 * The socket loops (smee's shape): UDP and TCP on every listen address, each message through
 * handleMessage, nothing thrown out of a loop. TCP follows RFC 7766: length-prefixed messages,
 * pipelined queries answered in order, an idle timeout, a cap on connections, and reading paused
 * while a client does not read its answers.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket as TcpSocket } from 'node:net';
import type { Logger } from 'pino';
import { AnswerCache } from './answer-cache.ts';
import { HEADER } from './codec.ts';
import { handleMessage, type Handled, type Transport } from './handler.ts';
import { DnsMetrics, DURATION_BUCKETS, type Tally } from './metrics.ts';
import { loadNativeUdp, type NativeHandle, type NativeUdp } from './native-udp.ts';
import { QTYPE, type ZoneSet } from './resolver.ts';

export interface Listen {
  host: string;
  port: number;
}

export interface ServerOptions {
  listen: readonly Listen[];
  log: Logger;
  metrics: DnsMetrics;
  /** The zones being served now (swapped atomically on every rebuild). */
  zones: () => ZoneSet;
  transferAllowed: (remote: string) => boolean;
  /** RFC 7766 §6.2.3: close idle connections (default 10 s). */
  tcpIdleMs?: number;
  maxTcpConnections?: number;
  /** Bytes of finished answers kept per transport (answer-cache.ts; default 32 MiB, 0 disables). */
  answerCacheBytes?: number;
  /** Serve TCP too (default); a UDP worker thread serves UDP only. */
  tcp?: boolean;
  /**
   * SO_REUSEPORT on the UDP sockets, so that worker threads bind the same address and the kernel
   * spreads the clients over them (udp-workers.ts).
   */
  reusePort?: boolean;
  /**
   * `native`: UDP through the native loop (native-udp.ts, ADR 0020) with this many threads when
   * the addon loads, else dgram (logged); `dgram` (default): Node's dgram sockets.
   */
  udpEngine?: 'native' | 'dgram';
  /** Threads of the native loop per listen address (default 1). */
  udpThreads?: number;
  /** Where the native addon is (default: where `make native` puts it). */
  nativeAddon?: string;
}

/** One native loop and the counts of it already added to the metrics. */
interface NativeLoop {
  handle: NativeHandle;
  seen: { tallies: number[]; buckets: number[]; sum: number; count: number };
  seenDrops: { queueFull: number; truncated: number; batches: number };
}

/** A cached answer with the tally it is counted on (no label lookup per query). */
interface Entry {
  response: Buffer;
  tally: Tally;
}

/**
 * dgram resolves the destination of every send through `lookup`, by default dns.lookup, which
 * answers an IP literal on the next tick. Our destinations are always the literal address a query
 * came from, so this lookup hands it straight back.
 */
function literalLookup(family: 4 | 6) {
  return (
    address: string,
    _options: unknown,
    cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
  ): void => {
    cb(null, address, family);
  };
}

/** Pause reading from a TCP client whose unread answers pass this many bytes. */
const TCP_WRITE_HIGH_WATER = 1 << 20;

export class DnsServer {
  private readonly opts: ServerOptions;
  private readonly udp: Socket[] = [];
  private readonly tcp: Server[] = [];
  private readonly conns = new Set<TcpSocket>();
  private readonly caches: Record<Transport, AnswerCache<Entry, ZoneSet>>;
  private readonly cacheOn: boolean;
  private readonly durations: Record<Transport, ReturnType<DnsMetrics['durations']>>;
  /** The bound addresses (port 0 resolved), in listen order. */
  readonly bound: Listen[] = [];
  /** What serves UDP: `native` only once the addon has loaded. */
  readonly udpEngine: 'native' | 'dgram';
  private readonly native: NativeUdp | undefined;
  private readonly loops: NativeLoop[] = [];
  /** The zone set the native tables hold answers of. */
  private nativeZones: ZoneSet | undefined;
  /** Tallies by the id the native table stores with each answer. */
  private readonly tallyIds = new Map<Tally, number>();
  private readonly tallyList: Tally[] = [];

  constructor(opts: ServerOptions) {
    this.opts = opts;
    const bytes = opts.answerCacheBytes ?? 32 << 20;
    this.cacheOn = bytes > 0;
    this.caches = { udp: new AnswerCache(bytes), tcp: new AnswerCache(bytes) };
    opts.metrics.watchCache(() => this.cacheStats());
    this.durations = { udp: opts.metrics.durations('udp'), tcp: opts.metrics.durations('tcp') };
    if (opts.udpEngine === 'native') {
      const n = loadNativeUdp(opts.nativeAddon);
      if ('binding' in n) {
        this.native = n.binding;
      } else {
        opts.log.warn({ err: n.error }, 'native UDP addon not loaded; serving UDP with dgram');
      }
    }
    this.udpEngine = this.native ? 'native' : 'dgram';
    opts.metrics.udpEngine.labels(this.udpEngine).set(1);
    if (this.native) {
      opts.metrics.syncFrom(() => {
        this.syncNative();
      });
    }
  }

  /**
   * Tells the native loops that the zone set changed, so that no answer from the previous one is
   * served from their tables (a dgram server notices on its next query; the native loops answer
   * hits without asking JS, so they must be told).
   */
  zonesChanged(): void {
    const zones = this.opts.zones();
    if (!this.native || zones === this.nativeZones) return;
    this.nativeZones = zones;
    for (const l of this.loops) this.native.clear(l.handle);
  }

  /** Adds what the native loops counted since the last scrape to the tallies and buckets. */
  private syncNative(): void {
    const native = this.native;
    if (!native) return;
    const d = this.durations.udp;
    for (const l of this.loops) {
      const st = native.stats(l.handle);
      for (const [id, v] of st.tallies.entries()) {
        const t = this.tallyList[id];
        if (v === undefined || t === undefined) continue;
        t.n += v - (l.seen.tallies[id] ?? 0);
        l.seen.tallies[id] = v;
      }
      for (const [i, v] of st.buckets.entries()) {
        d.buckets[i] = (d.buckets[i] ?? 0) + v - (l.seen.buckets[i] ?? 0);
        l.seen.buckets[i] = v;
      }
      d.sum += st.sum - l.seen.sum;
      d.count += st.count - l.seen.count;
      l.seen.sum = st.sum;
      l.seen.count = st.count;
      const drops = this.opts.metrics.dropped;
      if (st.queueFull > l.seenDrops.queueFull) {
        drops.labels('udp', 'queue-full').inc(st.queueFull - l.seenDrops.queueFull);
      }
      if (st.truncated > l.seenDrops.truncated) {
        drops.labels('udp', 'truncated').inc(st.truncated - l.seenDrops.truncated);
      }
      if (st.batches > l.seenDrops.batches) {
        this.opts.metrics.udpBatches.inc(st.batches - l.seenDrops.batches);
      }
      l.seenDrops = { queueFull: st.queueFull, truncated: st.truncated, batches: st.batches };
    }
  }

  /** Cache hits and misses per transport (for the metrics collector). */
  cacheStats(): Record<Transport, { hits: number; misses: number; entries: number }> {
    const s = (c: AnswerCache<Entry, ZoneSet>) => ({
      hits: c.hits,
      misses: c.misses,
      entries: c.size,
    });
    const udp = s(this.caches.udp);
    const native = this.native;
    if (native) {
      for (const l of this.loops) {
        const st = native.stats(l.handle);
        udp.hits += st.hits;
        udp.misses += st.misses;
        udp.entries += st.entries;
      }
    }
    return { udp, tcp: s(this.caches.tcp) };
  }

  private record(transport: Transport, h: Handled, t0: number): void {
    const m = this.opts.metrics;
    if (h.outcome === 'drop') {
      m.dropped.labels(transport, h.reason ?? 'unknown').inc();
      return;
    }
    if (h.outcome === 'transfer' || (h.reason?.startsWith('xfr') ?? false)) {
      m.transfers.labels(h.zone ?? 'none', h.outcome === 'transfer' ? 'ok' : 'refused').inc();
    }
    m.query(transport, h.qtype, h.rcode);
    m.observe(transport, (performance.now() - t0) / 1000);
  }

  /**
   * The answer to one message: from the cache when the same question (all bytes but the ID) was
   * answered from the same zones before, else from handleMessage. One Buffer (the common case,
   * without an array) or a list (zone transfers); empty when the message is dropped.
   */
  private handle(buf: Buffer, transport: Transport, remote: string): Buffer | Buffer[] {
    const t0 = performance.now();
    const zones = this.opts.zones();
    let key: string | undefined;
    let cache: AnswerCache<Entry, ZoneSet> | undefined;
    if (this.cacheOn && buf.length > HEADER) {
      cache = this.caches[transport];
      cache.use(zones);
      key = buf.toString('latin1', 2);
      const hit = cache.get(key);
      if (hit !== undefined) {
        const out = Buffer.allocUnsafe(hit.response.length);
        hit.response.copy(out);
        out[0] = buf[0] ?? 0;
        out[1] = buf[1] ?? 0;
        hit.tally.n++;
        DnsMetrics.observeInto(this.durations[transport], (performance.now() - t0) / 1000);
        return out;
      }
    }
    const { h, tally } = this.answer(buf, transport, remote, zones, t0);
    const first = h.responses[0];
    if (cache !== undefined && key !== undefined && first !== undefined && tally !== undefined) {
      cache.set(key, { response: first, tally });
    }
    return h.responses.length === 1 && first !== undefined ? first : h.responses;
  }

  /**
   * handleMessage with the metrics recorded; `tally` is set when the single response may be
   * cached: only answers that depend on nothing but the message and the zones, so never zone
   * transfers (the client's address decides those) and never drops.
   */
  private answer(
    buf: Buffer,
    transport: Transport,
    remote: string,
    zones: ZoneSet,
    t0: number,
  ): { h: Handled; tally: Tally | undefined } {
    let h: Handled;
    try {
      h = handleMessage(buf, {
        zones,
        transport,
        remote,
        transferAllowed: this.opts.transferAllowed,
      });
    } catch (err) {
      // handleMessage does not throw; if it ever does, the loop survives and the cause is logged.
      this.opts.log.error({ err, transport }, 'message handling failed');
      h = { responses: [], outcome: 'drop', reason: 'internal' };
    }
    this.record(transport, h, t0);
    const cacheable =
      this.cacheOn &&
      buf.length > HEADER &&
      h.responses.length === 1 &&
      (h.outcome === 'answer' || h.outcome === 'error') &&
      h.qtype !== QTYPE.AXFR &&
      h.qtype !== QTYPE.IXFR;
    return {
      h,
      tally: cacheable ? this.opts.metrics.tally(transport, h.qtype, h.rcode) : undefined,
    };
  }

  /** The questions the native loop's table did not hold, answered here (one call per batch). */
  private nativeMisses(
    native: NativeUdp,
    handle: NativeHandle,
    messages: Buffer[],
    addresses: string[],
    ports: number[],
  ): void {
    this.zonesChanged();
    const zones = this.opts.zones();
    for (const [i, msg] of messages.entries()) {
      const address = addresses[i] ?? '';
      const port = ports[i] ?? 0;
      const { h, tally } = this.answer(msg, 'udp', address, zones, performance.now());
      for (const r of h.responses) native.send(handle, r, address, port);
      const first = h.responses[0];
      if (tally === undefined || first === undefined) continue;
      let id = this.tallyIds.get(tally);
      if (id === undefined) {
        id = this.tallyList.length;
        this.tallyList.push(tally);
        this.tallyIds.set(tally, id);
      }
      if (id < native.maxTallies) native.put(handle, msg, first, id);
    }
  }

  async start(): Promise<void> {
    for (const l of this.opts.listen) {
      // TCP first so that port 0 picks one port that UDP then binds too.
      const port = this.opts.tcp === false ? l.port : await this.startTcp(l);
      if (this.native) this.startNativeUdp(this.native, { host: l.host, port });
      else await this.startUdp({ host: l.host, port });
      this.bound.push({ host: l.host, port: port === 0 ? this.nativePort(port) : port });
    }
  }

  /** The port the last native loop bound (for a UDP-only server asked for port 0). */
  private nativePort(fallback: number): number {
    const last = this.loops.at(-1);
    return this.native && last ? this.native.port(last.handle) : fallback;
  }

  private startNativeUdp(native: NativeUdp, l: Listen): void {
    const handle: NativeHandle = native.open(
      l.host,
      l.port,
      this.opts.udpThreads ?? 1,
      this.cacheOn ? (this.opts.answerCacheBytes ?? 32 << 20) : 0,
      DURATION_BUCKETS,
      (messages, addresses, ports) => {
        this.nativeMisses(native, handle, messages, addresses, ports);
      },
    );
    this.nativeZones = this.opts.zones();
    this.loops.push({
      handle,
      seen: { tallies: [], buckets: [], sum: 0, count: 0 },
      seenDrops: { queueFull: 0, truncated: 0, batches: 0 },
    });
  }

  private startUdp(l: Listen): Promise<void> {
    const v6 = isIPv6(l.host);
    const sock = createSocket({
      type: v6 ? 'udp6' : 'udp4',
      lookup: literalLookup(v6 ? 6 : 4),
      reusePort: this.opts.reusePort ?? false,
    });
    sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      const out = this.handle(msg, 'udp', rinfo.address);
      // No per-send callback: it costs a request object per answer; a failed send surfaces as the
      // socket's 'error' event, logged below.
      if (Buffer.isBuffer(out)) sock.send(out, rinfo.port, rinfo.address);
      else for (const r of out) sock.send(r, rinfo.port, rinfo.address);
    });
    sock.on('error', (err) => {
      this.opts.log.error({ err, host: l.host, port: l.port }, 'udp socket error');
    });
    this.udp.push(sock);
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(l.port, l.host, () => {
        sock.off('error', reject);
        resolve();
      });
    });
  }

  private startTcp(l: Listen): Promise<number> {
    const idle = this.opts.tcpIdleMs ?? 10_000;
    const max = this.opts.maxTcpConnections ?? 512;
    const server = createServer((sock) => {
      if (this.conns.size >= max) {
        sock.destroy();
        return;
      }
      this.conns.add(sock);
      this.opts.metrics.tcpConnections.set(this.conns.size);
      sock.setNoDelay(true);
      sock.setTimeout(idle, () => sock.destroy());
      const remote = sock.remoteAddress ?? '';
      let pending: Buffer = Buffer.alloc(0);
      sock.on('data', (chunk: Buffer) => {
        pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
        let off = 0;
        sock.cork();
        // Each pass consumes one complete message, so the loop is bounded by the chunk's size.
        while (pending.length - off >= 2) {
          const len = pending.readUInt16BE(off);
          if (pending.length - off - 2 < len) break;
          const msg = pending.subarray(off + 2, off + 2 + len);
          off += 2 + len;
          const out = this.handle(msg, 'tcp', remote);
          for (const r of Buffer.isBuffer(out) ? [out] : out) {
            const prefix = Buffer.allocUnsafe(2);
            prefix.writeUInt16BE(r.length, 0);
            sock.write(prefix);
            sock.write(r);
          }
        }
        sock.uncork();
        pending = off === pending.length ? Buffer.alloc(0) : Buffer.from(pending.subarray(off));
        if (sock.writableLength > TCP_WRITE_HIGH_WATER) {
          sock.pause();
          sock.once('drain', () => sock.resume());
        }
      });
      sock.on('error', (err) => {
        this.opts.log.debug({ err, remote }, 'tcp connection error');
      });
      sock.on('close', () => {
        this.conns.delete(sock);
        this.opts.metrics.tcpConnections.set(this.conns.size);
      });
    });
    server.on('error', (err) => {
      this.opts.log.error({ err, host: l.host, port: l.port }, 'tcp server error');
    });
    this.tcp.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: l.port, host: l.host }, () => {
        server.off('error', reject);
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : l.port);
      });
    });
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy();
    for (const l of this.loops) this.native?.close(l.handle);
    await Promise.all([
      ...this.udp.map(
        (s) =>
          new Promise<void>((r) => {
            s.close(() => {
              r();
            });
          }),
      ),
      ...this.tcp.map(
        (s) =>
          new Promise<void>((r) => {
            s.close(() => {
              r();
            });
          }),
      ),
    ]);
  }
}
