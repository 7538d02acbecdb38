/**
 * The DHCPv6 socket loop: one UDP socket on [::]:547 that joins All_DHCP_Relay_Agents_and_Servers
 * (ff02::1:2, RFC 8415 §7.1) on each provisioning interface; receive, decode, hand to handler6,
 * send the reply, count. Clients are answered at their link-local source on port 546 (the
 * datagram's scope id picks the interface), relays at their address on port 547.
 */
import dgram from 'node:dgram';
import type { Backend } from './backend.ts';
import { decode6, encode6, isRelay, msg6Name, type Packet6 } from './codec6.ts';
import { literalLookup } from './literal-lookup.ts';
import { SERVER_PORT, handle6, type Result6, type Server6Config } from './handler6.ts';
import type { Logger, Metrics } from './metrics.ts';

/** Larger datagrams are dropped before decoding. */
const MAX_DATAGRAM = 4096;
export const ALL_DHCP_SERVERS = 'ff02::1:2';

export interface Dhcp6ServerOptions {
  config: Server6Config;
  backend: Backend;
  metrics: Metrics;
  log: Logger;
  /** Interfaces to join ff02::1:2 on (e.g. br0). */
  interfaces: readonly string[];
  port?: number;
  /** Address to bind (default ::). */
  host?: string;
  onResult?: (r: Result6) => void;
}

function innermost(p: Packet6): number {
  let cur = p;
  while (isRelay(cur)) cur = cur.inner;
  return cur.type;
}

export class Dhcp6Server {
  private readonly o: Dhcp6ServerOptions;
  private readonly sock = dgram.createSocket({
    type: 'udp6',
    reuseAddr: true,
    ipv6Only: true,
    lookup: literalLookup(6),
  });
  private readonly counters = new Map<string, { inc(): void }>();

  constructor(o: Dhcp6ServerOptions) {
    this.o = o;
  }

  get port(): number {
    return this.sock.address().port;
  }

  async start(): Promise<void> {
    const s = this.sock;
    s.on('message', (msg, rinfo) => {
      this.onMessage(msg, rinfo.address);
    });
    s.on('error', (err) => {
      this.o.log.error({ err }, 'dhcp6 socket error');
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(this.o.port ?? SERVER_PORT, this.o.host ?? '::', () => {
        s.off('error', reject);
        resolve();
      });
    });
    for (const ifname of this.o.interfaces) s.addMembership(ALL_DHCP_SERVERS, `::%${ifname}`);
    s.setRecvBufferSize(256 * 1024);
    this.o.log.info(
      { port: this.port, interfaces: this.o.interfaces, server: this.o.config.serverIp6 },
      'dhcp6 listening',
    );
  }

  private count(type: string, outcome: string): void {
    const key = `${type}/${outcome}`;
    let c = this.counters.get(key);
    if (c === undefined) {
      c = this.o.metrics.outcomes6.labels({ type, outcome });
      this.counters.set(key, c);
    }
    c.inc();
  }

  private onMessage(msg: Buffer, from: string): void {
    const t0 = process.hrtime.bigint();
    const m = this.o.metrics;
    if (msg.length > MAX_DATAGRAM) {
      m.malformed6.inc();
      return;
    }
    const d = decode6(msg);
    if (!d.ok) {
      m.malformed6.inc();
      this.o.log.debug({ from, reason: d.reason }, 'malformed dhcp6 packet dropped');
      return;
    }
    const type = msg6Name(innermost(d.packet));
    m.received6.inc({ type, relayed: isRelay(d.packet) ? 'yes' : 'no' });
    let r: Result6;
    try {
      r = handle6(d.packet, from, { backend: this.o.backend, config: this.o.config });
    } catch (err) {
      // A handler bug must not take the server down; count it as dropped and log it.
      this.count(type, 'dropped');
      this.o.log.error({ err, from }, 'dhcp6 handler failed');
      return;
    }
    this.count(type, r.outcome);
    if (r.reply) {
      let bytes: Buffer;
      try {
        bytes = encode6(r.reply.packet);
      } catch (err) {
        this.o.log.error({ err, mac: r.mac, type }, 'dhcp6 reply does not encode');
        return;
      }
      const to = r.reply.address;
      this.sock.send(bytes, r.reply.port, to, (err) => {
        if (err) this.o.log.warn({ err, to, mac: r.mac, type }, 'dhcp6 reply not sent');
      });
    }
    m.latency6.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    if (this.o.log.isLevelEnabled('debug'))
      this.o.log.debug(
        {
          from,
          type,
          mac: r.mac,
          relayed: r.relayed,
          outcome: r.outcome,
          reason: r.reason,
          address: r.address,
          bootEnv: r.bootEnv,
        },
        'dhcp6 message handled',
      );
    this.o.onResult?.(r);
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => {
      try {
        this.sock.close(() => {
          r();
        });
      } catch {
        r();
      }
    });
  }
}
