/**
 * make bench-ipam: N addresses (default 5,000; BENCH_IPAM_ADDRESSES) allocated in one network by
 * the real operator against the real API server: N nodes, each with a planned `network-bench`
 * noderole, given a v4 address when the Network appears. Timed from the Network's create to the
 * moment every noderole's wall names its address (NetworkAllocation created, wall committed).
 *
 * Compared in the same run with the floor: N raw NetworkAllocation creates, of the same shape,
 * issued by the same client at the allocator's concurrency, with no decisions and no wall writes.
 *
 * Prints `RESULT ipam allocations_per_s=... floor_ratio=... rss_mb=...` and writes
 * bench/results/ipam.json.
 */
import { Watch } from '@kubernetes/client-node';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { bin } from '../test/harness/bins.ts';
import type { NodeRole } from '../generated/crowbar.ts';
import { ALLOCATOR_WORKERS } from '../operator/controllers/network/allocator.ts';
import { ALLOCATION_FINALIZER, wallAddresses } from '../operator/controllers/network/plan.ts';
import { allocationName, formatIp } from '../operator/ipam/index.ts';
import { CrowbarClient, loadKubeConfig } from '../operator/kube/client.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { startOperator } from '../test/harness/operator.ts';
import { waitFor } from '../test/harness/process.ts';
import { pool, rssMb } from './util.ts';

const N = Number(process.env['BENCH_IPAM_ADDRESSES'] ?? 5000);
const CONCURRENCY = ALLOCATOR_WORKERS;
const FM = 'crowbar-bench';
const NETWORK = 'bench';

const nodeName = (j: number): string => `n${j}.ipam-bench.crowbar.dev`;
const nrName = (j: number): string => `network-${NETWORK}.${nodeName(j)}`;

/**
 * Resolves once N network noderoles name their address in their wall, from a watch on NodeRoles
 * (restarted, with the server's current state, whenever the server ends it).
 */
function watchWalls(kubeconfig: string, n: number): { all: Promise<void>; stop: () => void } {
  const kc = loadKubeConfig(kubeconfig);
  const walled = new Set<string>();
  let stopped = false;
  let abort: AbortController | undefined;
  let resolve = (): void => undefined;
  const all = new Promise<void>((r) => (resolve = r));
  const start = async (): Promise<void> => {
    if (stopped) return;
    abort = await new Watch(kc).watch(
      '/apis/crowbar.dev/v1alpha1/noderoles',
      {},
      (phase, obj) => {
        const nr = obj as NodeRole;
        if (nr.spec.role !== `network-${NETWORK}`) return;
        const name = nr.metadata.name ?? '';
        if (phase !== 'DELETED' && wallAddresses(nr, NETWORK).length === 1) walled.add(name);
        else walled.delete(name);
        if (walled.size === n) resolve();
      },
      () => {
        restart();
      },
    );
  };
  let restarts = 0;
  const restart = (): void => {
    if (stopped) return;
    if (++restarts > 100) throw new Error('the NodeRole watch keeps failing');
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

/** The API server's crowbar.dev request counts by resource and verb (writes and reads alike). */
function apiRequests(kubeconfig: string): Map<string, number> {
  const text = execFileSync(
    bin('kubectl'),
    ['--kubeconfig', kubeconfig, 'get', '--raw', '/metrics'],
    {
      encoding: 'utf8',
      maxBuffer: 256 << 20,
    },
  );
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
    // Walls are counted from a watch: listing every NodeRole in a polling loop would load the API
    // server the allocator is measured against (the floor has no such load).
    // The operator's start-up writes (each Node's first state, each NodeRole's message) are not
    // allocation: the clock starts once the API server has seen no crowbar.dev write for 3 s.
    let quiet = 0;
    let lastWrites = -1;
    await waitFor(
      'the operator to settle',
      () => {
        const writes = [...apiRequests(cp.kubeconfig)]
          .filter(([k]) => !k.startsWith('GET') && !k.startsWith('LIST') && !k.startsWith('WATCH'))
          .reduce((sum, [, v]) => sum + v, 0);
        quiet = writes === lastWrites ? quiet + 1 : 0;
        lastWrites = writes;
        return Promise.resolve(quiet >= 3);
      },
      10 * 60_000,
      1000,
    );
    const walled = watchWalls(cp.kubeconfig, N);
    const requests0 = apiRequests(cp.kubeconfig);
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
    await waitFor(
      'network status counts every allocation',
      async () => (await client.get('Network', NETWORK))?.status?.allocated === N,
      30 * 60_000,
      200,
    );
    await Promise.race([
      walled.all,
      new Promise((_, reject) =>
        setTimeout(() => {
          reject(new Error('not every noderole named its address within 30 min'));
        }, 30 * 60_000).unref(),
      ),
    ]);
    const allocMs = performance.now() - t0;
    // Counted from the Network's create to the last wall, the operator's and this watch's alike.
    const requests = perAllocation(requests0, apiRequests(cp.kubeconfig), N);
    console.log(`API requests per allocation: ${JSON.stringify(requests)}`);
    const rss = op.proc.pid ? rssMb(op.proc.pid) : 0;
    const allocs = await client.list('NetworkAllocation', `crowbar.dev/network=${NETWORK}`);
    const distinct = new Set(allocs.map((a) => a.spec.address)).size;
    if (allocs.length !== N || distinct !== N)
      throw new Error(
        `expected ${N} distinct allocations, found ${allocs.length} (${distinct} distinct)`,
      );
    writeFileSync(
      join(cp.dir, '..', 'crowbar-bench-ipam-metrics.txt'),
      (await op.http('/metrics')).body,
    );
    await op.stop();
    walled.stop();

    // --- The floor: the same creates, no decisions, same client and concurrency. ---
    const owner = await client.get('NodeRole', nrName(0));
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
    console.log(`floor: ${N} creates in ${(floorMs / 1000).toFixed(1)} s`);

    const result = {
      addresses: N,
      concurrency: CONCURRENCY,
      allocate_s: allocMs / 1000,
      floor_s: floorMs / 1000,
      allocations_per_s: N / (allocMs / 1000),
      floor_creates_per_s: N / (floorMs / 1000),
      floor_ratio: allocMs / floorMs,
      rss_mb: rss,
      api_requests_per_allocation: requests,
      measured_at: new Date().toISOString(),
    };
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    writeFileSync(
      join(import.meta.dirname, 'results', 'ipam.json'),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    console.log(
      `RESULT ipam allocations_per_s=${result.allocations_per_s.toFixed(1)} floor_ratio=${result.floor_ratio.toFixed(2)} rss_mb=${rss.toFixed(0)}`,
    );
  } finally {
    await cp.stop();
  }
}

await main();
