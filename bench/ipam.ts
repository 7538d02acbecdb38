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
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
      env: { LOG_LEVEL: 'warn' },
    });
    await waitFor('operator ready', async () => (await op.http('/readyz')).status === 200, 120_000);
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
    let walls = 0;
    await waitFor(
      'every noderole names its address',
      async () => {
        const nrs = await client.list('NodeRole');
        walls = nrs.filter(
          (nr) => nr.spec.role === `network-${NETWORK}` && wallAddresses(nr, NETWORK).length === 1,
        ).length;
        return walls === N;
      },
      30 * 60_000,
      500,
    );
    const allocMs = performance.now() - t0;
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
