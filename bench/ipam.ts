/**
 * make bench-ipam: N addresses (default 5,000; BENCH_IPAM_ADDRESSES) allocated in one network by
 * the real operator against the real API server: N nodes, each with a planned `network-bench`
 * noderole, given a v4 address when the Network appears. Timed from the Network's create to the
 * moment every binding holds its address (ADR 0025: the allocation's create is the commit point;
 * seen from a watch on NetworkAllocations). Reported beside it, not in the ratio: the moment every
 * Node's status.addresses names its address (what `kubectl get cbnode -o wide` shows).
 *
 * Compared in the same run with the floor: N raw NetworkAllocation creates, of the same shape,
 * issued by the same client at the allocator's concurrency, with no decisions.
 *
 * Where the time goes: the API server's requests per allocation by verb and resource, CPU seconds
 * of the API server, etcd and the operator during allocation, and the allocator's mean reconcile
 * time (its 16 workers each wait on one create at a time, so 16 / mean is its ceiling).
 *
 * Prints `RESULT ipam allocations_per_s=... floor_ratio=... rss_mb=...` and writes
 * bench/results/ipam.json.
 */
import { Watch } from '@kubernetes/client-node';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { bin } from '../test/harness/bins.ts';
import type { NetworkAllocation, Node } from '../generated/crowbar.ts';
import { ALLOCATOR_WORKERS } from '../operator/controllers/network/allocator.ts';
import { ALLOCATION_FINALIZER } from '../operator/controllers/network/plan.ts';
import { allocationName, formatIp } from '../operator/ipam/index.ts';
import { CrowbarClient, loadKubeConfig } from '../operator/kube/client.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { startOperator } from '../test/harness/operator.ts';
import { waitFor } from '../test/harness/process.ts';
import { cpuSeconds, pool, rssMb } from './util.ts';

const N = Number(process.env['BENCH_IPAM_ADDRESSES'] ?? 5000);
const CONCURRENCY = ALLOCATOR_WORKERS;
const FM = 'crowbar-bench';
const NETWORK = 'bench';

const nodeName = (j: number): string => `n${j}.ipam-bench.crowbar.dev`;
const nrName = (j: number): string => `network-${NETWORK}.${nodeName(j)}`;

/**
 * Resolves `all` once `done` holds for N objects of a watched collection (the watch restarted,
 * with the server's current state, whenever the server ends it).
 */
function watchCount(
  kubeconfig: string,
  path: string,
  n: number,
  done: (obj: unknown) => boolean,
): { all: Promise<void>; stop: () => void } {
  const kc = loadKubeConfig(kubeconfig);
  const seen = new Set<string>();
  let stopped = false;
  let abort: AbortController | undefined;
  let resolve = (): void => undefined;
  const all = new Promise<void>((r) => (resolve = r));
  const start = async (): Promise<void> => {
    if (stopped) return;
    abort = await new Watch(kc).watch(
      path,
      {},
      (phase, obj) => {
        const name = (obj as { metadata: { name?: string } }).metadata.name ?? '';
        if (phase !== 'DELETED' && done(obj)) seen.add(name);
        else seen.delete(name);
        if (seen.size === n) resolve();
      },
      () => {
        restart();
      },
    );
  };
  let restarts = 0;
  const restart = (): void => {
    if (stopped) return;
    if (++restarts > 100) throw new Error(`the watch on ${path} keeps failing`);
    setTimeout(() => {
      start().catch(restart);
    }, 200);
  };
  start().catch(restart);
  return {
    all,
    stop: () => {
      stopped = true;
      abort?.abort();
    },
  };
}

/** Resolves with the time (performance.now()) `p` settled, rejecting after 30 minutes. */
async function settledAt(what: string, p: Promise<void>): Promise<number> {
  await Promise.race([
    p,
    new Promise((_, reject) =>
      setTimeout(() => {
        reject(new Error(`${what}: not done within 30 min`));
      }, 30 * 60_000).unref(),
    ),
  ]);
  return performance.now();
}

