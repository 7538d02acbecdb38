/**
 * Starting the sidecar as a child process, for `make lab`, the integration tests and the
 * benchmark: spawns `node dns-sidecar/main.ts` with the given flags, waits until /readyz answers
 * 200 (every zone loaded), and stops it with SIGTERM (SIGKILL after a grace period). Self-contained:
 * imports nothing from operator/, lab/ or test/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface DnsSidecarOptions {
  /** API server credentials; omit with `source: 'file:<path>'`. */
  kubeconfig?: string;
  /** The cluster domain(s) served as forward zones, e.g. ['lab.crowbar.dev']. */
  domains: string[];
  /** DNS listen address (UDP and TCP). */
  host: string;
  port: number;
  /** Name servers: name=address[,address] (default ns1.<domain> at `host`). */
  nameservers?: string[];
  notify?: string[];
  allowTransfer?: string[];
  source?: string;
  stateFile?: string;
  zoneDir?: string;
  /** Where stdout and stderr (pino JSON) go. */
  logFile: string;
  /** Extra flags and environment. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** How long to wait for /readyz (default 60 s). */
  readyTimeoutMs?: number;
}

export interface DnsSidecarProc {
  proc: ChildProcess;
  host: string;
  port: number;
  healthPort: number;
  /** GET on the health server: status and body. */
  http(path: string): Promise<{ status: number; body: string }>;
  stop(): Promise<void>;
}

/** A free TCP port on `host` (the OS picks; racy only against other processes binding at once). */
export function freePortOn(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => {
        resolve(port);
      });
    });
  });
}

function get(host: string, port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) =>
    p.once('exit', () => {
      r();
    }),
  );
}

/** Starts the sidecar and resolves once it is ready; stops it and rejects if it is not in time. */
export async function startDnsSidecar(o: DnsSidecarOptions): Promise<DnsSidecarProc> {
  const healthPort = await freePortOn(o.host);
  const main = join(import.meta.dirname, 'main.ts');
  const list = (flag: string, v: string[] | undefined) => (v ?? []).map((x) => `--${flag}=${x}`);
  const args = [
    main,
    ...o.domains.map((d) => `--domain=${d}`),
    `--listen=${o.host.includes(':') ? `[${o.host}]` : o.host}:${o.port}`,
    `--health-addr=${o.host.includes(':') ? `[${o.host}]` : o.host}:${healthPort}`,
    ...list('nameserver', o.nameservers ?? [`ns1.${o.domains[0] ?? ''}=${o.host}`]),
    ...list('notify', o.notify),
    ...(o.allowTransfer?.length ? [`--allow-transfer=${o.allowTransfer.join(',')}`] : []),
    ...(o.kubeconfig ? [`--kubeconfig=${o.kubeconfig}`] : []),
    ...(o.source ? [`--source=${o.source}`] : []),
    ...(o.stateFile ? [`--state-file=${o.stateFile}`] : []),
    ...(o.zoneDir ? [`--zone-dir=${o.zoneDir}`] : []),
    ...(o.args ?? []),
  ];
  const fd = openSync(o.logFile, 'a');
  const proc = spawn(process.execPath, args, {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, ...o.env },
  });
  closeSync(fd);
  const killOnExit = (): void => {
    proc.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const stop = async (): Promise<void> => {
    process.off('exit', killOnExit);
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const done = exited(proc);
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(timer);
  };
  const http = (path: string) => get(o.host, healthPort, path);
  const deadline = Date.now() + (o.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`the DNS sidecar exited (code ${proc.exitCode}); see ${o.logFile}`);
    }
    const ready = await http('/readyz').then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the DNS sidecar was not ready in time; see ${o.logFile}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, host: o.host, port: o.port, healthPort, http, stop };
}
