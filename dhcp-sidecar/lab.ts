/**
 * Starts the DHCP/TFTP/HTTP boot sidecar for `make lab` on the lab's provisioning bridge.
 *
 * The sidecar runs inside the namespace that holds the bridge (the lab's hub namespace), with its
 * own address on that bridge, so it serves exactly that network. It reaches the lab's API server
 * (on the host's loopback) through a Unix-socket relay: the host side listens on a socket in
 * `dir`, the sidecar side (`--api-via-unix`) on its namespace's loopback at the kubeconfig's
 * address, so the kubeconfig and certificates work unchanged. Requires root (ip netns exec).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { unixToTcp } from './relay.ts';

export interface LabSidecarOptions {
  /** Network namespace holding the bridge (e.g. the lab's hub namespace). */
  ns: string;
  /** The bridge in that namespace (e.g. br0). */
  bridge: string;
  /** The sidecar's address with prefix length on the bridge, e.g. 10.251.7.2/24. */
  serverCidr: string;
  /** The crowbar.dev Network it serves (its `dhcp` range is the discovery pool). */
  network: string;
  kubeconfig: string;
  /** The API server URL the kubeconfig names (https://127.0.0.1:PORT). */
  apiServer: string;
  /** Working directory: sidecar.log, api.sock, state/, files/. */
  dir: string;
  httpPort?: number;
  dns?: string;
  domain?: string;
  /** The node API's CA (PEM file), served to netbooted machines as an initrd (--api-ca-file). */
  apiCaFile?: string;
  /**
   * Router advertisements on `bridge` without the M and O flags (`--ra-interface`,
   * `--ra-no-dhcp6`): this lab runs no DHCPv6 server, and iPXE, which waits 15.75 s for IPv6
   * when nothing answers its router solicitations, stops at them (ADR 0027).
   */
  routerAdvertisements?: boolean;
  logLevel?: string;
}

export interface LabSidecar {
  serverIp: string;
  httpBase: string;
  /** Put kernels and initrds that BootEnvs name here (served at /files/). */
  fileRoot: string;
  log: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

function ip(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: 10_000 }, (err, _o, stderr) => {
      if (err && !/File exists/.test(stderr)) reject(new Error(`ip ${args.join(' ')}: ${stderr}`));
      else resolve();
    });
  });
}

/** Starts the sidecar; resolves once it answers /readyz (informers synced). */
export async function startLabDhcpSidecar(o: LabSidecarOptions): Promise<LabSidecar> {
  const serverIp = o.serverCidr.split('/')[0] ?? '';
  const httpPort = o.httpPort ?? 8080;
  const fileRoot = join(o.dir, 'files');
  mkdirSync(fileRoot, { recursive: true });
  await ip(['-n', o.ns, 'addr', 'add', o.serverCidr, 'dev', o.bridge]);
  const sock = join(o.dir, 'dhcp-api.sock');
  const u = new URL(o.apiServer);
  const relay: Server = await unixToTcp(sock, u.hostname, Number(u.port));
  const log = join(o.dir, 'dhcp-sidecar.log');
  const fd = openSync(log, 'a');
  const args = [
    'netns',
    'exec',
    o.ns,
    process.execPath,
    join(import.meta.dirname, 'main.ts'),
    '--kubeconfig',
    o.kubeconfig,
    '--api-via-unix',
    sock,
    '--server-ip',
    serverIp,
    '--network',
    o.network,
    '--http-port',
    String(httpPort),
    '--state-dir',
    join(o.dir, 'dhcp-state'),
    '--file-root',
    fileRoot,
    ...(o.dns ? ['--dns', o.dns] : []),
    ...(o.domain ? ['--domain', o.domain] : []),
    ...(o.apiCaFile ? ['--api-ca-file', o.apiCaFile] : []),
    ...(o.routerAdvertisements ? ['--ra-interface', o.bridge, '--ra-no-dhcp6'] : []),
  ];
  const proc = spawn('ip', args, {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, LOG_LEVEL: o.logLevel ?? 'info' },
  });
  closeSync(fd);
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((r) =>
        proc.once('exit', () => {
          r();
        }),
      );
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    relay.close();
  };
  // Ready when /readyz answers ok from inside the namespace (bounded: 60 tries, 30 s).
  for (let i = 0; i < 60; i++) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`dhcp sidecar exited with ${proc.exitCode}; see ${log}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      execFile(
        'ip',
        ['netns', 'exec', o.ns, 'curl', '-sf', '-m', '1', `http://${serverIp}:${httpPort}/readyz`],
        { timeout: 3000 },
        (err, out) => {
          resolve(!err && out.trim() === 'ok');
        },
      );
    });
    if (ok)
      return { serverIp, httpBase: `http://${serverIp}:${httpPort}`, fileRoot, log, proc, stop };
    await new Promise((r) => setTimeout(r, 500));
  }
  await stop();
  throw new Error(`dhcp sidecar not ready after 30 s; see ${log}`);
}
