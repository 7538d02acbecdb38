/** Prometheus metrics of the sidecar (crowbar_dns_*), on a registry of its own. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * One label set's count of answered queries, bumped with `n++` on the hot path (prom-client's
 * `inc` hashes the labels on every call) and added to crowbar_dns_queries_total when scraped.
 */
export interface Tally {
  n: number;
  seen: number;
  readonly labels: readonly [transport: string, qtype: string, rcode: string];
}

/** The upper bounds of crowbar_dns_query_duration_seconds (the native UDP loop uses them too). */
export const DURATION_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25,
];

/** One transport's query durations: a count per bucket (the last is +Inf), their sum and count. */
export interface Durations {
  buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * crowbar_dns_query_duration_seconds, filled by `add`, which finds the bucket and bumps numbers
 * (prom-client's Histogram hashes and validates the labels on every `observe`). It is registered
 * as a metric of its own whose `get` gives the shape prom-client's histograms give, so /metrics
 * and the aggregation of the UDP workers' metrics read it as any histogram.
 */
class QueryDuration {
  readonly name = 'crowbar_dns_query_duration_seconds';
  readonly help = 'Time from a message read to its answer written.';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly byTransport = new Map<string, Durations>();
  /** Brings in counts kept elsewhere (the native UDP loop's) before they are read. */
  before: (() => void) | undefined;

  durations(transport: string): Durations {
    let d = this.byTransport.get(transport);
    if (!d) {
      d = { buckets: new Float64Array(DURATION_BUCKETS.length + 1), sum: 0, count: 0 };
      this.byTransport.set(transport, d);
    }
    return d;
  }

  static add(d: Durations, seconds: number): void {
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > (DURATION_BUCKETS[i] ?? Infinity)) i++;
    d.buckets[i] = (d.buckets[i] ?? 0) + 1;
    d.sum += seconds;
    d.count++;
  }

  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { labels: Record<string, string | number>; value: number; metricName: string }[];
  }> {
    this.before?.();
    const values = [];
    for (const [transport, d] of this.byTransport) {
      let cumulative = 0;
      for (const [i, le] of DURATION_BUCKETS.entries()) {
        cumulative += d.buckets[i] ?? 0;
        values.push({
          labels: { le, transport },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      }
      values.push({
        labels: { le: '+Inf', transport },
        value: d.count,
        metricName: `${this.name}_bucket`,
      });
      values.push({ labels: { transport }, value: d.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { transport }, value: d.count, metricName: `${this.name}_count` });
    }
    const { name, help, type, aggregator } = this;
    return Promise.resolve({ name, help, type, aggregator, values });
  }

  /** Zeroes the counts (the hot path keeps its Durations objects, so they are not replaced). */
  reset(): void {
    for (const d of this.byTransport.values()) {
      d.buckets.fill(0);
      d.sum = 0;
      d.count = 0;
    }
  }
}

/** Answer-cache counts of one transport since start. */
export interface CacheStats {
  hits: number;
  misses: number;
  entries: number;
}

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
  readonly duration: QueryDuration;
  readonly dropped: Counter<'transport' | 'reason'>;
  readonly serial: Gauge<'zone'>;
  readonly records: Gauge<'zone'>;
  readonly zones: Gauge;
  readonly transfers: Counter<'zone' | 'result'>;
  readonly notifies: Counter<'target' | 'result'>;
  readonly tcpConnections: Gauge;
  readonly rebuilds: Counter;
  readonly rebuildSeconds: Histogram;
  readonly cacheHits: Counter<'transport'>;
  readonly cacheMisses: Counter<'transport'>;
  readonly cacheEntries: Gauge<'transport'>;
  readonly udpEngine: Gauge<'engine'>;
  readonly udpBatches: Counter;
  /** Read at scrape time: the server's answer-cache counts (the hot path only bumps numbers). */
  private cacheStats: (() => Record<string, CacheStats>) | undefined;
  private sync: (() => void) | undefined;
  private readonly cacheSeen = new Map<string, number>();
  /** The hot path's tallies by label set (made once per set). */
  private readonly tallies = new Map<string, Tally>();

  /**
   * @param defaults the process metrics too (the main thread's registry; a UDP worker's has only
   *   the query path's metrics, which the main thread adds to its own when scraped).
   */
  constructor(defaults = true) {
    const registers = [this.registry];
    if (defaults) collectDefaultMetrics({ register: this.registry }); // process_*, nodejs_*
    const tallies = this.tallies;
    const sync = (): void => {
      this.sync?.();
    };
    this.queries = new Counter({
      name: 'crowbar_dns_queries_total',
      help: 'Queries answered, by transport, query type and rcode.',
      labelNames: ['transport', 'qtype', 'rcode'],
      registers,
      collect() {
        sync();
        for (const t of tallies.values()) {
          if (t.n === t.seen) continue;
          const [transport, qtype, rcode] = t.labels;
          this.labels(transport, qtype, rcode).inc(t.n - t.seen);
          t.seen = t.n;
        }
      },
    });
    this.duration = new QueryDuration();
    this.duration.before = sync;
    // A metric of our own shape (see QueryDuration); the registry only calls get() and reset().
    this.registry.registerMetric(this.duration as unknown as Histogram);
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
    // Counters that catch up with the server's plain numbers when scraped.
    const catchUp = (counter: Counter<'transport'>, field: 'hits' | 'misses') => {
      for (const [transport, st] of Object.entries(this.cacheStats?.() ?? {})) {
        const key = `${field}|${transport}`;
        const delta = st[field] - (this.cacheSeen.get(key) ?? 0);
        if (delta > 0) counter.labels(transport).inc(delta);
        this.cacheSeen.set(key, st[field]);
      }
    };
    this.cacheHits = new Counter({
      name: 'crowbar_dns_answer_cache_hits_total',
      help: 'Queries answered from the cache of finished answers, by transport.',
      labelNames: ['transport'],
      registers,
      collect() {
        catchUp(this, 'hits');
      },
    });
    this.cacheMisses = new Counter({
      name: 'crowbar_dns_answer_cache_misses_total',
      help: 'Queries not in the answer cache (decoded, resolved and encoded), by transport.',
      labelNames: ['transport'],
      registers,
      collect() {
        catchUp(this, 'misses');
      },
    });
    this.udpEngine = new Gauge({
      name: 'crowbar_dns_udp_engine',
      help: 'What serves UDP: 1 for native (the batched C loop) or dgram (Node, the fallback).',
      labelNames: ['engine'],
      aggregator: 'max',
      registers,
    });
    this.udpBatches = new Counter({
      name: 'crowbar_dns_udp_batches_total',
      help: 'Batches the native UDP loop read (one recvmmsg each); queries over batches is the mean batch.',
      registers,
    });
    const entries = (): Record<string, CacheStats> => this.cacheStats?.() ?? {};
    this.cacheEntries = new Gauge({
      name: 'crowbar_dns_answer_cache_entries',
      help: 'Finished answers held in the cache, by transport.',
      labelNames: ['transport'],
      registers,
      collect() {
        for (const [transport, st] of Object.entries(entries())) {
          this.labels(transport).set(st.entries);
        }
      },
    });
  }

  /**
   * Registers a function that, at scrape time, adds counts kept outside these objects (the native
   * UDP loop's, server.ts) to the tallies and duration buckets, before they are read.
   */
  syncFrom(fn: () => void): void {
    this.sync = fn;
  }

  /** Registers where the answer-cache counts are read from at scrape time. */
  watchCache(stats: () => Record<string, CacheStats>): void {
    this.cacheStats = stats;
  }

  /** Observes one query's handling time (seconds). */
  observe(transport: string, seconds: number): void {
    QueryDuration.add(this.duration.durations(transport), seconds);
  }

  /** The duration buckets of a transport, for a hot path that keeps them at hand. */
  durations(transport: string): Durations {
    return this.duration.durations(transport);
  }

  /** Adds one handling time (seconds) to a transport's buckets. */
  static observeInto(d: Durations, seconds: number): void {
    QueryDuration.add(d, seconds);
  }

  query(transport: string, qtype: number | undefined, rcode: number | undefined): void {
    this.tally(transport, qtype, rcode).n++;
  }

  /** The tally for these labels, made once (the answer cache keeps it per entry). */
  tally(transport: string, qtype: number | undefined, rcode: number | undefined): Tally {
    const key = `${transport}|${qtype ?? -1}|${rcode ?? -1}`;
    let t = this.tallies.get(key);
    if (!t) {
      t = { n: 0, seen: 0, labels: [transport, typeLabel(qtype), rcodeLabel(rcode)] };
      this.tallies.set(key, t);
    }
    return t;
  }
}
