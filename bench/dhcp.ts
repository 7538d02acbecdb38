/**
 * make bench-dhcp: Kea's perfdhcp runs the four-message exchange (DISCOVER, OFFER, REQUEST, ACK)
 * for BENCH_DHCP_CLIENTS distinct reserved MACs (default 10,000) against the sidecar and then
 * against kea-dhcp4 (memfile, the same reservations), one after the other, in the same network
 * namespaces (cbdhcp-bench-<run>-*: a server namespace with a bridge, a client namespace joined to it by
 * a veth). Each server gets the same offered rate (BENCH_DHCP_RATE exchanges/s, default 2000) for
 * BENCH_DHCP_SECONDS (default 10), BENCH_DHCP_ROUNDS times each (default 3, in ABBA order so
 * that load drifting on a shared machine favours neither side; medians are reported); leases/s
 * counts completed exchanges. Both servers saturate at the default rate on two cores, where a reply's
 * latency is mostly queueing, so the same rounds then run at a rate both carry
 * (BENCH_DHCP_LATENCY_RATE, default half the slower side's median leases/s) and the reported p99
 * comes from those, from perfdhcp's per-exchange timers (-x t); the saturated p99 is printed
 * beside it.
 *
 * The sidecar reads its reservations from a static backend file here (the same data its informer
 * backend indexes), so the API server is not part of what is measured.
 *
 * Then the same for DHCPv6 (issue 10): `perfdhcp -6` runs SOLICIT, ADVERTISE, REQUEST, REPLY for
 * the same MACs (DUID-LLT built from them) against the sidecar's DHCPv6 server and kea-dhcp6
 * (memfile, the same reservations by hardware address, which Kea too takes from the DUID), same
 * rate, same rounds.
 *
 * BENCH_DHCP_DGRAM=1 runs a third side in the same rounds: the sidecar with `--udp-engine=dgram`
 * (Node's dgram instead of the native batched loop, ADR 0023). BENCH_DHCP_FAMILIES=4 skips DHCPv6.
 *
 * Prints `RESULT dhcp ours_lps=... kea_lps=... ratio=... ours_p99_ms=... kea_p99_ms=...` and
 * `RESULT dhcp6 ours_lps=... kea_lps=... ratio=... ...`, and writes bench/results/dhcp.json.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StaticData } from '../dhcp-sidecar/backend.ts';
import { deleteNamespace, nsExec, run } from '../test/harness/netns.ts';
import { startProcess, waitFor, type Started } from '../test/harness/process.ts';
import { cpuSeconds, rssMb } from './util.ts';

const CLIENTS = Number(process.env['BENCH_DHCP_CLIENTS'] ?? 10_000);
const RATE = Number(process.env['BENCH_DHCP_RATE'] ?? 2000);
const SECONDS = Number(process.env['BENCH_DHCP_SECONDS'] ?? 10);
/** Untimed seconds of the same load before each timed run (BENCH_DHCP_WARMUP, default 2). */
const WARMUP = Number(process.env['BENCH_DHCP_WARMUP'] ?? 2);
/** Rounds per side (medians are reported), in ABBA order. */
const ROUNDS = Number(process.env['BENCH_DHCP_ROUNDS'] ?? 3);
/** Unique per run, so two runs on one machine never share (or delete) each other's namespaces. */
const RUN_ID = randomBytes(2).toString('hex');
const SERVER_NS = `cbdhcp-bench-${RUN_ID}-s`;
const CLIENT_NS = `cbdhcp-bench-${RUN_ID}-c`;
/** BENCH_DHCP_DGRAM=1: also the sidecar on dgram, in the same rounds. */
const DGRAM = process.env['BENCH_DHCP_DGRAM'] === '1';
const FAMILIES = (process.env['BENCH_DHCP_FAMILIES'] ?? '4,6').split(',').map(Number);
/** BENCH_DHCP_CPU_PROF=DIR runs the sidecar under `node --cpu-prof` and leaves the profile in DIR. */
const CPU_PROF = process.env['BENCH_DHCP_CPU_PROF'];
const SERVER_IP = '10.253.0.1';
const CLIENT_IP = '10.253.0.2';
const SUBNET = '10.253.0.0/16';
const SERVER_IP6 = 'fd00:bb::1';
const CLIENT_IP6 = 'fd00:bb::2';
const PREFIX6 = 'fd00:bb::/64';
const ROOT = join(import.meta.dirname, '..');

