/**
 * `make bench-dns`: dnsperf against the DNS sidecar, BIND9, dnsmasq and NSD serving the same zone
 * of BENCH_DNS_NODES nodes (default 10,000; A, AAAA and PTR v4/v6 each), one server at a time in
 * the same run, with the same client settings (UDP, 4 clients, 100 queries outstanding). All four
 * run at once; each gets one untimed pass over the query file, then BENCH_DNS_ROUNDS rounds
 * (default 3) of BENCH_DNS_SECONDS seconds (default 10) go through them in turn, so that the shared
 * machine's changing load falls on every server alike; the median round of each is reported.
 * Every server gets BENCH_DNS_THREADS threads (default: the cores): ours as socket loops
 * (--udp-workers), BIND as `-n`, NSD as `server-count`; dnsmasq has one by design. BIND
 * and NSD load the zone files the sidecar writes; dnsmasq reads the same names and addresses as a
 * hosts file. All on loopback.
 *
 * With BENCH_DNS_DGRAM=1 a second sidecar serving UDP with Node's dgram (--udp-engine=dgram) runs
 * beside them as `ours_dgram`, to compare the two UDP paths in the same run (ADR 0020). Every round
 * also records each server's CPU time per answered query (from /proc/<pid>/stat), which the shared
 * machine's load disturbs far less than queries per second.
 *
 * Prints `RESULT dns ours_qps=... bind_qps=... dnsmasq_qps=... nsd_qps=... ours_p99_ms=...` and
 * writes bench/results/dns.json.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { freePortOn, startDnsSidecar } from '../dns-sidecar/lab.ts';
import { reverseV4, reverseV6 } from '../dns-sidecar/names.ts';
import { startNamed, startNsd, type RunningServer } from '../test/harness/dns-servers.ts';
import { loopback } from '../test/harness/dns.ts';
import { cpuSeconds, rssMb } from './util.ts';

const run = promisify(execFile);
const NODES = Number(process.env['BENCH_DNS_NODES'] ?? 10_000);
const SECONDS = Number(process.env['BENCH_DNS_SECONDS'] ?? 10);
const ROUNDS = Number(process.env['BENCH_DNS_ROUNDS'] ?? 3);
/** Threads every server may use: ours' socket loops, BIND's -n, NSD's server-count. */
const THREADS = Number(process.env['BENCH_DNS_THREADS'] ?? availableParallelism());
const DOMAIN = 'bench.crowbar.dev';
const DGRAM = process.env['BENCH_DNS_DGRAM'] === '1';
const tmp = mkdtempSync(join(tmpdir(), 'cbdns-bench-'));

const node = (i: number) => `n${i}.${DOMAIN}`;
const v4 = (i: number) => `10.20.${Math.floor(i / 250)}.${(i % 250) + 1}`;
const v6 = (i: number) => `fd00:20:0:1::${(i + 1).toString(16)}`;

function say(msg: string): void {
  console.log(`bench-dns: ${msg}`);
}

/** The same data three ways: manifests (ours), and via ours' zone files (BIND, NSD), hosts (dnsmasq). */
function writeInputs(): { manifests: string; hosts: string; queries: string } {
  const docs = [
    `kind: Network\nmetadata: {name: admin}\nspec: {category: admin, subnet: 10.20.0.0/16, v6prefix: 'fd00:20:0:1::/64'}`,
  ];
  const hosts: string[] = [];
  for (let i = 0; i < NODES; i++) {
    for (const [addr, family] of [
      [v4(i), 'ipv4'],
      [v6(i), 'ipv6'],
    ] as const) {
      docs.push(
        `kind: NetworkAllocation\nmetadata: {name: a${i}${family}}\nspec: {network: admin, node: ${node(i)}, address: '${addr}', family: ${family}, range: host}`,
      );
      hosts.push(`${addr} ${node(i)}`);
    }
  }
  // A, AAAA and PTR (v4 and v6) in equal parts, spread over every node.
  const lines: string[] = [];
  for (let k = 0; k < 40_000; k++) {
    const i = (k * 7919) % NODES;
    const t = k % 4;
    if (t === 0) lines.push(`${node(i)} A`);
    else if (t === 1) lines.push(`${node(i)} AAAA`);
    else if (t === 2) lines.push(`${reverseV4(v4(i))} PTR`);
    else lines.push(`${reverseV6(v6(i))} PTR`);
  }
  const manifests = join(tmp, 'zones.yaml');
  writeFileSync(manifests, `${docs.join('\n---\n')}\n`);
  const hostsFile = join(tmp, 'hosts');
  writeFileSync(hostsFile, `${hosts.join('\n')}\n`);
  const queries = join(tmp, 'queries');
  writeFileSync(queries, `${lines.join('\n')}\n`);
  return { manifests, hosts: hostsFile, queries };
}

interface PerfResult {
  qps: number;
  /** The server's CPU time (all threads) per completed query in the round, microseconds. */
  cpu_us_per_query?: number;
  sent: number;
  completed: number;
  lost: number;
  noerror: number;
  avg_ms: number;
  p50_ms: number;
  p99_ms: number;
}

