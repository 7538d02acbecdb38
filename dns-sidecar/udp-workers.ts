/**
 * UDP worker threads: Node answers each datagram with one recvmsg and one sendmsg on one thread,
 * so a single socket loop uses one core however many the machine has. Each worker thread binds
 * another socket on the same address with SO_REUSEPORT (the main thread's socket has it too) and
 * the kernel spreads clients over them by their address and port, as BIND's per-thread sockets are
 * spread. The main thread keeps everything else (informers, rebuilds, serials, NOTIFY, TCP, zone
 * transfers, /metrics) and posts every new zone set to the workers; a worker's query metrics are
 * added to the main thread's when /metrics is scraped (prom-client's AggregatorRegistry).
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { ZoneSet } from './resolver.ts';
import type { Listen } from './server.ts';

/** What a worker is started with (workerData). */
export interface WorkerConfig {
  index: number;
  /** The addresses the main thread bound (ports resolved). */
  listen: Listen[];
  answerCacheBytes: number;
  allowTransfer: string[];
  logLevel: string;
}

export type ToWorker =
  { type: 'zones'; zones: ZoneSet } | { type: 'metrics'; id: number } | { type: 'stop' };

export type ToMain =
  | { type: 'bound' }
  | { type: 'failed'; message: string }
  | { type: 'metrics'; id: number; json: object[] };

/** A worker's metrics answer is awaited at most this long; a scrape then goes on without it. */
const METRICS_TIMEOUT_MS = 2000;
const STOP_TIMEOUT_MS = 5000;

interface Running {
  worker: Worker;
  bound: boolean;
  exited: boolean;
}

export interface UdpWorkersOptions {
  count: number;
  listen: readonly Listen[];
  answerCacheBytes: number;
  allowTransfer: readonly string[];
  log: Logger;
}

export class UdpWorkers {
  private readonly o: UdpWorkersOptions;
  private readonly running: Running[] = [];
  private nextId = 0;
  private readonly pending = new Map<number, (json: object[] | undefined) => void>();
  private stopping = false;

  constructor(o: UdpWorkersOptions) {
    this.o = o;
  }

  /** Starts the workers on the first zone set, posts every later one to them. */
  publish(zones: ZoneSet): void {
    if (this.stopping) return;
    if (this.running.length === 0) this.spawn();
    for (const r of this.running) {
      if (!r.exited) r.worker.postMessage({ type: 'zones', zones } satisfies ToWorker);
    }
  }

  private spawn(): void {
    for (let index = 0; index < this.o.count; index++) {
      const config: WorkerConfig = {
        index,
        listen: [...this.o.listen],
        answerCacheBytes: this.o.answerCacheBytes,
        allowTransfer: [...this.o.allowTransfer],
        logLevel: this.o.log.level,
      };
      const worker = new Worker(new URL('./udp-worker.ts', import.meta.url), {
        workerData: config,
      });
      const r: Running = { worker, bound: false, exited: false };
      this.running.push(r);
      worker.on('message', (m: ToMain) => {
        if (m.type === 'bound') r.bound = true;
        else if (m.type === 'failed') {
          this.o.log.error({ worker: index, message: m.message }, 'udp worker failed to bind');
        } else {
          this.pending.get(m.id)?.(m.json);
        }
      });
      worker.on('error', (err) => {
        this.o.log.error({ err, worker: index }, 'udp worker crashed');
      });
      worker.on('exit', (code) => {
        r.exited = true;
        // The kernel hands the exited worker's share of clients to the sockets still bound.
        if (!this.stopping) this.o.log.error({ worker: index, code }, 'udp worker exited');
      });
    }
  }

  /** True once every worker has bound its sockets (a crashed worker no longer counts). */
  ready(): boolean {
    return this.running.length > 0 && this.running.every((r) => r.bound || r.exited);
  }

  /** The workers' query metrics as prom-client JSON (a worker that does not answer is left out). */
  private async metricsJson(): Promise<object[][]> {
    const asks = this.running
      .filter((r) => !r.exited)
      .map(
        (r) =>
          new Promise<object[] | undefined>((resolve) => {
            const id = this.nextId++;
            const timer = setTimeout(() => {
              this.pending.delete(id);
              resolve(undefined);
            }, METRICS_TIMEOUT_MS);
            this.pending.set(id, (json) => {
              clearTimeout(timer);
              this.pending.delete(id);
              resolve(json);
            });
            r.worker.postMessage({ type: 'metrics', id } satisfies ToWorker);
          }),
      );
    return (await Promise.all(asks)).filter((j): j is object[] => j !== undefined);
  }

  /** The main thread's metrics with every worker's added (counters and histograms summed). */
  async metrics(main: object[]): Promise<Registry> {
    return AggregatorRegistry.aggregate([main, ...(await this.metricsJson())]);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.running.map(async (r) => {
        if (r.exited) return;
        const done = new Promise<void>((resolve) =>
          r.worker.once('exit', () => {
            resolve();
          }),
        );
        r.worker.postMessage({ type: 'stop' } satisfies ToWorker);
        const timer = setTimeout(() => void r.worker.terminate(), STOP_TIMEOUT_MS);
        await done;
        clearTimeout(timer);
      }),
    );
  }
}