/** A counter or gauge from a Prometheus text page: the sum of the lines of that name and labels. */
function metricSum(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || !line.includes(labels)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

function apiMetrics(kubeconfig: string): string {
  return execFileSync(bin('kubectl'), ['--kubeconfig', kubeconfig, 'get', '--raw', '/metrics'], {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
  });
}

/** The API server's crowbar.dev request counts by resource and verb (writes and reads alike). */
function apiRequests(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{') || !line.includes('group="crowbar.dev"'))
      continue;
    const resource = /resource="([^"]*)"/.exec(line)?.[1] ?? '';
    const sub = /subresource="([^"]*)"/.exec(line)?.[1] ?? '';
    const verb = /verb="([^"]*)"/.exec(line)?.[1] ?? '';
    const key = `${verb} ${resource}${sub ? `/${sub}` : ''}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

/** What changed between two apiRequests readings, per allocation, largest first. */
function perAllocation(before: Map<string, number>, after: Map<string, number>, n: number) {
  return Object.fromEntries(
    [...after]
      .map(([k, v]) => [k, (v - (before.get(k) ?? 0)) / n] as const)
      .filter(([, v]) => v > 0)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => [k, Number(v.toFixed(2))]),
  );
}

/** The allocator's reconcile count and summed seconds, from the operator's metrics page. */
function allocatorReconciles(text: string): { count: number; sum: number } {
  const labels = 'controller="ipam-allocator"';
  return {
    count: metricSum(text, 'crowbar_reconcile_duration_seconds_count', labels),
    sum: metricSum(text, 'crowbar_reconcile_duration_seconds_sum', labels),
  };
}

async function main(): Promise<void> {
  if (!Number.isInteger(N) || N < 1 || N > 60_000)
    throw new Error('BENCH_IPAM_ADDRESSES must be an integer from 1 to 60000');
  console.log(`bench-ipam: ${N} addresses in one network, ${CONCURRENCY} concurrent creates`);
  const cp = await startControlPlane({ controllerManager: false });
  try {
    const client = new CrowbarClient(loadKubeConfig(cp.kubeconfig));
    const js = Array.from({ length: N }, (_, j) => j);
    // --- Seed: nodes and planned network noderoles, as the binder leaves them. ---
    await client.create(
      'Deployment',
      { metadata: { name: 'bench-ipam' }, spec: { parent: 'system', state: 'proposed' } },
      FM,
    );
    await pool(js, 32, async (j) => {
      await client.create(
        'Node',
        {
          metadata: { name: nodeName(j), annotations: { 'crowbar.dev/auto-bound': 'true' } },
          spec: { available: true },
        },
        FM,
      );
      const nr = await client.create(
        'NodeRole',
        {
          metadata: { name: nrName(j) },
          spec: { role: `network-${NETWORK}`, node: nodeName(j), deployment: 'bench-ipam' },
        },
        FM,
      );
      await client.mergePatchStatus(
        'NodeRole',
        nrName(j),
        {
          metadata: { resourceVersion: nr.metadata.resourceVersion },
          status: { state: 'proposed', cohort: 0, parents: [], runCount: 0, message: 'proposed' },
        },
        FM,
      );
    });
    console.log('seeded');

    // --- The operator: allocation starts when the Network appears. ---
    const op = await startOperator({
      kubeconfig: cp.kubeconfig,
      logDir: cp.dir,
      identity: 'bench-ipam',
      args: ['--leader-elect=false'],
      env: {
        LOG_LEVEL: 'warn',
        // BENCH_IPAM_CPU_PROF=DIR: the operator runs under --cpu-prof and leaves its profile there.
        ...(process.env['BENCH_IPAM_CPU_PROF']
          ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env['BENCH_IPAM_CPU_PROF']}` }
          : {}),
      },
    });
    await waitFor('operator ready', async () => (await op.http('/readyz')).status === 200, 120_000);
    // The operator's start-up writes (each Node's first state, each NodeRole's message) are not
    // allocation: the clock starts once the API server has seen no crowbar.dev write for 3 s.
    let quiet = 0;
    let lastWrites = -1;
    await waitFor(
      'the operator to settle',
      () => {
        const writes = [...apiRequests(apiMetrics(cp.kubeconfig))]
          .filter(([k]) => !k.startsWith('GET') && !k.startsWith('LIST') && !k.startsWith('WATCH'))
          .reduce((sum, [, v]) => sum + v, 0);
        quiet = writes === lastWrites ? quiet + 1 : 0;
        lastWrites = writes;
        return Promise.resolve(quiet >= 3);
      },
      10 * 60_000,
      1000,
    );
    // Counted from watches: listing every object in a polling loop would load the API server the
    // allocator is measured against (the floor has no such load).
    const held = watchCount(
      cp.kubeconfig,
      '/apis/crowbar.dev/v1alpha1/networkallocations',
      N,
      (a) => (a as NetworkAllocation).spec.network === NETWORK,
    );
    const addressed = watchCount(cp.kubeconfig, '/apis/crowbar.dev/v1alpha1/nodes', N, (n) =>
      ((n as Node).status?.addresses ?? []).some((x) => x.network === NETWORK),
    );
    const cpuNow = (apiText: string) => ({
      apiserver: metricSum(apiText, 'process_cpu_seconds_total'),
      etcd: cp.etcd.proc.pid ? cpuSeconds(cp.etcd.proc.pid) : 0,
      operator: op.proc.pid ? cpuSeconds(op.proc.pid) : 0,
    });
    const metrics0 = apiMetrics(cp.kubeconfig);
    const cpu0 = cpuNow(metrics0);
    const reconcile0 = allocatorReconciles((await op.http('/metrics')).body);
    const t0 = performance.now();
    await client.create(
      'Network',
      {
        metadata: { name: NETWORK },
        spec: {
          category: 'general',
          subnet: '10.0.0.0/16',
          ranges: [{ name: 'host', first: '10.0.0.10', last: '10.0.255.250' }],
        },
      },
      FM,
    );
    const tHeld = await settledAt('every binding holds its address', held.all);
    const allocMs = tHeld - t0;
    // Counted from the Network's create to the last allocation, the operator's and the watches'.
    const metrics1 = apiMetrics(cp.kubeconfig);
    const cpu1 = cpuNow(metrics1);
    const reconcile1 = allocatorReconciles((await op.http('/metrics')).body);
    const requests = perAllocation(apiRequests(metrics0), apiRequests(metrics1), N);
    console.log(`API requests per allocation: ${JSON.stringify(requests)}`);
    const nodesMs = (await settledAt('every Node lists its address', addressed.all)) - t0;
    const requestsNodes = perAllocation(
      apiRequests(metrics0),
      apiRequests(apiMetrics(cp.kubeconfig)),
      N,
    );
    console.log(`... to the last Node address: ${JSON.stringify(requestsNodes)}`);
    const cpu = {
      apiserver_s: cpu1.apiserver - cpu0.apiserver,
      etcd_s: cpu1.etcd - cpu0.etcd,
      operator_s: cpu1.operator - cpu0.operator,
    };
    const reconciles = reconcile1.count - reconcile0.count;
    const meanReconcileMs =
      reconciles > 0 ? ((reconcile1.sum - reconcile0.sum) / reconciles) * 1000 : 0;
    console.log(
      `allocation: ${(allocMs / 1000).toFixed(1)} s; CPU s apiserver ${cpu.apiserver_s.toFixed(1)} etcd ${cpu.etcd_s.toFixed(1)} operator ${cpu.operator_s.toFixed(1)}; allocator ${reconciles} reconciles, mean ${meanReconcileMs.toFixed(1)} ms`,
    );
    const rss = op.proc.pid ? rssMb(op.proc.pid) : 0;
    const allocs = await client.list('NetworkAllocation', `crowbar.dev/network=${NETWORK}`);
    const distinct = new Set(allocs.map((a) => a.spec.address)).size;
    const nodes = new Set(allocs.map((a) => a.spec.node)).size;
    if (allocs.length !== N || distinct !== N || nodes !== N)
      throw new Error(
        `expected ${N} allocations to ${N} nodes, found ${allocs.length} (${distinct} distinct addresses, ${nodes} nodes)`,
      );
    writeFileSync(
      join(cp.dir, '..', 'crowbar-bench-ipam-metrics.txt'),
      (await op.http('/metrics')).body,
    );
    await op.stop();
    held.stop();
    addressed.stop();

    // --- The floor: the same creates, no decisions, same client and concurrency. ---
    const owner = await client.get('NodeRole', nrName(0));
    // The operator has stopped: only the API server and etcd.
    const serverCpu = () => ({
      apiserver: metricSum(apiMetrics(cp.kubeconfig), 'process_cpu_seconds_total'),
      etcd: cp.etcd.proc.pid ? cpuSeconds(cp.etcd.proc.pid) : 0,
    });
    const floorCpu0 = serverCpu();
    const tFloor = performance.now();
    await pool(js, CONCURRENCY, async (j) => {
      const ip = { family: 'ipv4' as const, value: 0x0a010000n + BigInt(j + 10) };
      await client.create(
        'NetworkAllocation',
        {
          metadata: {
            name: allocationName('floor', ip),
            labels: { 'crowbar.dev/network': 'floor' },
            finalizers: [ALLOCATION_FINALIZER],
            ownerReferences: [
              {
                apiVersion: 'crowbar.dev/v1alpha1',
                kind: 'NodeRole',
                name: nrName(0),
                uid: owner?.metadata.uid ?? '',
              },
            ],
          },
          spec: {
            network: 'floor',
            node: nodeName(j),
            address: `${formatIp(ip)}/16`,
            family: 'ipv4',
            range: 'host',
          },
        },
        FM,
      );
    });
    const floorMs = performance.now() - tFloor;
    const floorCpu1 = serverCpu();
    const cpuFloor = {
      apiserver_s: floorCpu1.apiserver - floorCpu0.apiserver,
      etcd_s: floorCpu1.etcd - floorCpu0.etcd,
    };
    console.log(
      `floor: ${N} creates in ${(floorMs / 1000).toFixed(1)} s; CPU s apiserver ${cpuFloor.apiserver_s.toFixed(1)} etcd ${cpuFloor.etcd_s.toFixed(1)}`,
    );

    const result = {
      addresses: N,
      concurrency: CONCURRENCY,
      allocate_s: allocMs / 1000,
      floor_s: floorMs / 1000,
      allocations_per_s: N / (allocMs / 1000),
      floor_creates_per_s: N / (floorMs / 1000),
      floor_ratio: allocMs / floorMs,
      nodes_addressed_s: nodesMs / 1000,
      floor_ratio_nodes_addressed: nodesMs / floorMs,
      rss_mb: rss,
      api_requests_per_allocation: requests,
      api_requests_per_allocation_to_last_node_address: requestsNodes,
      cpu_during_allocation: cpu,
      cpu_during_floor: cpuFloor,
      allocator_reconciles: reconciles,
      allocator_mean_reconcile_ms: meanReconcileMs,
      load_average: loadavg().map((x) => Number(x.toFixed(1))),
      measured_at: new Date().toISOString(),
    };
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    writeFileSync(
      join(import.meta.dirname, 'results', 'ipam.json'),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    console.log(
      `RESULT ipam allocations_per_s=${result.allocations_per_s.toFixed(1)} floor_ratio=${result.floor_ratio.toFixed(2)} floor_ratio_nodes_addressed=${result.floor_ratio_nodes_addressed.toFixed(2)} rss_mb=${rss.toFixed(0)} load=${result.load_average.join(',')}`,
    );
  } finally {
    await cp.stop();
  }
}

await main();
