/**
 * `make bench-write-cost`: what one NodeRole status write costs the API server, by the size of
 * the object and by the kind of write, on the real API server and etcd of the benchmarks.
 *
 * For each size (BENCH_WRITE_SIZES_KB, default 0,2,8,32,128: extra status data in the object, as
 * a run input or a wall would be, in entries of ~64 bytes) one NodeRole is written
 * BENCH_WRITES times (default 300), one write after another, each changing only its message with
 * the resourceVersion precondition the annealer sends. Then, at the base size, the same change as
 * a server-side apply, as a JSON patch, and as a merge patch sent with undici alone instead of
 * client-node. Each case reports the writes' latency (p50, p99), the CPU the API server and etcd
 * used per write (from /proc: what the write cost, whatever else the machine was doing; the
 * latency is what a caller waits on this machine at its load) and the caller's own CPU per write.
 *
 * Prints one `RESULT write-cost ...` line per case and writes bench/results/write-cost.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, PLURALS, VERSION, type NodeRole } from '../generated/crowbar.ts';
import { CrowbarClient, loadKubeConfig } from '../operator/kube/client.ts';
import { kubeRequest } from '../operator/kube/request.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { childPids, cpuSeconds } from './util.ts';

const SIZES_KB = (process.env['BENCH_WRITE_SIZES_KB'] ?? '0,2,8,32,128')
  .split(',')
  .map(Number)
  .filter((n) => Number.isFinite(n) && n >= 0);
const WRITES = Number(process.env['BENCH_WRITES'] ?? 300);
const FM = 'crowbar-bench';

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
}

/** Status data of about `kb` KiB in entries of ~64 bytes (many small fields, as run input has). */
function payload(kb: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < (kb * 1024) / 64; i++) {
    out[`key${String(i).padStart(5, '0')}`] = { value: `v-${String(i).padStart(24, '0')}`, n: i };
  }
  return out;
}

