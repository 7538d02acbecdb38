import { AggregatorRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { DnsMetrics } from './metrics.ts';

describe('query metrics', () => {
  it('expose the hot path tallies and durations as Prometheus counters and a histogram', async () => {
    const m = new DnsMetrics(false);
    m.query('udp', 1, 0);
    m.tally('udp', 1, 0).n++;
    m.observe('udp', 0.00003);
    m.observe('udp', 0.002);
    const text = await m.registry.metrics();
    expect(text).toContain(
      'crowbar_dns_queries_total{transport="udp",qtype="A",rcode="NOERROR"} 2',
    );
    expect(text).toContain('# TYPE crowbar_dns_query_duration_seconds histogram');
    expect(text).toContain(
      'crowbar_dns_query_duration_seconds_bucket{le="0.00005",transport="udp"} 1',
    );
    expect(text).toContain(
      'crowbar_dns_query_duration_seconds_bucket{le="0.0025",transport="udp"} 2',
    );
    expect(text).toContain('crowbar_dns_query_duration_seconds_count{transport="udp"} 2');
    // A second scrape adds only what came after the first.
    m.query('udp', 1, 0);
    expect(await m.registry.metrics()).toContain(
      'crowbar_dns_queries_total{transport="udp",qtype="A",rcode="NOERROR"} 3',
    );
  });

  it('add up over the main thread and the UDP workers', async () => {
    const main = new DnsMetrics(false);
    const worker = new DnsMetrics(false);
    main.query('udp', 28, 3);
    main.observe('udp', 0.0001);
    worker.query('udp', 28, 3);
    worker.observe('udp', 0.3);
    const merged = AggregatorRegistry.aggregate([
      await main.registry.getMetricsAsJSON(),
      await worker.registry.getMetricsAsJSON(),
    ]);
    const text = await merged.metrics();
    expect(text).toContain(
      'crowbar_dns_queries_total{transport="udp",qtype="AAAA",rcode="NXDOMAIN"} 2',
    );
    expect(text).toContain(
      'crowbar_dns_query_duration_seconds_bucket{le="0.25",transport="udp"} 1',
    );
    expect(text).toContain(
      'crowbar_dns_query_duration_seconds_bucket{le="+Inf",transport="udp"} 2',
    );
  });
});
