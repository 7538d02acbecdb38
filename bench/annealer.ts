/**
 * make bench-annealer: N nodes × M roles (default 1,000 × 10, noop jig) annealed by the real
 * operator against the real API server, compared in the same run with the floor: the status
 * writes the work needs, one state at a time (per noderole: commit to todo or blocked, its noop run
 * todo -> active in one write (ADR 0034); per child: blocked -> todo), issued by the same client
 * at the same concurrency as the annealer's run cap, with the same optimistic-concurrency
 * preconditions. The annealer writes fewer: a state decided and replaced before it was sent is
 * never sent (a child unblocked and started in one pass is one write).
 *
 * p99_unblock_ms is measured in a second, unsaturated phase (one run slot per node), from the
 * parent's run.finished to the child's run.started: the parent's active write to the API server,
 * then the annealer's decision. p99_decide_ms_at_most is the decision alone (from the operator's
 * crowbar_annealer_unblock_seconds histogram, as a bucket bound). p99_unblock_saturated_ms in the
 * main phase includes waiting for a slot behind lower cohorts.
 *
 * Prints `RESULT annealer noderoles_per_s=... floor_ratio=... p99_unblock_ms=... rss_mb=...` and
 * writes bench/results/annealer.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { NodeRole } from '../generated/crowbar.ts';
import { CrowbarClient, loadKubeConfig } from '../operator/kube/client.ts';
import { startControlPlane, type ControlPlane } from '../test/harness/control-plane.ts';
import { startOperator } from '../test/harness/operator.ts';
import { waitFor } from '../test/harness/process.ts';
import { childPids, cpuSeconds, histogramQuantileMs, pool, rssMb } from './util.ts';

const N = Number(process.env['BENCH_NODES'] ?? 1000);
const M = Number(process.env['BENCH_ROLES'] ?? 10);
const CAP = Number(process.env['BENCH_MAX_CONCURRENT'] ?? 10);
const FM = 'crowbar-bench';

/** A Prometheus sample's value (a counter with its labels written out), 0 when absent. */
function sample(metrics: string, series: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  return Number(line?.slice(series.length + 1) ?? 0);
}

/** A GET of the API server with the admin certificate: its body (the API server's /metrics). */
async function adminText(cp: ControlPlane, path: string): Promise<string> {
  return (await adminBytes(cp, path)).toString('utf8');
}

