/**
 * Reference DNS servers for the sidecar's tests and benchmark, the real Debian packages: NSD (the
 * differential test and the benchmark) and BIND9 `named` (a secondary that transfers our zones,
 * and the benchmark), each in a temp dir of its own on a loopback address, stopped on cleanup. And
 * a small raw DNS client (UDP, and TCP with pipelining) so that thousands of queries can be
 * compared without spawning `dig` for each.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

export interface RunningServer {
  proc: ChildProcess;
  host: string;
  port: number;
  log: string;
  stop(): Promise<void>;
}

function startDaemon(bin: string, args: string[], log: string, host: string, port: number) {
  const fd = openSync(log, 'a');
  const proc = spawn(bin, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const kill = (): void => {
    proc.kill('SIGKILL');
  };
  process.once('exit', kill);
  const stop = async (): Promise<void> => {
    process.off('exit', kill);
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const done = new Promise<void>((r) => {
      proc.once('exit', () => {
        r();
      });
    });
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(t);
  };
  return { proc, host, port, log, stop };
}

/**
 * NSD 4 serving `zones` (origin -> zone file path) on host:port, in the foreground, with
 * `serverCount` server processes (the benchmark gives every server the same number of threads).
 */
export function startNsd(
  dir: string,
  host: string,
  port: number,
  zones: ReadonlyMap<string, string>,
  serverCount = 1,
): RunningServer {
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'nsd.conf');
  const zoneBlocks = [...zones]
    .map(([origin, file]) => `zone:\n  name: "${origin}"\n  zonefile: "${file}"\n`)
    .join('\n');
  writeFileSync(
    conf,
    `server:
  ip-address: ${host}@${port}
  port: ${port}
  username: ""
  chroot: ""
  zonesdir: "${dir}"
  database: ""
  zonelistfile: "${join(dir, 'zone.list')}"
  xfrdfile: "${join(dir, 'xfrd.state')}"
  pidfile: "${join(dir, 'nsd.pid')}"
  logfile: "${join(dir, 'nsd.log')}"
  xfrdir: "${dir}"
  hide-version: yes
  hide-identity: yes
  minimal-responses: yes
  refuse-any: no
  server-count: ${serverCount}
  verbosity: 1
  round-robin: no
  # Response rate limiting would drop some of a test's (or benchmark's) many similar answers.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
${zoneBlocks}`,
  );
  return startDaemon('/usr/sbin/nsd', ['-d', '-c', conf], join(dir, 'stdout.log'), host, port);
}

export interface NamedZone {
  origin: string;
  /** Secondary of host:port, or a primary zone file. */
  primary?: { host: string; port: number };
  file: string;
}

/**
 * BIND9 `named` in the foreground, authoritative only, for secondary or primary zones, with
 * `threads` worker threads (`-n`).
 */
export function startNamed(
  dir: string,
  host: string,
  port: number,
  zones: readonly NamedZone[],
  extraOptions = '',
  threads = 1,
): RunningServer {
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'named.conf');
  const zoneBlocks = zones
    .map((z) =>
      z.primary
        ? `zone "${z.origin}" { type secondary; primaries port ${z.primary.port} { ${z.primary.host}; }; file "${z.file}"; };`
        : `zone "${z.origin}" { type primary; file "${z.file}"; };`,
    )
    .join('\n');
  writeFileSync(
    conf,
    `options {
  directory "${dir}";
  pid-file "${join(dir, 'named.pid')}";
  listen-on port ${port} { ${host}; };
  listen-on-v6 { none; };
  recursion no;
  allow-notify { 127.0.0.0/8; };
  notify no;
  dnssec-validation no;
  minimal-responses yes;
  session-keyfile "${join(dir, 'session.key')}";
  managed-keys-directory "${dir}";
  ${extraOptions}
};
controls { };
${zoneBlocks}
`,
  );
  return startDaemon(
    '/usr/sbin/named',
    ['-g', '-c', conf, '-n', String(threads)],
    join(dir, 'named.log'),
    host,
    port,
  );
}

/** One UDP exchange: the reply with the same id, or undefined after `timeoutMs`. */
export function udpExchange(
  host: string,
  port: number,
  msg: Buffer,
  timeoutMs = 2000,
): Promise<Buffer | undefined> {
  const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const id = msg.readUInt16BE(0);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      sock.close();
      resolve(undefined);
    }, timeoutMs);
    sock.on('message', (b: Buffer) => {
      if (b.length < 2 || b.readUInt16BE(0) !== id) return;
      clearTimeout(t);
      sock.close();
      resolve(b);
    });
    sock.on('error', () => {
      clearTimeout(t);
      sock.close();
      resolve(undefined);
    });
    sock.send(msg, port, host);
  });
}

/**
 * Sends `msgs` pipelined on one TCP connection (RFC 7766 §6.2.1.1) and collects the replies in
 * order of arrival, until there is one per message (or `done` says so), or `timeoutMs` passed.
 */
export function tcpPipeline(
  host: string,
  port: number,
  msgs: readonly Buffer[],
  timeoutMs = 20_000,
  done: (replies: readonly Buffer[]) => boolean = (r) => r.length >= msgs.length,
): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    let pending = Buffer.alloc(0);
    const sock = connect({ host, port });
    const t = setTimeout(() => {
      sock.destroy();
      resolve(out);
    }, timeoutMs);
    sock.on('connect', () => {
      for (const m of msgs) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(m.length);
        sock.write(Buffer.concat([len, m]));
      }
    });
    sock.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const len = pending.readUInt16BE(0);
        out.push(pending.subarray(2, 2 + len));
        pending = pending.subarray(2 + len);
      }
      if (done(out)) {
        clearTimeout(t);
        sock.destroy();
        resolve(out);
      }
    });
    sock.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}
