/** Prometheus metrics for the webhook server (one registry per process). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PLURALS } from '../generated/crowbar.ts';

export function makeWebhookMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry }); // standard process_*, nodejs_* names
  }
  const reg = { registers: [registry] };
  return {
    registry,
    requests: new Counter({
      name: 'crowbar_admission_requests_total',
      help: 'Admission requests by kind, operation and result (allowed, denied, error, malformed).',
      labelNames: ['kind', 'operation', 'result'] as const,
      ...reg,
    }),
    seconds: new Histogram({
      name: 'crowbar_admission_duration_seconds',
      help: 'Time to answer one admission request.',
      labelNames: ['kind'] as const,
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      ...reg,
    }),
    freshReads: new Counter({
      name: 'crowbar_admission_fresh_reads_total',
      help: 'Decisions made on fresh lists: cached refusals checked again (confirmed, overturned, failed) and deletions (delete).',
      labelNames: ['outcome'] as const,
      ...reg,
    }),
    freshLists: new Counter({
      name: 'crowbar_admission_fresh_lists_total',
      help: 'Lists of one kind made for fresh decisions (a refusal checked again, a deletion, a request before the caches synced).',
      labelNames: ['kind'] as const,
      ...reg,
    }),
    synced: new Gauge({
      name: 'crowbar_webhook_informer_synced',
      help: '1 when the informer for a kind has listed and is watching.',
      labelNames: ['kind'] as const,
      ...reg,
    }),
  };
}

export type WebhookMetrics = ReturnType<typeof makeWebhookMetrics>;

/** The kinds a label may name; anything else a client sends counts as `other`. */
const KIND_LABELS: ReadonlySet<string> = new Set(Object.keys(PLURALS));

/**
 * A request's kind as a metric label: one of Crowbar's kinds or `other`. The kind comes from the
 * request body, which anyone who reaches the server can write: unbounded label values would grow
 * the registry (and every scrape) without limit.
 */
export function kindLabel(kind: string): string {
  return KIND_LABELS.has(kind) ? kind : 'other';
}
