/**
 * The sidecar: a backend feeds the zone model, rebuilds are coalesced (at most one per
 * `minRebuildMs`, so a change is served within that plus the rebuild time), each zone gets its
 * serial (serial.ts), the new zone set replaces the old one in one assignment, and secondaries are
 * notified of every serial that moved.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Backend } from './backend/backend.ts';
import type { DnsMetrics } from './metrics.ts';
import { sendNotify, type NotifyTarget } from './notify.ts';
import type { ZoneSet } from './resolver.ts';
import { serialFor, type SerialState } from './serial.ts';
import { DnsServer, type Listen } from './server.ts';
import { UdpWorkers } from './udp-workers.ts';
import { renderZone } from './zonefile.ts';
import { buildZones, withSerial, type DnsConfig, type Zone } from './zones.ts';

export interface SidecarOptions {
  config: DnsConfig;
  backend: Backend;
  listen: readonly Listen[];
  notify: readonly NotifyTarget[];
  transferAllowed: (remote: string) => boolean;
  log: Logger;
  metrics: DnsMetrics;
  /** Remembers serials and digests across restarts (optional; see serial.ts). */
  stateFile?: string | undefined;
  /** Writes every changed zone as `<origin>.zone` here (for comparison with other servers). */
  zoneDir?: string | undefined;
  minRebuildMs?: number;
  now?: () => number;
  /** Bytes of finished answers the server keeps per transport (server.ts; 0 disables). */
  answerCacheBytes?: number;
  /**
   * UDP socket loops besides the main thread's (default 0): threads of the native loop when it
   * serves UDP, else worker threads with dgram sockets (udp-workers.ts).
   */
  udpWorkers?: number;
  /** What serves UDP (server.ts; default dgram). */
  udpEngine?: 'native' | 'dgram';
  /** The --allow-transfer list, for the workers' own ACL (they answer IXFR over UDP). */
  allowTransferList?: readonly string[];
}

interface StateFile {
  zones: Record<string, SerialState>;
}

export class DnsSidecar {
  private readonly o: SidecarOptions;
  private current: ZoneSet = new Map();
  private readonly serials = new Map<string, SerialState>();
  private loaded = false;
  private lastRebuild = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly inFlight = new Map<string, { again: boolean }>();
  readonly server: DnsServer;
  private workers: UdpWorkers | undefined;

  constructor(o: SidecarOptions) {
    this.o = o;
    this.server = new DnsServer({
      listen: o.listen,
      log: o.log,
      metrics: o.metrics,
      zones: () => this.current,
      transferAllowed: o.transferAllowed,
      ...(o.answerCacheBytes === undefined ? {} : { answerCacheBytes: o.answerCacheBytes }),
      reusePort: (o.udpWorkers ?? 0) > 0,
      udpEngine: o.udpEngine ?? 'dgram',
      udpThreads: (o.udpWorkers ?? 0) + 1,
    });
    if (o.stateFile) this.readState(o.stateFile);
  }