async function main(): Promise<void> {
  console.log(`bench-write-cost: sizes ${SIZES_KB.join(', ')} KiB, ${WRITES} writes each`);
  const cp = await startControlPlane({ controllerManager: false });
  try {
    const client = new CrowbarClient(loadKubeConfig(cp.kubeconfig));
    const [apiserver] = childPids('kube-apiserver');
    const [etcd] = childPids('etcd');
    if (apiserver === undefined || etcd === undefined)
      throw new Error('could not find the kube-apiserver and etcd this benchmark started');
    const cpu = (): number => cpuSeconds(apiserver) + cpuSeconds(etcd);

    const make = async (name: string, kb: number): Promise<NodeRole> => {
      const nr = await client.create(
        'NodeRole',
        { metadata: { name }, spec: { role: 'wc', node: name.slice(3), deployment: 'wc' } },
        FM,
      );
      return client.mergePatchStatus(
        'NodeRole',
        name,
        {
          metadata: { resourceVersion: nr.metadata.resourceVersion },
          status: { state: 'active', message: 'seeded', cohort: 0, runCount: 1, wall: payload(kb) },
        },
        FM,
      );
    };

    const results: Record<string, unknown>[] = [];
    const measure = async (
      label: string,
      kb: number,
      write: (cur: NodeRole, i: number) => Promise<NodeRole>,
    ): Promise<void> => {
      let cur = await make(`wc.${label}.n.bench.crowbar.dev`, kb);
      const bytes = Buffer.byteLength(JSON.stringify(cur));
      for (let i = 0; i < 20; i++) cur = await write(cur, i); // warm the connection and caches
      const ms: number[] = [];
      const cpu0 = cpu();
      const self0 = process.cpuUsage();
      for (let i = 0; i < WRITES; i++) {
        const t = performance.now();
        cur = await write(cur, i);
        ms.push(performance.now() - t);
      }
      const r = {
        case: label,
        object_bytes: bytes,
        writes: WRITES,
        p50_ms: quantile(ms, 0.5),
        p99_ms: quantile(ms, 0.99),
        server_cpu_ms_per_write: ((cpu() - cpu0) * 1000) / WRITES,
        // The caller's side: this process's CPU per write (building, sending, parsing).
        client_cpu_ms_per_write: (() => {
          const u = process.cpuUsage(self0);
          return (u.user + u.system) / 1000 / WRITES;
        })(),
        load: loadavg()[0] ?? 0,
      };
      results.push(r);
      console.log(
        `RESULT write-cost case=${label} object_bytes=${String(bytes)} p50_ms=${r.p50_ms.toFixed(1)} p99_ms=${r.p99_ms.toFixed(1)} server_cpu_ms_per_write=${r.server_cpu_ms_per_write.toFixed(2)} client_cpu_ms_per_write=${r.client_cpu_ms_per_write.toFixed(2)} load=${r.load.toFixed(1)}`,
      );
    };

    const merge = (cur: NodeRole, i: number): Promise<NodeRole> =>
      client.mergePatchStatus(
        'NodeRole',
        cur.metadata.name ?? '',
        {
          metadata: { resourceVersion: cur.metadata.resourceVersion },
          status: { message: `w${String(i)}` },
        },
        FM,
      );
    for (const kb of SIZES_KB) await measure(`merge-${String(kb)}k`, kb, merge);
    const base = SIZES_KB[0] ?? 0;
    await measure(`apply-${String(base)}k`, base, (cur, i) =>
      client.applyStatus(
        'NodeRole',
        cur.metadata.name ?? '',
        { message: `w${String(i)}` },
        FM,
        cur.metadata.resourceVersion,
      ),
    );
    await measure(`jsonpatch-${String(base)}k`, base, (cur, i) =>
      client.jsonPatchStatus(
        'NodeRole',
        cur.metadata.name ?? '',
        [
          { op: 'test', path: '/metadata/resourceVersion', value: cur.metadata.resourceVersion },
          { op: 'replace', path: '/status/message', value: `w${String(i)}` },
        ],
        FM,
      ),
    );
    // The same merge patch through client-node's generated method, as CrowbarClient sent every
    // write before ADR 0031 (the cases above take the lean path of operator/kube/request.ts).
    await measure(`merge-client-node-${String(base)}k`, base, async (cur, i) => {
      return (await client.api.patchClusterCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          plural: PLURALS.NodeRole,
          name: cur.metadata.name ?? '',
          body: {
            metadata: { resourceVersion: cur.metadata.resourceVersion },
            status: { message: `w${String(i)}` },
          },
          fieldManager: FM,
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )) as NodeRole;
    });
    // The same merge patch without client-node: one undici request on a kept connection with the
    // same TLS identity, over HTTP/2 (what client-node's dispatcher negotiates) and over HTTP/1.1.
    // What client-node's request path (its serializer, middleware and per-request set-up) adds on
    // the caller's side, and what the protocol costs both sides.
    const tls = {
      ca: readFileSync(cp.pki.caCrt),
      cert: readFileSync(cp.pki.adminCrt),
      key: readFileSync(cp.pki.adminKey),
    };
    for (const [label, agent] of [
      ['merge-undici', new Agent({ connect: tls })],
      ['merge-undici-http1', new Agent({ connect: tls, allowH2: false })],
    ] as const)
      try {
        await measure(`${label}-${String(base)}k`, base, async (cur, i) => {
          const res = await request(
            `${cp.server}/apis/crowbar.dev/v1alpha1/noderoles/${cur.metadata.name ?? ''}/status?fieldManager=${FM}`,
            {
              method: 'PATCH',
              dispatcher: agent,
              headers: {
                'content-type': 'application/merge-patch+json',
                accept: 'application/json',
              },
              body: JSON.stringify({
                metadata: { resourceVersion: cur.metadata.resourceVersion },
                status: { message: `w${String(i)}` },
              }),
            },
          );
          const body = (await res.body.json()) as NodeRole;
          if (res.statusCode !== 200) throw new Error(`PATCH answered ${String(res.statusCode)}`);
          return body;
        });
      } finally {
        await agent.close();
      }
    // An Event as the operator's recorder sends one for a transition (operator/events.ts): what
    // each costs beside the status writes it accompanies (ADR 0031).
    const kc = loadKubeConfig(cp.kubeconfig);
    await measure('event', base, async (cur, i) => {
      const now = new Date().toISOString();
      await kubeRequest(kc, 'POST', '/api/v1/namespaces/default/events', {
        contentType: 'application/json',
        json: JSON.stringify({
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { generateName: `${cur.metadata.name ?? ''}.` },
          involvedObject: {
            kind: 'NodeRole',
            name: cur.metadata.name,
            uid: cur.metadata.uid,
            apiVersion: 'crowbar.dev/v1alpha1',
          },
          type: 'Normal',
          reason: 'Running',
          message: `todo -> transition: running ${String(i)}`,
          source: { component: 'crowbar-operator' },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
          reportingComponent: 'crowbar-operator',
        }),
      });
      return cur;
    });
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    writeFileSync(
      join(import.meta.dirname, 'results', 'write-cost.json'),
      `${JSON.stringify({ measured_at: new Date().toISOString(), results }, null, 2)}\n`,
    );
  } finally {
    await cp.stop();
  }
}

await main();
