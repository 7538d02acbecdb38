/**
 * Router advertisements on the provisioning link (ADR 0015): the sidecar runs `radvd` with a
 * configuration rendered from the served Network (its v6prefix), and renders it again and
 * restarts radvd when the prefix changes. The M flag (addresses from DHCPv6) and the O flag
 * (other configuration from DHCPv6) tell clients to ask us; the prefix is announced on-link
 * (so a /128 from DHCPv6 still reaches its neighbours) and not for SLAAC, so a machine's only
 * global address is the one its Node holds. On a link with no DHCPv6 server (`dhcp6: false`)
 * both flags are off: the advertisement then tells a client that IPv6 has nothing more to give
 * it, and iPXE, which waits for one before it boots (its router solicitations give up only
 * after 16 s), goes on at once (ADR 0027).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NetworkConfig } from './backend.ts';
import type { Logger } from './metrics.ts';

export interface RaOptions {
  /** The provisioning interface (e.g. br0). */
  iface: string;
  /** Announce this host as a default router (router lifetime > 0). Off: on-link only. */
  defaultRouter: boolean;
  /** Seconds between unsolicited advertisements (radvd MaxRtrAdvInterval, 4-1800). */
  maxIntervalSeconds: number;
  /** A DHCPv6 server answers on the link (the M and O flags); default true. */
  dhcp6?: boolean;
}

/** radvd.conf for a network, or undefined when it has no IPv6 prefix (pure). */
export function renderRadvdConf(net: NetworkConfig, o: RaOptions): string | undefined {
  const prefix = net.v6prefix;
  if (prefix === undefined || net.mode === 'off') return undefined;
  if (!/^[0-9a-f:]+\/\d{1,3}$/i.test(prefix)) return undefined;
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(o.iface)) throw new Error(`bad interface name ${o.iface}`);
  const max = Math.min(1800, Math.max(4, Math.floor(o.maxIntervalSeconds)));
  const min = Math.max(3, Math.floor(max / 3));
  const rdnss = (net.dns6 ?? []).filter((a) => /^[0-9a-f:]+$/i.test(a));
  const dhcp6 = o.dhcp6 === false ? 'off' : 'on';
  return [
    `# Rendered by the Crowbar DHCP sidecar from Network ${net.name}; do not edit.`,
    `interface ${o.iface} {`,
    '  AdvSendAdvert on;',
    // RFC 4861 §4.2: M = addresses via DHCPv6, O = other configuration via DHCPv6.
    `  AdvManagedFlag ${dhcp6};`,
    `  AdvOtherConfigFlag ${dhcp6};`,
    `  MaxRtrAdvInterval ${String(max)};`,
    `  MinRtrAdvInterval ${String(min)};`,
    `  AdvDefaultLifetime ${o.defaultRouter ? String(3 * max) : '0'};`,
    `  prefix ${prefix} {`,
    '    AdvOnLink on;',
    '    AdvAutonomous off;',
    '  };',
    ...(rdnss.length > 0 ? [`  RDNSS ${rdnss.join(' ')} {`, '  };'] : []),
    '};',
    '',
  ].join('\n');
}

/** Keeps one radvd running with the latest rendered configuration. */
export class Radvd {
  private proc: ChildProcess | undefined;
  private conf = '';
  private last: NetworkConfig | undefined;
  private stopped = false;
  private readonly bin: string;
  private readonly dir: string;
  private readonly opts: RaOptions;
  private readonly log: Logger;

  constructor(o: { bin?: string; stateDir: string; ra: RaOptions; log: Logger }) {
    this.bin = o.bin ?? 'radvd';
    this.dir = o.stateDir;
    this.opts = o.ra;
    this.log = o.log.child({ component: 'radvd' });
  }

  /** Renders the configuration for `net`; (re)starts radvd when it changed or is not running. */
  update(net: NetworkConfig | undefined): void {
    if (this.stopped) return;
    this.last = net;
    const conf = net ? renderRadvdConf(net, this.opts) : undefined;
    if (conf === undefined) {
      if (this.proc) this.log.info('no IPv6 prefix: router advertisements stopped');
      this.kill();
      this.conf = '';
      return;
    }
    if (conf === this.conf && this.proc) return;
    this.conf = conf;
    this.kill();
    const path = join(this.dir, 'radvd.conf');
    writeFileSync(path, conf, { mode: 0o644 });
    const pid = join(this.dir, 'radvd.pid');
    rmSync(pid, { force: true });
    // -n: foreground (we supervise it); -m stderr: its log goes to ours.
    const p = spawn(this.bin, ['-n', '-m', 'stderr', '-C', path, '-p', pid], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.proc = p;
    p.stderr.setEncoding('utf8');
    p.stderr.on('data', (d: string) => {
      for (const line of d.split('\n'))
        if (line.trim() !== '') this.log.info({ line: line.trim() }, 'radvd');
    });
    p.on('error', (err) => {
      this.log.error({ err }, 'radvd could not start');
    });
    p.on('exit', (code, signal) => {
      if (this.proc !== p) return;
      this.proc = undefined;
      if (this.stopped) return;
      // Bounded: one restart every 5 s at most, for as long as the sidecar runs.
      this.log.warn({ code, signal }, 'radvd exited; restarting in 5 s');
      setTimeout(() => {
        if (!this.proc) this.update(this.last);
      }, 5000).unref();
    });
    this.log.info({ iface: this.opts.iface, prefix: net?.v6prefix }, 'router advertisements on');
  }

  private kill(): void {
    const p = this.proc;
    this.proc = undefined;
    if (p && p.exitCode === null) p.kill('SIGTERM');
  }

  stop(): void {
    this.stopped = true;
    this.kill();
  }
}
