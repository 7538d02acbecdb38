/**
 * The DHCP socket loop (like smee): receive, decode, hand to the handler, send the reply, count.
 *
 * Node's dgram cannot bind to a device nor read IP_PKTINFO, so a sidecar serves exactly one
 * provisioning interface, alone in its network namespace (or with hostNetwork on a host whose
 * only DHCP-facing interface it is). Two sockets share port 67: one on 0.0.0.0 receives the
 * broadcasts; one on the server address receives unicasts (renewals, relays) and sends every
 * reply, because Linux routes 255.255.255.255 out of the interface that owns the source address.
 */
import dgram from 'node:dgram';
import type { Backend, NetworkConfig } from './backend.ts';
import { literalLookup } from './literal-lookup.ts';
import { decode, encode, getIp, messageTypeName, Opt, getU8 } from './codec.ts';
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

  constructor(o: DhcpServerOptions) {
    this.o = o;
  }

  async start(): Promise<void> {
    const port = this.o.port ?? 67;
    const pxePort = this.o.pxePort ?? 4011;
    for (const [s, addr, p] of [
      [this.any, '0.0.0.0', port],
      [this.own, this.o.config.serverIp, port],
      ...(pxePort > 0 ? ([[this.pxe, this.o.config.serverIp, pxePort]] as const) : []),
    ] as const) {
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
    this.own.setBroadcast(true);
    // Bursts queue in the kernel rather than being dropped, up to recvBufferBytes (see there).
    const rcv = this.o.recvBufferBytes ?? 256 * 1024;
    for (const sock of [this.any, this.own]) sock.setRecvBufferSize(rcv);
    this.o.log.info({ port, server: this.o.config.serverIp }, 'dhcp listening');
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

  private onMessage(msg: Buffer, from: string, via: dgram.Socket): void {
    const t0 = process.hrtime.bigint();
    const m = this.o.metrics;
    if (msg.length > MAX_DATAGRAM) {
      m.malformed.inc();
      return;
    }
    const d = decode(msg);
    if (!d.ok) {
      m.malformed.inc();
      this.o.log.debug({ from, reason: d.reason }, 'malformed packet dropped');
      return;
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
      return;
    }
    this.outcome(tm, type, r.outcome);
    const ids = (): object => ({ mac: r.mac, xid: d.packet.xid.toString(16), type });
    if (r.reply) {
      let bytes: Buffer;
      try {
        bytes = encode(r.reply.packet, r.reply.maxSize);
      } catch (err) {
        this.o.log.error({ ...ids(), err }, 'reply does not encode');
        return;
      }
      const to = r.reply.address;
      via.send(bytes, r.reply.port, to, (err) => {
        if (err) this.o.log.warn({ ...ids(), err, to }, 'reply not sent');
      });
    }
    tm.latency.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    // Per-packet logs only when asked for: building them costs more than answering.
    if (this.o.log.isLevelEnabled('debug'))
      this.o.log.debug(
        {
          ...ids(),
          outcome: r.outcome,
          reason: r.reason,
          yiaddr: r.reply?.packet.yiaddr,
          bootEnv: r.bootEnv,
          requested: getIp(d.packet, Opt.REQUESTED_IP),
        },
        'dhcp message handled',
      );
    this.o.onResult?.(r);
  }

  async stop(): Promise<void> {
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