/** A GET of the API server with the admin certificate: its body as bytes (a pprof profile). */
function adminBytes(cp: ControlPlane, path: string, timeoutMs = 30_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${cp.server}${path}`,
      {
        ca: readFileSync(cp.pki.caCrt),
        cert: readFileSync(cp.pki.adminCrt),
        key: readFileSync(cp.pki.adminKey),
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve(Buffer.concat(chunks));
        });
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.end();
  });
}

/** Requests from `before` to `after` per noderole, most first; watches and what did not grow left out. */
function perNoderole(
  before: Map<string, number>,
  after: Map<string, number>,
  noderoles: number,
): Record<string, number> {
  return Object.fromEntries(
    [...after]
      .map(
        ([k, n]) => [k, Math.round(((n - (before.get(k) ?? 0)) / noderoles) * 100) / 100] as const,
      )
      .filter(([k, n]) => n > 0 && !k.startsWith('WATCH'))
      .sort(([, x], [, y]) => y - x),
  );
}

/**
 * The API server's requests by `verb resource[/subresource]` (and the code when not 2xx), summed
 * over its other labels.
 */
function apiRequests(metrics: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of metrics.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const label = (k: string): string => new RegExp(`[{,]${k}="([^"]*)"`).exec(line)?.[1] ?? '';
    const sub = label('subresource');
    // A refused request (409 conflict, 429) is named with its code: it is work done twice.
    const code = label('code');
    const refused = code !== '' && !code.startsWith('2') ? ` ${code}` : '';
    const key = `${label('verb')} ${label('resource')}${sub ? `/${sub}` : ''}${refused}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
}

const roleName = (i: number, prefix = 'bench'): string => `${prefix}-r${i}`;
const nodeName = (j: number): string => `n${j}.bench.crowbar.dev`;
const nrName = (i: number, j: number, prefix = 'bench'): string =>
  `${roleName(i, prefix)}.${nodeName(j)}`;

/** Creates the bound noderoles of a deployment: a chain of M implicit roles on each node. */
async function seed(
  client: CrowbarClient,
  deployment: string,
  prefix: string,
  nodes = N,
): Promise<string[]> {
  await client.create(
    'Deployment',
    { metadata: { name: deployment }, spec: { parent: 'system', state: 'proposed' } },
    FM,
  );
  for (let i = 0; i < M; i++) {
    const requires = i > 0 ? { requires: [roleName(i - 1, prefix)] } : {};
    await client.create(
      'Role',
      {
        metadata: { name: roleName(i, prefix) },
        spec: { jig: 'noop', flags: ['implicit'], ...requires },
      },
      FM,
    );
  }
  const names: { name: string; i: number; j: number }[] = [];
  for (let j = 0; j < nodes; j++)
    for (let i = 0; i < M; i++) names.push({ name: nrName(i, j, prefix), i, j });
  await pool(names, 32, async ({ name, i, j }) => {
    const nr = await client.create(
      'NodeRole',
      { metadata: { name }, spec: { role: roleName(i, prefix), node: nodeName(j), deployment } },
      FM,
    );
    await client.mergePatchStatus(
      'NodeRole',
      name,
      {
        metadata: { resourceVersion: nr.metadata.resourceVersion },
        status: {
          state: 'proposed',
          cohort: i,
          runCount: 0,
          parents: i === 0 ? [] : [nrName(i - 1, j, prefix)],
          message: 'proposed',
        },
      },
      FM,
    );
  });
  return names.map((x) => x.name);
}

/** Parent-active-to-child-start latencies of a deployment's noderoles, and runs counted. */
async function unblockLatencies(
  client: CrowbarClient,
  deployment: string,
): Promise<{
  unblock: number[];
  runs: number;
  byCohort: Record<number, number>;
  bytes: number;
  managedBytes: number;
}> {
  const all = (await client.list('NodeRole')).filter((nr) => nr.spec.deployment === deployment);
  const byName = new Map(all.map((nr) => [nr.metadata.name ?? '', nr]));
  const unblock: number[] = [];
  // The slowest sample per child cohort: the first children start while the commit's writes of
  // every noderole are still reaching the API server, the last ones on a quiet server.
  const byCohort: Record<number, number> = {};
  let runs = 0;
  for (const nr of all) {
    runs += nr.status?.runCount ?? 0;
    const started = Date.parse(nr.status?.run?.started ?? '');
    const parentsDone = (nr.status?.parents ?? []).map((p) =>
      Date.parse(byName.get(p)?.status?.run?.finished ?? ''),
    );
    if (parentsDone.length > 0 && parentsDone.every(Number.isFinite) && Number.isFinite(started)) {
      const ms = started - Math.max(...parentsDone);
      unblock.push(ms);
      const cohort = nr.status?.cohort ?? 0;
      byCohort[cohort] = Math.max(byCohort[cohort] ?? 0, ms);
    }
  }
  // What every write of a noderole costs the API server grows with its size (ADR 0026, 0030).
  const bytes = all.reduce((n, nr) => n + JSON.stringify(nr).length, 0) / Math.max(1, all.length);
  // Of which the API server's ownership records, rewritten on every write (ADR 0030, 0031).
  const managedBytes =
    all.reduce((n, nr) => n + JSON.stringify(nr.metadata.managedFields ?? []).length, 0) /
    Math.max(1, all.length);
  if (process.env['BENCH_DUMP_NODEROLE'] === '1' && all[all.length - 1]) {
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    writeFileSync(
      join(import.meta.dirname, 'results', `noderole-${deployment}.json`),
      `${JSON.stringify(all[all.length - 1], null, 2)}\n`,
    );
  }
  return { unblock, runs, byCohort, bytes, managedBytes };
}

async function main(): Promise<void> {
  console.log(
    `bench-annealer: ${N} nodes x ${M} roles = ${N * M} noderoles, max ${CAP} concurrent runs`,
  );
  const loadAtStart = load();
  console.log(`load average at start: ${loadAtStart}`);
  const cp = await startControlPlane({ controllerManager: false });
  try {
    const kc = loadKubeConfig(cp.kubeconfig);
    const client = new CrowbarClient(kc);
    const nodes = Array.from({ length: N }, (_, j) => nodeName(j));
    await pool(nodes, 32, async (name) => {
      await client.create(
        'Node',
        {
          metadata: { name, annotations: { 'crowbar.dev/auto-bound': 'true' } },
          spec: { available: true },
        },
        FM,
      );
      await client.mergePatchStatus('Node', name, { status: { alive: true } }, FM);
    });

    // --- The annealer. ---
    await seed(client, 'bench', 'bench');
    // Seeded now, committed after the main phase (seeding while the operator runs would race
    // its binder).
    const reactNodes = Math.min(CAP, N);
    await seed(client, 'react', 'react', reactNodes);
    const op = await startOperator({
      kubeconfig: cp.kubeconfig,
      logDir: cp.dir,
      identity: 'bench',
      args: [`--max-concurrent-runs=${CAP}`, '--leader-elect=false'],
      env: { LOG_LEVEL: 'warn' },
    });
    await waitFor('operator ready', async () => (await op.http('/readyz')).status === 200, 120_000);
    const metricsAtCommit = (await op.http('/metrics')).body;
    const apiAtCommit = apiRequests(await adminText(cp, '/metrics'));
    const t0 = performance.now();
    await client.mergePatch('Deployment', 'bench', { spec: { state: 'committed' } }, FM);
    await waitFor(
      'all bench noderoles active',
      async () => {
        const d = await client.get('Deployment', 'bench');
        return d?.status?.counts?.active === N * M;
      },
      // 10,000 x 10 takes an hour or more on two cores: the bound grows with the work.
      Math.max(30 * 60_000, N * M * 60),
      250,
    );
    const annealMs = performance.now() - t0;
    const metricsAtActive = (await op.http('/metrics')).body;
    const apiAtActive = apiRequests(await adminText(cp, '/metrics'));
    const mainPass = (q: number): number | null =>
      histogramQuantileMs(
        metricsAtCommit,
        metricsAtActive,
        'crowbar_annealer_pass_duration_seconds',
        q,
      ) ?? null;
    const rss = op.proc.pid ? rssMb(op.proc.pid) : 0;
    console.log(
      `anneal: ${(annealMs / 1000).toFixed(1)} s, operator peak RSS ${rss.toFixed(0)} MB`,
    );

    // In (cohort, name) order every node finishes its last run in the anneal's last minutes, and
    // the node-status controller writes each one active after it (10,000 writes at 10,000 nodes,
    // minutes of them): 1.8 Node writes per noderole landed in a reaction phase started at once.
    // The phase measures the reaction on an API server at rest, so it starts once they are done.
    // Nor todo and transition only: a noderole whose commit write was still waiting when its run
    // was decided goes from proposed to active in one write, so the last nodes of the order read
    // `proposed` to the end and are written active after it (at 1,000 x 10: 129 Node writes, 1.24
    // per noderole of a reaction phase started while `proposed` was let through).
    const tSettle = performance.now();
    const reactNodeNames = new Set(Array.from({ length: Math.min(CAP, N) }, (_, j) => nodeName(j)));
    await waitFor(
      'every node written active',
      async () =>
        (await client.list('Node')).every(
          // The reaction phase's nodes read `proposed`: their react noderoles wait for its commit.
          (n) => reactNodeNames.has(n.metadata.name ?? '') || n.status?.state === 'active',
        ),
      Math.max(5 * 60_000, N * 60),
      2000,
    );
    // Events admitted during the anneal (20 a second) are sent one at a time, slower than that on
    // a busy API server: at 1,000 x 10 a backlog of them was still being sent in the reaction
    // phase (1.24 Event creates per noderole of it, against 0.3-0.5 of its own).
    await waitFor(
      'the Events of the anneal sent',
      async () => /^crowbar_events_queued 0$/m.test((await op.http('/metrics')).body),
      5 * 60_000,
      500,
    );
    const settleS = (performance.now() - tSettle) / 1000;
    console.log(
      `nodes written active and Events sent ${settleS.toFixed(1)} s after the last noderole`,
    );

    // Reaction time alone: CAP nodes, so every node has a free run slot and no child waits behind
    // other nodes' lower-cohort noderoles (the (cohort, name) order of §3.1 makes that wait the
    // dominant term above). This is the parent-active-to-child-start latency of the annealer.
    const loadBeforeReaction = load();
    // Who used the cores in the phase: the operator, the API server, etcd (CPU seconds, /proc).
    const procs = {
      operator: op.proc.pid ?? 0,
      apiserver: childPids('kube-apiserver')[0] ?? 0,
      etcd: childPids('etcd')[0] ?? 0,
    };
    const cpuNow = (): Record<string, number> =>
      Object.fromEntries(
        Object.entries(procs).map(([k, pid]) => [k, pid > 0 ? cpuSeconds(pid) : 0]),
      );
    // The scrapes come before the CPU is read and after it is read again: rendering the API
    // server's /metrics costs it more CPU than a dozen writes, which is not the phase's.
    const apiBefore = apiRequests(await adminText(cp, '/metrics'));
    const metricsBefore = (await op.http('/metrics')).body;
    const cpuBefore = cpuNow();
    const tReact = performance.now();
    // BENCH_PROFILE_S=n: a CPU profile of the API server over the reaction phase's first n
    // seconds (go tool pprof bench/results/apiserver-reaction.pprof).
    const profileS = Number(process.env['BENCH_PROFILE_S'] ?? 0);
    const profile =
      profileS > 0
        ? adminBytes(cp, `/debug/pprof/profile?seconds=${profileS}`, (profileS + 30) * 1000)
        : undefined;
    await client.mergePatch('Deployment', 'react', { spec: { state: 'committed' } }, FM);
    await waitFor(
      'all reaction noderoles active',
      async () =>
        (await client.get('Deployment', 'react'))?.status?.counts?.active === reactNodes * M,
      10 * 60_000,
      100,
    );
    const reactS = (performance.now() - tReact) / 1000;
    if (profile) {
      mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
      writeFileSync(
        join(import.meta.dirname, 'results', 'apiserver-reaction.pprof'),
        await profile,
      );
    }
    const cpuAfter = cpuNow();
    const apiAfter = apiRequests(await adminText(cp, '/metrics'));
    const react = await unblockLatencies(client, 'react');
    // The main phase's figures are read after the reaction phase: a list of every noderole (26 MB
    // at 1,000 x 10) is work for the API server that the reaction phase must not start behind.
    const { unblock, runs } = await unblockLatencies(client, 'bench');
    const metricsAfter = (await op.http('/metrics')).body;
    writeFileSync(join(cp.dir, '..', 'crowbar-bench-operator-metrics.txt'), metricsAfter);
    // The annealer's own part of the reaction: from learning the parent is active to starting
    // the child (bucket bounds of crowbar_annealer_unblock_seconds over the reaction phase).
    const decide = (q: number): number | null =>
      histogramQuantileMs(metricsBefore, metricsAfter, 'crowbar_annealer_unblock_seconds', q) ??
      null;
    const part = (name: string, q: number): number | null =>
      histogramQuantileMs(metricsBefore, metricsAfter, name, q) ?? null;
    await op.stop();
    // --- The floor: the same writes, no decisions, same client and concurrency. ---
    // Run after the annealer, with the operator stopped, so neither sees the other's objects.
    // BENCH_FLOOR=0 leaves it out (floor_ratio null): at 1,000 x 10 it takes as long as the
    // anneal, and the reaction and the CPU per noderole do not depend on it.
    const withFloor = process.env['BENCH_FLOOR'] !== '0';
    const floorNames = withFloor ? await seed(client, 'floor', 'floor') : [];
    const tFloor = performance.now();
    let floorWrites = 0;
    await pool(
      Array.from({ length: withFloor ? N : 0 }, (_, j) => j),
      CAP,
      async (j) => {
        for (let i = 0; i < M; i++) {
          const name = nrName(i, j, 'floor');
          let cur = (await client.get('NodeRole', name)) as NodeRole;
          const write = async (status: object): Promise<void> => {
            cur = await client.mergePatchStatus(
              'NodeRole',
              name,
              { metadata: { resourceVersion: cur.metadata.resourceVersion }, status },
              FM,
            );
            floorWrites++;
          };
          if (i > 0) await write({ state: 'todo', message: 'all parents are active' }); // blocked -> todo
          // A noop run is one write (ADR 0034).
          await write({ state: 'active', message: 'active after run 1', runCount: 1 });
        }
      },
    );
    // The commit writes (todo for roots, blocked for children) are issued up front in the annealer's
    // run too; count them into the floor at the same concurrency.
    const tCommit = performance.now();
    await pool(floorNames, CAP, async (name) => {
      const cur = (await client.get('NodeRole', name)) as NodeRole;
      await client.mergePatchStatus(
        'NodeRole',
        name,
        {
          metadata: { resourceVersion: cur.metadata.resourceVersion },
          status: { message: 'committed' },
        },
        FM,
      );
      floorWrites++;
    });
    const floorMs = performance.now() - tFloor;
    console.log(
      `floor: ${floorWrites} status writes in ${(floorMs / 1000).toFixed(1)} s (commit pass ${((performance.now() - tCommit) / 1000).toFixed(1)} s)`,
    );

    const result = {
      nodes: N,
      roles: M,
      noderoles: N * M,
      max_concurrent_runs: CAP,
      anneal_s: annealMs / 1000,
      floor_s: floorMs / 1000,
      floor_writes: floorWrites,
      noderoles_per_s: (N * M) / (annealMs / 1000),
      floor_ratio: withFloor ? annealMs / floorMs : null,
      p50_unblock_ms: quantile(react.unblock, 0.5),
      p99_unblock_ms: quantile(react.unblock, 0.99),
      p50_decide_ms_at_most: decide(0.5),
      p99_decide_ms_at_most: decide(0.99),
      // The reaction's parts over the reaction phase (bucket bounds): a run start or end waiting
      // at the status-write gate, then the API server answering it.
      p99_urgent_write_wait_ms_at_most: part('crowbar_annealer_urgent_write_wait_seconds', 0.99),
      p50_urgent_write_ms_at_most: part('crowbar_annealer_urgent_write_seconds', 0.5),
      p99_urgent_write_ms_at_most: part('crowbar_annealer_urgent_write_seconds', 0.99),
      // The passes of the reaction phase: the longest, and how many settled every noderole or a
      // slice of the 30 s safety net's sweep (a child's start must not wait behind either).
      max_pass_ms_at_most: part('crowbar_annealer_pass_duration_seconds', 1),
      p99_pass_ms_at_most: part('crowbar_annealer_pass_duration_seconds', 0.99),
      settles_in_reaction: Object.fromEntries(
        ['full', 'sweep', 'changed'].map((scope) => {
          const series = `crowbar_annealer_settles_total{scope="${scope}"}`;
          return [scope, sample(metricsAfter, series) - sample(metricsBefore, series)];
        }),
      ),
      // How long the node-status controller took to write the fleet's nodes active after the
      // last noderole went active (the reaction phase waits for it).
      nodes_settled_s: settleS,
      reaction_samples: react.unblock.length,
      reaction_phase_s: reactS,
      noderole_bytes_after_run: Math.round(react.bytes),
      noderole_managed_fields_bytes_after_run: Math.round(react.managedBytes),
      // What the API server was asked in the phase, per noderole it ran (writes and reads).
      api_requests_per_noderole_in_reaction: perNoderole(apiBefore, apiAfter, reactNodes * M),
      // The same over the main phase: the run writes against everything else (Node status,
      // Events, Secrets) on the API server they wait for.
      api_requests_per_noderole_main: perNoderole(apiAtCommit, apiAtActive, N * M),
      // CPU used in the reaction phase per noderole it ran, by process (ms).
      cpu_ms_per_noderole_in_reaction: Object.fromEntries(
        Object.keys(procs).map((k) => [
          k,
          (((cpuAfter[k] ?? 0) - (cpuBefore[k] ?? 0)) * 1000) / (reactNodes * M),
        ]),
      ),
      reaction_max_ms_by_child_cohort: react.byCohort,
      // What else held the operator's thread in the reaction phase: garbage collections over
      // 10 ms by kind, and the event loop's worst delay (prom-client resets it at each scrape).
      gc_over_10ms_in_reaction: Object.fromEntries(
        ['minor', 'major', 'incremental'].map((kind) => {
          const over = (m: string): number =>
            sample(m, `nodejs_gc_duration_seconds_bucket{le="+Inf",kind="${kind}"}`) -
            sample(m, `nodejs_gc_duration_seconds_bucket{le="0.01",kind="${kind}"}`);
          return [kind, over(metricsAfter) - over(metricsBefore)];
        }),
      ),
      eventloop_lag_max_ms: sample(metricsAfter, 'nodejs_eventloop_lag_max_seconds') * 1000,
      p50_unblock_saturated_ms: quantile(unblock, 0.5),
      p99_unblock_saturated_ms: quantile(unblock, 0.99),
      // The passes of the main phase, where every pass walks the whole graph's changed part.
      p50_pass_ms_at_most_main: mainPass(0.5),
      p99_pass_ms_at_most_main: mainPass(0.99),
      max_pass_ms_at_most_main: mainPass(1),
      rss_mb: rss,
      runs_counted: runs,
      measured_at: new Date().toISOString(),
      load_average: { start: loadAtStart, reaction: loadBeforeReaction, end: load() },
    };
    if (runs !== N * M) throw new Error(`expected ${N * M} runs counted, found ${runs}`);
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    writeFileSync(
      join(import.meta.dirname, 'results', 'annealer.json'),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    console.log(
      `RESULT annealer noderoles_per_s=${result.noderoles_per_s.toFixed(1)} floor_ratio=${result.floor_ratio?.toFixed(2) ?? 'skipped'} p99_unblock_ms=${result.p99_unblock_ms.toFixed(0)} p99_decide_ms<=${String(result.p99_decide_ms_at_most)} p99_write_ms<=${String(result.p99_urgent_write_ms_at_most)} p99_write_wait_ms<=${String(result.p99_urgent_write_wait_ms_at_most)} max_pass_ms<=${String(result.max_pass_ms_at_most)} p99_unblock_saturated_ms=${result.p99_unblock_saturated_ms.toFixed(0)} p99_pass_ms_main<=${String(result.p99_pass_ms_at_most_main)} rss_mb=${rss.toFixed(0)} load=${result.load_average.reaction}`,
    );
  } finally {
    await cp.stop();
  }
}

await main();
