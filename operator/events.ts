/**
 * Kubernetes Events for people (`kubectl describe`, `kubectl get events`). Events are written off
 * the hot path through a bounded queue with a global rate limit, like client-go's broadcaster:
 * when the annealer moves thousands of noderoles at once, excess events are dropped and counted
 * rather than slowing the state machine down.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import { kubeRequest } from './kube/request.ts';
import type { Logger } from './log.ts';

export interface EventTarget {
  kind: string;
  name: string;
  uid?: string | undefined;
  apiVersion?: string;
}

export interface Recorder {
  normal(target: EventTarget, reason: string, message: string): void;
  warning(target: EventTarget, reason: string, message: string): void;
}

interface Pending {
  target: EventTarget;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export class EventRecorder implements Recorder {
  private readonly kc: KubeConfig;
  private readonly queue: Pending[] = [];
  private tokens: number;
  private last = Date.now();
  private draining = false;
  private readonly dropped: Counter;
  private readonly opts: {
    namespace: string;
    component: string;
    perSecond: number;
    burst: number;
    maxQueue: number;
  };
  private readonly log: Logger;
  private readonly namespacePath: string;

  constructor(
    kc: KubeConfig,
    registry: Registry,
    log: Logger,
    opts: {
      namespace: string;
      component: string;
      perSecond?: number;
      burst?: number;
      maxQueue?: number;
    },
  ) {
    this.kc = kc;
    this.log = log.child({ component: 'events' });
    // A burst of one second's rate, not five: an Event costs the API server ~60% of a status
    // write (`make bench-write-cost`), and a full bucket's 100 landed at the start of every burst
    // of transitions, on the same cores as the run writes they describe (ADR 0031).
    this.opts = { perSecond: 20, burst: 20, maxQueue: 1000, ...opts };
    this.tokens = this.opts.burst;
    this.namespacePath = encodeURIComponent(this.opts.namespace);
    this.dropped = new Counter({
      name: 'crowbar_events_dropped_total',
      help: 'Kubernetes Events dropped by the rate limit or a full queue.',
      registers: [registry],
    });
    const queue = this.queue;
    new Gauge({
      name: 'crowbar_events_queued',
      help: 'Kubernetes Events admitted by the rate limit and not yet sent (sent one at a time).',
      registers: [registry],
      collect() {
        this.set(queue.length);
      },
    });
  }

  normal(target: EventTarget, reason: string, message: string): void {
    this.push({ target, type: 'Normal', reason, message });
  }

  warning(target: EventTarget, reason: string, message: string): void {
    this.push({ target, type: 'Warning', reason, message });
  }

  private push(p: Pending): void {
    this.refill();
    if (this.tokens < 1 || this.queue.length >= this.opts.maxQueue) {
      this.dropped.inc();
      return;
    }
    this.tokens -= 1;
    this.queue.push(p);
    if (!this.draining) void this.drain();
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(
      this.opts.burst,
      this.tokens + ((now - this.last) / 1000) * this.opts.perSecond,
    );
    this.last = now;
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      for (let p = this.queue.shift(); p; p = this.queue.shift()) {
        const now = new Date().toISOString();
        try {
          // The lean request path (ADR 0031): an Event is sent for most transitions, beside the
          // annealer's own writes, on the same cores as the API server.
          await kubeRequest(this.kc, 'POST', `/api/v1/namespaces/${this.namespacePath}/events`, {
            contentType: 'application/json',
            json: JSON.stringify({
              apiVersion: 'v1',
              kind: 'Event',
              metadata: { generateName: `${p.target.name.slice(0, 200)}.` },
              involvedObject: {
                kind: p.target.kind,
                name: p.target.name,
                ...(p.target.uid ? { uid: p.target.uid } : {}),
                apiVersion: p.target.apiVersion ?? 'crowbar.dev/v1alpha1',
              },
              type: p.type,
              reason: p.reason,
              message: p.message.slice(0, 1024),
              source: { component: this.opts.component },
              firstTimestamp: now,
              lastTimestamp: now,
              count: 1,
              reportingComponent: this.opts.component,
            }),
          });
        } catch (err) {
          this.log.debug({ err, reason: p.reason }, 'event not written');
        }
      }
    } finally {
      this.draining = false;
    }
  }
}