/** perfdhcp's client k (0 <= k < -R) has the base MAC plus k in its last bytes. */
function mac(k: number): string {
  return `52:54:01:00:${((k >> 8) & 255).toString(16).padStart(2, '0')}:${(k & 255).toString(16).padStart(2, '0')}`;
}
function address(k: number): string {
  return `10.253.${1 + (k >> 8)}.${k & 255}`;
}
function address6(k: number): string {
  return `fd00:bb::1:${k.toString(16)}`;
}

async function setup(): Promise<void> {
  for (const ns of [SERVER_NS, CLIENT_NS]) await deleteNamespace(ns);
  await run('ip', ['netns', 'add', SERVER_NS]);
  await run('ip', ['netns', 'add', CLIENT_NS]);
  await run('ip', ['-n', SERVER_NS, 'link', 'set', 'lo', 'up']);
  await run('ip', ['-n', CLIENT_NS, 'link', 'set', 'lo', 'up']);
  await run('ip', ['-n', SERVER_NS, 'link', 'add', 'br0', 'type', 'bridge']);
  await run('ip', ['-n', SERVER_NS, 'addr', 'add', `${SERVER_IP}/16`, 'dev', 'br0']);
  await run('ip', ['-n', SERVER_NS, 'link', 'set', 'br0', 'up']);
  await run('ip', [
    '-n',
    SERVER_NS,
    'link',
    'add',
    'p0',
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    CLIENT_NS,
  ]);
  await run('ip', ['-n', SERVER_NS, 'link', 'set', 'p0', 'master', 'br0', 'up']);
  await run('ip', ['-n', CLIENT_NS, 'addr', 'add', `${CLIENT_IP}/16`, 'dev', 'eth0']);
  await run('ip', ['-n', CLIENT_NS, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', SERVER_NS, 'addr', 'add', `${SERVER_IP6}/64`, 'dev', 'br0', 'nodad']);
  await run('ip', ['-n', CLIENT_NS, 'addr', 'add', `${CLIENT_IP6}/64`, 'dev', 'eth0', 'nodad']);
  // Both servers answer from their link-local address: wait until it has passed DAD.
  await waitFor(
    'link-local addresses ready',
    async () => {
      const a = await nsExec(SERVER_NS, 'ip', ['-6', 'addr', 'show', 'dev', 'br0']);
      const b = await nsExec(CLIENT_NS, 'ip', ['-6', 'addr', 'show', 'dev', 'eth0']);
      return [a.stdout, b.stdout].every((t) => /inet6 fe80::/.test(t) && !/tentative/.test(t));
    },
    30_000,
  );
}

interface Run {
  lps: number;
  p99Ms: number;
  p50Ms: number;
  sent: number;
  completed: number;
  rssMb: number;
  /** The server's CPU time per completed exchange, in microseconds. */
  cpuUsPerLease: number;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** Runs perfdhcp in the client namespace and parses its report and per-exchange timers. */
async function perfdhcp(
  server: Started,
  family: 4 | 6,
  rate: number,
  seconds = SECONDS,
): Promise<Run> {
  const args = [
    'netns',
    'exec',
    CLIENT_NS,
    'perfdhcp',
    `-${String(family)}`,
    '-r',
    String(rate),
    '-R',
    String(CLIENTS),
    '-p',
    String(seconds),
    '-b',
    'mac=52:54:01:00:00:00',
    '-x',
    't',
    '-l',
    'eth0',
    // DHCPv6: to All_DHCP_Relay_Agents_and_Servers (ff02::1:2) on eth0, as a client does.
    family === 4 ? SERVER_IP : 'all',
  ];
  const pid = server.proc.pid;
  const cpu0 = pid === undefined ? 0 : cpuSeconds(pid);
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    p.stdout.on('data', (c: Buffer) => chunks.push(c));
    p.stderr.on('data', (c: Buffer) => chunks.push(c));
    const t = setTimeout(() => p.kill('SIGKILL'), (seconds + 60) * 1000);
    p.on('close', (code) => {
      clearTimeout(t);
      const text = Buffer.concat(chunks).toString('utf8');
      // perfdhcp exits 3 when some exchanges were dropped: still a valid measurement.
      if (code === 0 || code === 3) resolve(text);
      else reject(new Error(`perfdhcp exited ${code}: ${text.slice(-2000)}`));
    });
  });
  const rss = pid === undefined ? 0 : rssMb(pid);
  const cpu = pid === undefined ? 0 : cpuSeconds(pid) - cpu0;
  // The second "received packets" is the REQUEST/ACK exchange; every ACK is a lease.
  const received = [...out.matchAll(/received packets: (\d+)/g)].map((m) => Number(m[1]));
  const sent = [...out.matchAll(/sent packets: (\d+)/g)].map((m) => Number(m[1]));
  const completed = received[1] ?? 0;
  // -x t prints "sent / received: S / R" (seconds) for every successful DISCOVER->OFFER and
  // REQUEST->ACK round trip: the latency of each reply, which is what p99 is taken over.
  const delays = [...out.matchAll(/sent \/ received: ([\d.]+) \/ ([\d.]+)/g)].map(
    (m) => (Number(m[2]) - Number(m[1])) * 1000,
  );
  delays.sort((a, b) => a - b);
  return {
    lps: completed / seconds,
    p99Ms: quantile(delays, 0.99),
    p50Ms: quantile(delays, 0.5),
    sent: sent[0] ?? 0,
    completed,
    rssMb: rss,
    cpuUsPerLease: completed > 0 ? (cpu * 1e6) / completed : NaN,
  };
}

/** The median of a side's rounds (by leases/s; p99 and p50 are medians of their own). */
function median(runs: Run[]): Run {
  const mid = <T>(xs: T[], key: (x: T) => number): number => {
    const v = xs.map(key).sort((a, b) => a - b);
    return v[Math.floor((v.length - 1) / 2)] ?? NaN;
  };
  return {
    lps: mid(runs, (r) => r.lps),
    p99Ms: mid(runs, (r) => r.p99Ms),
    p50Ms: mid(runs, (r) => r.p50Ms),
    sent: mid(runs, (r) => r.sent),
    completed: mid(runs, (r) => r.completed),
    rssMb: mid(runs, (r) => r.rssMb),
    cpuUsPerLease: mid(runs, (r) => r.cpuUsPerLease),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cbdhcp-bench-'));
  const load0 = loadavg();
  const procs: Started[] = [];
  try {
    await setup();
    const reservations = Array.from({ length: CLIENTS }, (_, k) => ({
      node: `n${k}.bench.crowbar.dev`,
      mac: mac(k),
      address: address(k),
      address6: address6(k),
      bootEnv: 'local',
      generation: 1,
    }));
    const data: StaticData = {
      network: {
        name: 'bench',
        subnet: SUBNET,
        dns: [SERVER_IP],
        ntp: [],
        search: [],
        routes: [],
        v6prefix: PREFIX6,
        dns6: [SERVER_IP6],
      },
      reservations,
      bootEnvs: { local: { local: true } },
    };
    writeFileSync(join(dir, 'static.json'), JSON.stringify(data));
    const startOurs = async (round: number, engine = 'native'): Promise<Started> => {
      const p = startProcess(
        'ip',
        [
          'netns',
          'exec',
          SERVER_NS,
          process.execPath,
          ...(CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`] : []),
          join(ROOT, 'dhcp-sidecar', 'main.ts'),
          '--static',
          join(dir, 'static.json'),
          '--server-ip',
          SERVER_IP,
          '--server-ip6',
          SERVER_IP6,
          '--dhcp6-interfaces',
          'br0',
          '--state-dir',
          join(dir, `state-${String(round)}`),
          '--file-root',
          dir,
          '--tftp-port',
          '0',
          '--udp-engine',
          engine,
        ],
        join(dir, 'ours.log'),
        { env: { ...process.env, LOG_LEVEL: 'warn' } },
      );
      procs.push(p);
      await waitFor(
        'sidecar ready',
        async () =>
          (await nsExec(SERVER_NS, 'curl', ['-sf', '-m', '2', `http://${SERVER_IP}:8080/readyz`]))
            .stdout === 'ok\n',
        30_000,
      );
      return p;
    };

    const kea = {
      Dhcp4: {
        'interfaces-config': { interfaces: ['br0'], 'dhcp-socket-type': 'raw' },
        'lease-database': { type: 'memfile', persist: false },
        'valid-lifetime': 3600,
        'host-reservation-identifiers': ['hw-address'],
        'control-socket': undefined,
        loggers: [{ name: 'kea-dhcp4', severity: 'WARN', output_options: [{ output: 'stdout' }] }],
        subnet4: [
          {
            id: 1,
            subnet: SUBNET,
            'option-data': [{ name: 'domain-name-servers', data: SERVER_IP }],
            reservations: reservations.map((r) => ({
              'hw-address': r.mac,
              'ip-address': r.address,
            })),
          },
        ],
      },
    };
    writeFileSync(join(dir, 'kea.json'), JSON.stringify(kea));
    mkdirSync(join(dir, 'kea-run'), { recursive: true });
    // One Kea start for both families: the binary, its config and the port it must be seen on.
    const startKea = async (binary: string, config: string, port: number): Promise<Started> => {
      const p = startProcess(
        'ip',
        ['netns', 'exec', SERVER_NS, binary, '-c', join(dir, config)],
        join(dir, `${binary}.log`),
        {
          env: {
            ...process.env,
            KEA_PIDFILE_DIR: join(dir, 'kea-run'),
            KEA_LOCKFILE_DIR: join(dir, 'kea-run'),
          },
        },
      );
      procs.push(p);
      await waitFor(
        `${binary} listening`,
        async () => (await nsExec(SERVER_NS, 'ss', ['-lun'])).stdout.includes(`:${String(port)} `),
        30_000,
      );
      return p;
    };

    const kea6 = {
      Dhcp6: {
        'interfaces-config': { interfaces: ['br0'] },
        'lease-database': { type: 'memfile', persist: false },
        'server-id': { type: 'LLT', persist: false },
        'preferred-lifetime': 3600,
        'valid-lifetime': 3600,
        'host-reservation-identifiers': ['hw-address'],
        'mac-sources': ['duid'],
        loggers: [{ name: 'kea-dhcp6', severity: 'WARN', output_options: [{ output: 'stdout' }] }],
        subnet6: [
          {
            id: 1,
            subnet: PREFIX6,
            interface: 'br0',
            'option-data': [{ name: 'dns-servers', data: SERVER_IP6 }],
            reservations: reservations.map((r) => ({
              'hw-address': r.mac,
              'ip-addresses': [r.address6],
            })),
          },
        ],
      },
    };
    writeFileSync(join(dir, 'kea6.json'), JSON.stringify(kea6));
    // ABBA order over the rounds (ours, kea, kea, ours, ...): on a shared machine the load drifts
    // during a run, and alternating keeps that drift from favouring either side.
    let started = 0;
    type Side = 'ours' | 'kea' | 'dgram';
    const sides: Side[] = DGRAM ? ['ours', 'kea', 'dgram'] : ['ours', 'kea'];
    const abba = async (family: 4 | 6, rate: number): Promise<Record<Side, Run[]>> => {
      const runs: Record<Side, Run[]> = { ours: [], kea: [], dgram: [] };
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? sides : [...sides].reverse();
        for (const side of order) {
          const server =
            side === 'ours'
              ? await startOurs(started++)
              : side === 'dgram'
                ? await startOurs(started++, 'dgram')
                : family === 4
                  ? await startKea('kea-dhcp4', 'kea.json', 67)
                  : await startKea('kea-dhcp6', 'kea6.json', 547);
          console.log(
            `round ${String(round + 1)}/${String(ROUNDS)} ${side}: perfdhcp -${String(family)} -r ${String(rate)} -R ${String(CLIENTS)} for ${String(SECONDS)}s`,
          );
          // Untimed warm-up at the same rate: every server is measured in its steady state (ours
          // would otherwise pay its JIT's start in the first timed seconds, Kea nothing).
          if (WARMUP > 0) await perfdhcp(server, family, rate, WARMUP);
          const r = await perfdhcp(server, family, rate);
          console.log(JSON.stringify(r));
          runs[side].push(r);
          await server.stop();
        }
      }
      return runs;
    };
    // Leases/s at the offered rate (both servers saturate at the default 2000/s on two cores, so
    // the reply latency there is mostly queueing), then the reply latency at a rate both carry:
    // BENCH_DHCP_LATENCY_RATE, default half the slower server's median leases/s.
    const latencyRate = (o: Run, k: Run): number =>
      Number(
        process.env['BENCH_DHCP_LATENCY_RATE'] ??
          Math.max(50, Math.floor(Math.min(o.lps, k.lps) / 2)),
      );
    const runs = await abba(4, RATE);
    const o = median(runs.ours);
    const k = median(runs.kea);
    const rate4 = latencyRate(o, k);
    const lat = await abba(4, rate4);
    const ol = median(lat.ours);
    const kl = median(lat.kea);
    const v6 = FAMILIES.includes(6);
    const none: Record<Side, Run[]> = { ours: [], kea: [], dgram: [] };
    const runs6 = v6 ? await abba(6, RATE) : none;
    const o6 = median(runs6.ours);
    const k6 = median(runs6.kea);
    const rate6 = latencyRate(o6, k6);
    const lat6 = v6 ? await abba(6, rate6) : none;
    const ol6 = median(lat6.ours);
    const kl6 = median(lat6.kea);
    const od = DGRAM ? median(runs.dgram) : undefined;
    const odl = DGRAM ? median(lat.dgram) : undefined;
    const result = {
      clients: CLIENTS,
      offered_rate: RATE,
      seconds: SECONDS,
      rounds: ROUNDS,
      ours: o,
      kea: k,
      ratio: o.lps / k.lps,
      rounds_ours: runs.ours,
      rounds_kea: runs.kea,
      latency: { rate: rate4, ours: ol, kea: kl, rounds_ours: lat.ours, rounds_kea: lat.kea },
      ...(od && odl
        ? { dgram: { ...od, rounds: runs.dgram, latency: { ...odl, rounds: lat.dgram } } }
        : {}),
      dhcp6: {
        ours: o6,
        kea: k6,
        ratio: o6.lps / k6.lps,
        rounds_ours: runs6.ours,
        rounds_kea: runs6.kea,
        latency: { rate: rate6, ours: ol6, kea: kl6, rounds_ours: lat6.ours, rounds_kea: lat6.kea },
      },
      load_average_start: load0,
      load_average: loadavg(),
      when: new Date().toISOString(),
    };
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    writeFileSync(
      join(import.meta.dirname, 'results', 'dhcp.json'),
      JSON.stringify(result, null, 2),
    );
    console.log(
      `RESULT dhcp ours_lps=${o.lps.toFixed(0)} kea_lps=${k.lps.toFixed(0)} ratio=${result.ratio.toFixed(2)} ours_p99_ms=${ol.p99Ms.toFixed(2)} kea_p99_ms=${kl.p99Ms.toFixed(2)} at_rate=${String(rate4)} saturated_p99_ms=${o.p99Ms.toFixed(2)}/${k.p99Ms.toFixed(2)} cpu_us_per_lease=${o.cpuUsPerLease.toFixed(0)}/${k.cpuUsPerLease.toFixed(0)} latency_cpu_us_per_lease=${ol.cpuUsPerLease.toFixed(0)}/${kl.cpuUsPerLease.toFixed(0)} load=${load0.map((l) => l.toFixed(1)).join(',')}->${loadavg()
        .map((l) => l.toFixed(1))
        .join(',')}`,
    );
    if (od && odl)
      console.log(
        `RESULT dhcp-dgram lps=${od.lps.toFixed(0)} ratio=${(od.lps / k.lps).toFixed(2)} p99_ms=${odl.p99Ms.toFixed(2)} at_rate=${String(rate4)} saturated_p99_ms=${od.p99Ms.toFixed(2)} cpu_us_per_lease=${od.cpuUsPerLease.toFixed(0)} latency_cpu_us_per_lease=${odl.cpuUsPerLease.toFixed(0)}`,
      );
    if (v6)
      console.log(
        `RESULT dhcp6 ours_lps=${o6.lps.toFixed(0)} kea_lps=${k6.lps.toFixed(0)} ratio=${result.dhcp6.ratio.toFixed(2)} ours_p99_ms=${ol6.p99Ms.toFixed(2)} kea_p99_ms=${kl6.p99Ms.toFixed(2)} at_rate=${String(rate6)} saturated_p99_ms=${o6.p99Ms.toFixed(2)}/${k6.p99Ms.toFixed(2)} cpu_us_per_lease=${o6.cpuUsPerLease.toFixed(0)}/${k6.cpuUsPerLease.toFixed(0)}`,
      );
  } finally {
    for (const p of procs) await p.stop(5000);
    for (const ns of [CLIENT_NS, SERVER_NS]) await deleteNamespace(ns);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