  private readState(path: string): void {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return; // first run
    }
    try {
      const s = JSON.parse(text) as StateFile;
      for (const [origin, st] of Object.entries(s.zones)) {
        if (Number.isInteger(st.serial) && typeof st.digest === 'string') {
          this.serials.set(origin, { serial: st.serial >>> 0, digest: st.digest });
        }
      }
    } catch (err) {
      throw new Error(`the serial state file ${path} is unreadable; fix or remove it`, {
        cause: err,
      });
    }
  }

  private writeState(path: string): void {
    const zones: Record<string, SerialState> = {};
    for (const [origin, st] of this.serials) zones[origin] = st;
    const tmp = `${path}.tmp`;
    writeFileSync(tmp, JSON.stringify({ zones } satisfies StateFile));
    renameSync(tmp, path);
  }

  get zones(): ZoneSet {
    return this.current;
  }

  /** Ready once the backend has loaded, the zones are built from it and every worker answers. */
  ready(): boolean {
    return this.loaded && this.o.backend.ready() && (this.workers?.ready() ?? true);
  }

  /** The Prometheus text of /metrics: the main thread's with the UDP workers' added. */
  async metricsText(): Promise<string> {
    const registry = this.o.metrics.registry;
    if (!this.workers) return registry.metrics();
    const merged = await this.workers.metrics(await registry.getMetricsAsJSON());
    return merged.metrics();
  }

  async start(): Promise<void> {
    await this.server.start();
    const count = this.o.udpWorkers ?? 0;
    // The native loop runs its threads itself; worker threads are dgram's way to more cores.
    if (count > 0 && this.server.udpEngine === 'dgram') {
      this.workers = new UdpWorkers({
        count,
        listen: this.server.bound,
        answerCacheBytes: this.o.answerCacheBytes ?? 32 << 20,
        allowTransfer: this.o.allowTransferList ?? [],
        log: this.o.log,
      });
    }
    await this.o.backend.start(() => {
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    const now = (this.o.now ?? Date.now)();
    const wait = Math.max(0, this.lastRebuild + (this.o.minRebuildMs ?? 100) - now);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.rebuild();
      } catch (err) {
        this.o.log.error({ err }, 'zone rebuild failed; serving the previous zones');
      }
    }, wait);
  }

  /** Rebuilds every zone from the backend's current state and swaps them in. */
  rebuild(): void {
    // Nothing is served or numbered from a partial load: a zone built before every informer has
    // synced would get a serial of its own (and persist it), so the serial kept in the state file
    // for the unchanged zone would be lost on every restart.
    if (!this.o.backend.ready()) return;
    const now = (this.o.now ?? Date.now)();
    this.lastRebuild = now;
    const t0 = performance.now();
    const snap = this.o.backend.snapshot();
    const contents = buildZones(this.o.config, snap.networks, snap.allocations, snap.nodes);
    const next = new Map<string, Zone>();
    const moved: Zone[] = [];
    for (const c of contents) {
      const prev = this.serials.get(c.origin);
      const serial = serialFor(prev, c.digest, now);
      const zone = withSerial(c, serial);
      next.set(c.origin, zone);
      const served = this.current.get(c.origin);
      if (!served || served.soa.data.serial !== serial) moved.push(zone);
      this.serials.set(c.origin, { serial, digest: c.digest });
    }
    const removed = [...this.current.keys()].filter((o) => !next.has(o));
    this.current = next;
    this.server.zonesChanged();
    this.workers?.publish(next);
    if (this.o.backend.ready()) this.loaded = true;
    const m = this.o.metrics;
    m.rebuilds.inc();
    m.rebuildSeconds.observe((performance.now() - t0) / 1000);
    m.zones.set(next.size);
    for (const origin of removed) {
      m.serial.remove(origin);
      m.records.remove(origin);
    }
    for (const z of next.values()) {
      m.serial.labels(z.origin).set(z.soa.data.serial ?? 0);
      m.records.labels(z.origin).set(z.records);
    }
    if (moved.length === 0 && removed.length === 0) return;
    for (const z of moved) {
      this.o.log.info(
        { zone: z.origin, serial: z.soa.data.serial, records: z.records },
        'zone serial moved',
      );
    }
    for (const origin of removed) this.o.log.info({ zone: origin }, 'zone removed');
    if (this.o.stateFile) this.writeState(this.o.stateFile);
    if (this.o.zoneDir) {
      mkdirSync(this.o.zoneDir, { recursive: true });
      for (const z of moved) {
        const file = join(this.o.zoneDir, `${z.origin}.zone`);
        writeFileSync(`${file}.tmp`, renderZone(z));
        renameSync(`${file}.tmp`, file);
      }
    }
    for (const z of moved) for (const t of this.o.notify) this.notify(z.origin, t);
  }

  /** One NOTIFY exchange per (zone, target) at a time; a change meanwhile sends again after. */
  private notify(origin: string, target: NotifyTarget): void {
    const key = `${origin}|${target.host}|${target.port}`;
    const flight = this.inFlight.get(key);
    if (flight) {
      flight.again = true;
      return;
    }
    const zone = this.current.get(origin);
    if (!zone || this.stopped) return;
    const state = { again: false };
    this.inFlight.set(key, state);
    const label = `${target.host}:${target.port}`;
    void sendNotify(target, zone.soa).then((result) => {
      this.inFlight.delete(key);
      this.o.metrics.notifies.labels(label, result).inc();
      if (result !== 'ok') {
        this.o.log.warn(
          { zone: origin, target: label, result },
          'secondary did not acknowledge NOTIFY',
        );
      }
      if (state.again) this.notify(origin, target);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.o.backend.stop();
    await this.workers?.stop();
    await this.server.stop();
  }
}
