/**
 * A UDP worker thread (udp-workers.ts starts it): one more UDP socket on each listen address
 * (SO_REUSEPORT, so the kernel spreads clients over the main thread's socket and the workers'),
 * answering from the zones the main thread posts after every rebuild, with an answer cache and
 * query metrics of its own that the main thread adds to its /metrics. It binds only once it has
 * zones, so it never answers from an empty set.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { makeAcl } from './acl.ts';
import { DnsMetrics } from './metrics.ts';
import type { ZoneSet } from './resolver.ts';
import { DnsServer } from './server.ts';
import type { ToMain, ToWorker, WorkerConfig } from './udp-workers.ts';

const port = parentPort;
if (!port) throw new Error('udp-worker.ts runs as a worker thread (udp-workers.ts starts it)');
const cfg = workerData as WorkerConfig;
const log = pino({ name: 'crowbar-dns', level: cfg.logLevel }).child({ worker: cfg.index });
const metrics = new DnsMetrics(false);
let zones: ZoneSet = new Map();
const server = new DnsServer({
  listen: cfg.listen,
  log,
  metrics,
  zones: () => zones,
  transferAllowed: makeAcl(cfg.allowTransfer),
  answerCacheBytes: cfg.answerCacheBytes,
  tcp: false,
  reusePort: true,
});
let started: Promise<void> | undefined;
const send = (m: ToMain): void => {
  port.postMessage(m);
};

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'zones':
      zones = m.zones;
      started ??= server.start().then(
        () => {
          send({ type: 'bound' });
        },
        (err: unknown) => {
          log.error({ err }, 'udp worker could not bind');
          send({ type: 'failed', message: String(err) });
        },
      );
      break;
    case 'metrics':
      void metrics.registry.getMetricsAsJSON().then((json) => {
        send({ type: 'metrics', id: m.id, json });
      });
      break;
    case 'stop':
      void server.stop().finally(() => {
        port.close();
      });
      break;
  }
});
