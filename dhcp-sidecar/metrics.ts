/** Prometheus metrics and the pino root logger of the DHCP/boot sidecar (one registry each). */
import { pino, type Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type { Logger };

export function rootLogger(name: string): Logger {
  return pino({
    name,
    level: process.env['LOG_LEVEL'] ?? 'info',
    redact: { paths: ['*.token', 'token'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

export function makeMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry }); // standard process_*, nodejs_* names
  const reg = { registers: [registry] };
  return {
    registry,
    received: new Counter({
      name: 'crowbar_dhcp_received_total',
      help: 'DHCP messages received, by message type.',
      labelNames: ['type'] as const,
      ...reg,
    }),
    outcomes: new Counter({
      name: 'crowbar_dhcp_outcomes_total',
      help: 'What became of each message: offered, acked, nakked, informed, released, declined, ignored, dropped.',
      labelNames: ['type', 'outcome'] as const,
      ...reg,
    }),
    malformed: new Counter({
      name: 'crowbar_dhcp_malformed_total',
      help: 'Packets that did not decode (counted and dropped).',
      ...reg,
    }),
    latency: new Histogram({
      name: 'crowbar_dhcp_handle_seconds',
      help: 'Time from receiving a message to handing its reply to the kernel.',
      labelNames: ['type'] as const,
      buckets: [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05],
      ...reg,
    }),
    received6: new Counter({
      name: 'crowbar_dhcp6_received_total',
      help: 'DHCPv6 messages received, by client message type and whether a relay forwarded them.',
      labelNames: ['type', 'relayed'] as const,
      ...reg,
    }),
    outcomes6: new Counter({
      name: 'crowbar_dhcp6_outcomes_total',
      help: 'What became of each DHCPv6 message: advertised, replied, released, declined, confirmed, informed, ignored, dropped.',
      labelNames: ['type', 'outcome'] as const,
      ...reg,
    }),
    malformed6: new Counter({
      name: 'crowbar_dhcp6_malformed_total',
      help: 'DHCPv6 packets (relayed or not) that did not decode (counted and dropped).',
      ...reg,
    }),
    latency6: new Histogram({
      name: 'crowbar_dhcp6_handle_seconds',
      help: 'Time from receiving a DHCPv6 message to handing its reply to the kernel.',
      buckets: [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05],
      ...reg,
    }),
    tftpTransfers: new Counter({
      name: 'crowbar_tftp_transfers_total',
      help: 'TFTP read requests by outcome (ok, error, aborted, timeout).',
      labelNames: ['outcome'] as const,
      ...reg,
    }),
    httpRequests: new Counter({
      name: 'crowbar_boot_http_requests_total',
      help: 'Boot HTTP requests by route and status code.',
      labelNames: ['route', 'code'] as const,
      ...reg,
    }),
    acks: new Counter({
      name: 'crowbar_dhcp_bootenv_acks_total',
      help: 'Node status writes recording an applied boot environment, by outcome.',
      labelNames: ['outcome'] as const,
      ...reg,
    }),
    udpEngine: new Gauge({
      name: 'crowbar_dhcp_udp_engine',
      help: 'What serves DHCPv4 on port 67: 1 for native (the batched C loop) or dgram (Node, the fallback).',
      labelNames: ['engine'] as const,
      ...reg,
    }),
    udpBatches: new Counter({
      name: 'crowbar_dhcp_udp_batches_total',
      help: 'Batches the native loop handed to JS (one recvmmsg each); received over batches is the mean batch.',
      ...reg,
    }),
    leases: new Gauge({
      name: 'crowbar_dhcp_pool_leases',
      help: 'Live leases in the discovery pool.',
      ...reg,
    }),
  };
}

export type Metrics = ReturnType<typeof makeMetrics>;