/** Runs dnsperf (verbose, to read each query's latency) and reads its summary. */
async function dnsperf(
  host: string,
  port: number,
  queries: string,
  length: string[],
): Promise<PerfResult> {
  const p = spawn('dnsperf', [
    '-s',
    host,
    '-p',
    String(port),
    '-d',
    queries,
    ...length,
    '-c',
    '4',
    '-q',
    '100',
    '-t',
    '2',
    '-v',
  ]);
  const lat: number[] = [];
  let summary = '';
  const rl = createInterface({ input: p.stdout });
  rl.on('line', (line) => {
    if (line.startsWith('> ')) {
      const ms = Number(line.slice(line.lastIndexOf(' ') + 1)) * 1000;
      if (Number.isFinite(ms)) lat.push(ms);
    } else {
      summary += `${line}\n`;
    }
  });
  await new Promise<void>((resolve, reject) => {
    p.once('exit', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`dnsperf exited with ${code}:\n${summary}`));
    });
  });
  const num = (re: RegExp) => Number(re.exec(summary)?.[1] ?? NaN);
  lat.sort((a, b) => a - b);
  const q = (x: number) => lat[Math.min(lat.length - 1, Math.floor(x * lat.length))] ?? NaN;
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    noerror: num(/NOERROR (\d+)/),
    avg_ms: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    p50_ms: q(0.5),
    p99_ms: q(0.99),
  };
}

