/** Prometheus metrics of the sidecar (crowbar_dns_*), on a registry of its own. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const TYPE_NAMES: Record<number, string> = {
  1: 'A',
  2: 'NS',
  5: 'CNAME',
  6: 'SOA',
  12: 'PTR',
  15: 'MX',
  16: 'TXT',
  28: 'AAAA',
  33: 'SRV',
  43: 'DS',
  48: 'DNSKEY',
  65: 'HTTPS',
  251: 'IXFR',
  252: 'AXFR',
  255: 'ANY',
};
const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR',
  1: 'FORMERR',
  2: 'SERVFAIL',
  3: 'NXDOMAIN',
  4: 'NOTIMP',
  5: 'REFUSED',
  16: 'BADVERS',
};

/** A query type as a bounded label value. */
export function typeLabel(t: number | undefined): string {
  return t === undefined ? 'none' : (TYPE_NAMES[t] ?? 'other');
}

export function rcodeLabel(r: number | undefined): string {
  return r === undefined ? 'none' : (RCODE_NAMES[r] ?? 'other');
}

export class DnsMetrics {
  readonly registry = new Registry();
  readonly queries: Counter<'transport' | 'qtype' | 'rcode'>;
  readonly duration: Histogram<'transport'>;
  readonly dropped: Counter<'transport' | 'reason'>;
  readonly serial: Gauge<'zone'>;
  readonly records: Gauge<'zone'>;
  readonly zones: Gauge;
  readonly transfers: Counter<'zone' | 'result'>;
  readonly notifies: Counter<'target' | 'result'>;
  readonly tcpConnections: Gauge;
  readonly rebuilds: Counter;
  readonly rebuildSeconds: Histogram;
  /** Label lookups are a hash per call; the hot path reuses the children it has made. */
  private readonly queryChildren = new Map<string, Counter.Internal>();
  private readonly durationChildren = new Map<string, Histogram.Internal<'transport'>>();

  constructor(defaults = true) {
    const registers = [this.registry];
    if (defaults) collectDefaultMetrics({ register: this.registry }); // process_*, nodejs_*
    this.queries = new Counter({
      name: 'crowbar_dns_queries_total',
      help: 'Queries answered, by transport, query type and rcode.',
      labelNames: ['transport', 'qtype', 'rcode'],
      registers,
    });
    this.duration = new Histogram({
      name: 'crowbar_dns_query_duration_seconds',
      help: 'Time from a message read to its answer written.',
      labelNames: ['transport'],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
      registers,
    });
    this.dropped = new Counter({
      name: 'crowbar_dns_dropped_total',
      help: 'Messages dropped unanswered (short, undecodable, responses), by reason.',
      labelNames: ['transport', 'reason'],
      registers,
    });
    this.serial = new Gauge({
      name: 'crowbar_dns_zone_serial',
      help: 'The SOA serial each zone is served with.',
      labelNames: ['zone'],
      registers,
    });
    this.records = new Gauge({
      name: 'crowbar_dns_zone_records',
      help: 'Records in each zone.',
      labelNames: ['zone'],
      registers,
    });
    this.zones = new Gauge({ name: 'crowbar_dns_zones', help: 'Zones served.', registers });
    this.transfers = new Counter({
      name: 'crowbar_dns_transfers_total',
      help: 'Zone transfers, by zone and result (ok, refused).',
      labelNames: ['zone', 'result'],
      registers,
    });
    this.notifies = new Counter({
      name: 'crowbar_dns_notify_total',
      help: 'NOTIFY messages sent to secondaries, by target and result (ok, timeout, error).',
      labelNames: ['target', 'result'],
      registers,
    });
    this.tcpConnections = new Gauge({
      name: 'crowbar_dns_tcp_connections',
      help: 'Open TCP connections.',
      registers,
    });
    this.rebuilds = new Counter({
      name: 'crowbar_dns_rebuilds_total',
      help: 'Zone rebuilds from the backend.',
      registers,
    });
    this.rebuildSeconds = new Histogram({
      name: 'crowbar_dns_rebuild_seconds',
      help: 'Time to rebuild every zone from the backend.',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
  }

  /** Observes one query's handling time (seconds) on the transport's cached child. */
  observe(transport: string, seconds: number): void {
    let h = this.durationChildren.get(transport);
    if (!h) {
      h = this.duration.labels(transport);
      this.durationChildren.set(transport, h);
    }
    h.observe(seconds);
  }

  query(transport: string, qtype: number | undefined, rcode: number | undefined): void {
    const key = `${transport}|${qtype ?? -1}|${rcode ?? -1}`;
    let c = this.queryChildren.get(key);
    if (!c) {
      c = this.queries.labels(transport, typeLabel(qtype), rcodeLabel(rcode));
      this.queryChildren.set(key, c);
    }
    c.inc();
  }
}
