/** Prometheus metrics for the operator (one registry per process). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function makeMetrics() {
  const registry = new Registry();
  // Standard names (process_*, nodejs_*), as every Prometheus client library exports them.
  collectDefaultMetrics({ register: registry });
  const reg = { registers: [registry] };
  return {
    registry,
    reconciles: new Counter({
      name: 'crowbar_reconcile_total',
      help: 'Reconciles by controller and outcome (success, error, terminal).',
      labelNames: ['controller', 'outcome'] as const,
      ...reg,
    }),
    reconcileSeconds: new Histogram({
      name: 'crowbar_reconcile_duration_seconds',
      help: 'Time spent in one reconcile.',
      labelNames: ['controller'] as const,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      ...reg,
    }),
    queueDepth: new Gauge({
      name: 'crowbar_workqueue_depth',
      help: 'Keys waiting in a controller workqueue.',
      labelNames: ['controller'] as const,
      ...reg,
    }),
    queueRetries: new Counter({
      name: 'crowbar_workqueue_retries_total',
      help: 'Keys re-queued with backoff after a failed reconcile.',
      labelNames: ['controller'] as const,
      ...reg,
    }),
    leader: new Gauge({
      name: 'crowbar_leader',
      help: '1 while this instance holds the leader lease.',
      ...reg,
    }),
    cacheSynced: new Gauge({
      name: 'crowbar_informer_synced',
      help: '1 when the informer for a kind has listed and is watching.',
      labelNames: ['kind'] as const,
      ...reg,
    }),
  };
}

export type Metrics = ReturnType<typeof makeMetrics>;