/** Waits until `host:port` answers the zone's SOA (or, for dnsmasq, a node's A record). */
async function waitAnswering(
  host: string,
  port: number,
  name: string,
  type: string,
): Promise<void> {
  const end = Date.now() + 120_000;
  for (;;) {
    try {
      const { stdout } = await run('dig', [
        `@${host}`,
        '-p',
        String(port),
        name,
        type,
        '+short',
        '+time=1',
        '+tries=1',
      ]);
      if (stdout.trim()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error(`${host}:${port} did not answer ${name} ${type}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function startDnsmasq(dir: string, host: string, port: number, hosts: string): RunningServer {
  mkdirSync(dir, { recursive: true });
  const log = join(dir, 'dnsmasq.log');
  const proc = spawn('/usr/sbin/dnsmasq', [
    '-k',
    '--no-resolv',
    '--no-hosts',
    `--addn-hosts=${hosts}`,
    `--port=${port}`,
    `--listen-address=${host}`,
    '--bind-interfaces',
    `--local=/${DOMAIN}/`,
    '--pid-file=',
    '--user=root',
    `--log-facility=${log}`,
  ]);
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const done = new Promise<void>((r) => {
      proc.once('exit', () => {
        r();
      });
    });
    proc.kill('SIGTERM');
    await done;
  };
  return { proc, host, port, log, stop };
}

interface Server {
  key: 'ours' | 'ours_dgram' | 'bind' | 'dnsmasq' | 'nsd';
  host: string;
  port: number;
  pid: number | undefined;
  stop: () => Promise<void>;
}

/** The median of one server's rounds, by qps (its p99 and the rest from that same round). */
function median(rounds: PerfResult[]): PerfResult | undefined {
  const sorted = [...rounds].sort((a, b) => a.qps - b.qps);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  say(
    `${NODES} nodes (A, AAAA, PTR v4, PTR v6), ${ROUNDS} rounds of ${SECONDS} s per server, interleaved, ${THREADS} threads each (dnsmasq: 1)`,
  );
  const inputs = writeInputs();
  const zoneDir = join(tmp, 'zones');
  const servers: Server[] = [];
  try {
    // Ours (it writes the zone files BIND and NSD load).
    const oursHost = loopback();
    const ours = await startDnsSidecar({
      domains: [DOMAIN],
      host: oursHost,
      port: 5353,
      source: `file:${inputs.manifests}`,
      zoneDir,
      logFile: join(tmp, 'sidecar.log'),
      env: { LOG_LEVEL: 'warn', CROWBAR_DNS_UDP_WORKERS: String(THREADS - 1) },
      readyTimeoutMs: 120_000,
    });
    servers.push({
      key: 'ours',
      host: oursHost,
      port: 5353,
      pid: ours.proc.pid,
      stop: () => ours.stop(),
    });
    if (DGRAM) {
      const host = loopback();
      const dg = await startDnsSidecar({
        domains: [DOMAIN],
        host,
        port: 5353,
        source: `file:${inputs.manifests}`,
        logFile: join(tmp, 'sidecar-dgram.log'),
        env: {
          LOG_LEVEL: 'warn',
          CROWBAR_DNS_UDP_WORKERS: String(THREADS - 1),
          CROWBAR_DNS_UDP_ENGINE: 'dgram',
        },
        readyTimeoutMs: 120_000,
      });
      servers.push({
        key: 'ours_dgram',
        host,
        port: 5353,
        pid: dg.proc.pid,
        stop: () => dg.stop(),
      });
    }
    const zones = new Map(
      readdirSync(zoneDir)
        .filter((f) => f.endsWith('.zone'))
        .map((f) => [f.slice(0, -'.zone'.length), join(zoneDir, f)] as const),
    );
    // BIND9 (named only listens on addresses configured on an interface: 127.0.0.1).
    const bindPort = await freePortOn('127.0.0.1');
    const named = startNamed(
      join(tmp, 'named'),
      '127.0.0.1',
      bindPort,
      [...zones].map(([origin, file]) => ({ origin, file })),
      '',
      THREADS,
    );
    servers.push({
      key: 'bind',
      host: '127.0.0.1',
      port: bindPort,
      pid: named.proc.pid,
      stop: () => named.stop(),
    });
    const dmPort = await freePortOn('127.0.0.1');
    const dm = startDnsmasq(join(tmp, 'dnsmasq'), '127.0.0.1', dmPort, inputs.hosts);
    servers.push({
      key: 'dnsmasq',
      host: '127.0.0.1',
      port: dmPort,
      pid: dm.proc.pid,
      stop: () => dm.stop(),
    });
    const nsdHost = loopback();
    const nsd = startNsd(join(tmp, 'nsd'), nsdHost, 5353, zones, THREADS);
    servers.push({
      key: 'nsd',
      host: nsdHost,
      port: 5353,
      pid: nsd.proc.pid,
      stop: () => nsd.stop(),
    });

    // Every server answers, then gets the same untimed warm-up: one pass over the query file
    // (caches, and V8's optimizing compiler for ours, are warm before anything is measured).
    for (const s of servers) {
      await waitAnswering(s.host, s.port, node(0), 'A');
      await dnsperf(s.host, s.port, inputs.queries, ['-n', '1']);
    }
    // Rounds, each server in turn, so that a change in the shared machine's load falls on all.
    const rounds = new Map<string, PerfResult[]>();
    for (let round = 1; round <= ROUNDS; round++) {
      for (const s of servers) {
        const cpu0 = s.pid ? cpuSeconds(s.pid) : NaN;
        const r = await dnsperf(s.host, s.port, inputs.queries, ['-l', String(SECONDS)]);
        const cpu = s.pid ? cpuSeconds(s.pid) - cpu0 : NaN;
        r.cpu_us_per_query = Number(((cpu * 1e6) / r.completed).toFixed(2));
        rounds.set(s.key, [...(rounds.get(s.key) ?? []), r]);
        say(
          `round ${round} ${s.key}: ${r.qps.toFixed(0)} qps, p99 ${r.p99_ms.toFixed(2)} ms, ${r.cpu_us_per_query} us CPU/query, load ${loadavg()[0]?.toFixed(1) ?? '?'}`,
        );
      }
    }
    const results: Record<
      string,
      PerfResult & { rss_mb?: number; rounds_qps: number[]; rounds_cpu_us_per_query: number[] }
    > = {};
    for (const s of servers) {
      const all = rounds.get(s.key) ?? [];
      const m = median(all);
      if (!m) continue;
      results[s.key] = {
        ...m,
        rounds_qps: all.map((r) => Math.round(r.qps)),
        rounds_cpu_us_per_query: all.map((r) => r.cpu_us_per_query ?? NaN),
        ...(s.key === 'ours' && s.pid ? { rss_mb: rssMb(s.pid) } : {}),
      };
    }

    const r = (k: string): number => results[k]?.qps ?? NaN;
    const p99 = (k: string): number => results[k]?.p99_ms ?? NaN;
    const out = {
      nodes: NODES,
      seconds: SECONDS,
      rounds: ROUNDS,
      threads: THREADS,
      client: `dnsperf, UDP, 4 clients, 100 outstanding, 40,000-query A/AAAA/PTR mix; one untimed pass each first; ${ROUNDS} interleaved rounds, the median reported`,
      ours_qps: r('ours'),
      bind_qps: r('bind'),
      dnsmasq_qps: r('dnsmasq'),
      nsd_qps: r('nsd'),
      ours_p99_ms: p99('ours'),
      ratio_bind: r('ours') / r('bind'),
      ratio_dnsmasq: r('ours') / r('dnsmasq'),
      ratio_nsd: r('ours') / r('nsd'),
      ...(DGRAM
        ? { ours_dgram_qps: r('ours_dgram'), ratio_dgram: r('ours') / r('ours_dgram') }
        : {}),
      servers: results,
      measured_at: new Date().toISOString(),
      load_average: loadavg().map((x) => Number(x.toFixed(2))),
    };
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    writeFileSync(
      join(import.meta.dirname, 'results', 'dns.json'),
      `${JSON.stringify(out, null, 2)}\n`,
    );
    console.log(
      `RESULT dns ours_qps=${r('ours').toFixed(0)} bind_qps=${r('bind').toFixed(0)} dnsmasq_qps=${r('dnsmasq').toFixed(0)} nsd_qps=${r('nsd').toFixed(0)} ours_p99_ms=${p99('ours').toFixed(2)}`,
    );
  } finally {
    for (const s of servers.reverse()) await s.stop();
  }
}

try {
  await main();
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
