/** The annealer's Prometheus metrics. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export function annealerMetrics(registry: Registry) {
  const registers = [registry];
  return {
    runsStarted: new Counter({
      name: 'crowbar_runs_started_total',
      help: 'Jig runs started.',
      labelNames: ['jig'] as const,
      registers,
    }),
    runsFinished: new Counter({
      name: 'crowbar_runs_finished_total',
      help: 'Jig runs finished, by result (succeeded, failed, cancelled, skipped).',
      labelNames: ['jig', 'result'] as const,
      registers,
    }),
    runsInFlight: new Gauge({
      name: 'crowbar_runs_in_flight',
      help: 'Jig runs in flight.',
      registers,
    }),
    runnable: new Gauge({
      name: 'crowbar_noderoles_runnable',
      help: 'Noderoles in todo that could run now or wait for a slot.',
      registers,
    }),
    byState: new Gauge({
      name: 'crowbar_noderoles',
      help: 'Noderoles per state.',
      labelNames: ['state'] as const,
      registers,
    }),
    todoToTransition: new Histogram({
      name: 'crowbar_todo_to_transition_seconds',
      help: 'Time from a noderole entering todo to its run starting (as seen by this operator).',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120],
      registers,
    }),
    transitionSeconds: new Histogram({
      name: 'crowbar_transition_duration_seconds',
      help: 'Duration of runs (transition to active or error).',
      labelNames: ['jig'] as const,
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600, 3600],
      registers,
    }),
    statusWrites: new Counter({
      name: 'crowbar_noderole_status_writes_total',
      help: 'NodeRole status writes by outcome (ok, conflict, error, superseded: replaced by a newer decision before it was sent).',
      labelNames: ['outcome'] as const,
      registers,
    }),
    passes: new Counter({
      name: 'crowbar_annealer_passes_total',
      help: 'Annealer passes.',
      registers,
    }),
    unblockSeconds: new Histogram({
      name: 'crowbar_annealer_unblock_seconds',
      help: "From the annealer learning that a noderole's last parent went active to starting the noderole's run.",
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      registers,
    }),
    urgentWriteWait: new Histogram({
      name: 'crowbar_annealer_urgent_write_wait_seconds',
      help: 'How long a run start or end waited at the status-write gate before it was sent.',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      registers,
    }),
    urgentWriteSeconds: new Histogram({
      name: 'crowbar_annealer_urgent_write_seconds',
      help: 'How long the API server took to answer a run start or end (sent to answered).',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      registers,
    }),
    settles: new Counter({
      name: 'crowbar_annealer_settles_total',
      help: 'Settles by scope: full (every noderole at once), sweep (the changed ones and a slice of the periodic sweep over every node) or changed (those changed since the last pass and their descendants).',
      labelNames: ['scope'] as const,
      registers,
    }),
    passSeconds: new Histogram({
      name: 'crowbar_annealer_pass_duration_seconds',
      help: 'CPU time of one annealer pass (deciding, not writing).',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
  };
}

export type AnnealerMetrics = ReturnType<typeof annealerMetrics>;
