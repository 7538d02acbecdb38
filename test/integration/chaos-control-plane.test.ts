/**
 * Chaos (issue 13), the control plane's part: two operator replicas with the shipped lease timings
 * (15 s lease, 10 s renew deadline, 2 s retry) anneal a fleet of test-jig noderoles on a control
 * plane of this file's own while kube-apiserver is restarted mid-run and then etcd is paused
 * (SIGSTOP) for 10 s. The anneal must finish, every noderole active, each executed to completion
 * exactly once for its run number (the test jig's journal, see operator/jigs/test-jig.ts), no two
 * executions of one noderole overlapping. A leader that cannot renew its lease within the renew
 * deadline exits by design (an outage as long as the etcd pause outlasts it); the kubelet stand-in
 * (harness/replicas.ts) starts it again, and the RESULT line counts those restarts.
 *
 * The second case puts a fault-injecting proxy (harness/fault-proxy.ts) between two fresh replicas
 * and the API server for a whole anneal.
 *
 * `make test` runs both with 20 nodes x 5 roles, `make test-chaos` with 100. Traffic: loopback only.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeRole } from '../../generated/crowbar.ts';
import { readTestJournal } from '../../operator/jigs/test-jig.ts';
import { CrowbarClient, loadKubeConfig } from '../../operator/kube/client.ts';
import { eventually, uid } from '../harness/context.ts';
import { startControlPlane, type ControlPlane } from '../harness/control-plane.ts';
import { Fleet } from '../harness/fleet.ts';
import { metricValue, startOperator, type OperatorProc } from '../harness/operator.ts';
import { FaultProxy } from '../harness/fault-proxy.ts';
import { Replicas } from '../harness/replicas.ts';

const FULL = process.env['CROWBAR_CHAOS'] === 'full';
const NODES = FULL ? 100 : 20;
const ROLES = ['t1', 't2', 't3', 't4', 't5'];
const ETCD_PAUSE_MS = 10_000;
const id = uid();
const dir = mkdtempSync(join(tmpdir(), `cbt-chaos-cp-${id}-`));
const journal = join(dir, 'journal');
let cp: ControlPlane | undefined;
let client: CrowbarClient;
let f: Fleet;
const exitedAt = new Map<number, number>();
const all: OperatorProc[] = [];
const replicas = new Replicas(() => replica(all.length));
const live = replicas.live;
let proxy: FaultProxy | undefined;
const faultJournal = join(dir, 'fault-journal');
let faultKubeconfig = '';
const faulty = new Replicas(() =>
  replica(all.length, { group: 'fault', kubeconfig: faultKubeconfig, journal: faultJournal }),
);
const SEED = Number(process.env['CROWBAR_CHAOS_SEED'] ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: a small seeded PRNG, so a failing run's faults can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Resident set size of a process in MB (Linux /proc), 0 when it is gone. */
function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${String(pid)}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

async function replica(
  n: number,
  o: { group?: string; kubeconfig?: string; journal?: string } = {},
): Promise<OperatorProc> {
  if (!cp) throw new Error('no control plane');
  const group = o.group ?? 'cpchaos';
  const op = await startOperator({
    kubeconfig: o.kubeconfig ?? cp.kubeconfig,
    logDir: dir,
    identity: `${group}-${id}-${String(n)}`,
    args: [
      `--lease-name=${group}-${id}`,
      '--executor=inline',
      '--max-concurrent-runs=20',
      `--test-jig-journal=${o.journal ?? journal}`,
      // The shipped timings (config.ts defaults), after the harness's short ones.
      '--lease-duration-ms=15000',
      '--renew-deadline-ms=10000',
      '--retry-period-ms=2000',
    ],
    env: { LOG_LEVEL: process.env['CBT_LOG_LEVEL'] ?? 'info' },
  });
  const pid = op.proc.pid ?? 0;
  op.proc.once('exit', () => exitedAt.set(pid, Date.now()));
  all.push(op);
  return op;
}

async function inFlight(): Promise<boolean> {
  for (const op of live) {
    if (op.proc.exitCode !== null || op.proc.signalCode !== null) continue;
    const m = (await op.http('/metrics')).body;
    if ((metricValue(m, 'crowbar_runs_in_flight') ?? 0) > 0) return true;
  }
  return false;
}

/** Test-jig noderoles: one completed execution each for run 1, none overlapping another. */
function judge(
  path: string,
  names: readonly string[],
): { lost: string[]; doubled: string[]; overlaps: string[] } {
  const entries = readTestJournal(path);
  const lost: string[] = [];
  const doubled: string[] = [];
  const overlaps: string[] = [];
  for (const name of names) {
    const mine = entries.filter((e) => e.noderole === name).sort((a, b) => a.t - b.t);
    const ends = mine.filter((e) => e.ev === 'end' && e.run === 1 && e.result?.ok === true);
    if (ends.length === 0) lost.push(name);
    if (ends.length > 1) doubled.push(name);
    const open: typeof mine = [];
    for (const e of mine) {
      if (e.ev === 'start') {
        if (open.some((o) => (exitedAt.get(o.pid) ?? Infinity) > e.t)) overlaps.push(name);
        open.push(e);
      } else if (e.ev === 'end') {
        const i = open.findIndex((o) => o.pid === e.pid && o.attempt === e.attempt);
        if (i >= 0) open.splice(i, 1);
      }
    }
  }
  return { lost, doubled, overlaps };
}

beforeAll(async () => {
  cp = await startControlPlane({ controllerManager: false });
  client = new CrowbarClient(loadKubeConfig(cp.kubeconfig));
  f = new Fleet(client, id);
  await replicas.add();
  await replicas.add();
}, 300_000);

afterAll(async () => {
  try {
    await replicas.stop();
    await faulty.stop();
    await proxy?.close();
    const keep = process.env['CBT_KEEP_LOG'];
    if (keep) for (const op of all) cpSync(op.log, join(keep, op.log.split('/').at(-1) ?? 'op'));
  } finally {
    try {
      // A paused etcd would hang the stop: let it go on first.
      cp?.etcd.proc.kill('SIGCONT');
      await cp?.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

describe('chaos: the control plane fails under the operator', () => {
  it('restarts kube-apiserver, then pauses etcd for 10 s: the anneal finishes, nothing lost or doubled', async () => {
    for (const [i, short] of ROLES.entries()) {
      await f.createRole(short, {
        flags: ['implicit'],
        test: { delayMs: 300 },
        ...(i === 0 ? {} : { requires: [ROLES[i - 1] ?? ''] }),
      });
    }
    const dep = await f.createDeployment('d', 'proposed');
    const names: string[] = [];
    for (let i = 0; i < NODES; i++) {
      const short = `c${String(i)}`;
      await f.createNode(short);
      await f.bind(ROLES.at(-1) ?? '', short, dep);
      for (const r of ROLES) names.push(f.nr(r, short));
    }
    await f.commit(dep);
    const server = cp;
    if (!server) throw new Error('no control plane');

    await eventually('runs in flight', inFlight, 60_000, 25);
    const r0 = Date.now();
    await server.restartApiserver();
    const restartMs = Date.now() - r0;

    await eventually('runs in flight after the restart', inFlight, 120_000, 25);
    server.etcd.proc.kill('SIGSTOP');
    try {
      // The fault's own length, not a wait for something.
      await new Promise((r) => setTimeout(r, ETCD_PAUSE_MS));
    } finally {
      server.etcd.proc.kill('SIGCONT');
    }

    const want = new Set(names);
    const done = await eventually(
      `${String(names.length)} noderoles active`,
      async () => {
        const mine = (await client.list('NodeRole')).filter((n) => want.has(n.metadata.name ?? ''));
        return mine.length === want.size && mine.every((n) => n.status?.state === 'active')
          ? mine
          : undefined;
      },
      300_000,
      250,
    );

    const { lost, doubled, overlaps } = judge(journal, names);
    const notOnce = done.filter((n: NodeRole) => n.status?.runCount !== 1);
    const stepDowns = all
      .map((op) => readFileSync(op.log, 'utf8').split('stepping down').length - 1)
      .reduce((a, b) => a + b, 0);
    console.log(
      `RESULT chaos-control-plane noderoles=${String(names.length)} apiserver_restart_ms=${String(restartMs)} etcd_pause_ms=${String(ETCD_PAUSE_MS)} restarts=${String(replicas.restarts)} step_downs=${String(stepDowns)} lost=${String(lost.length)} doubled=${String(doubled.length)} overlaps=${String(overlaps.length)}`,
    );
    expect({ lost, doubled, overlaps }).toEqual({ lost: [], doubled: [], overlaps: [] });
    expect(notOnce.map((n) => n.metadata.name)).toEqual([]);
  }, 900_000);

  // On main this case stalled with a few noderoles in transition for minutes (2 of 100 for ~5
  // min): a start written but answered with 500 left an orphan whose one wake-up (a delayed add on
  // the annealer's queue, dropped when an earlier one was pending) was lost, and nothing else woke
  // the annealer. Every pass now asks again while an orphan waits (annealer/orphans.ts).
  it('anneals through a fault-injecting proxy (429, 500, delays, cut watches): converges, bounded memory', async () => {
    const server = cp;
    if (!server) throw new Error('no control plane');
    proxy = await FaultProxy.start(server.server, server.pki, prng(SEED));
    faultKubeconfig = join(dir, 'kubeconfig-faulty');
    const text = readFileSync(server.kubeconfig, 'utf8').replace(
      `server: ${server.server}`,
      `server: https://127.0.0.1:${String(proxy.port)}`,
    );
    expect(text).toContain(String(proxy.port));
    writeFileSync(faultKubeconfig, text, { mode: 0o600 });
    // The first anneal's replicas step aside: only the two behind the proxy work now.
    await replicas.stop();
    await faulty.add();
    await faulty.add();

    const g = new Fleet(client, `${id}f`);
    for (const [i, short] of ROLES.entries()) {
      await g.createRole(short, {
        flags: ['implicit'],
        test: { delayMs: 100 },
        ...(i === 0 ? {} : { requires: [ROLES[i - 1] ?? ''] }),
      });
    }
    const dep = await g.createDeployment('d', 'proposed');
    const names: string[] = [];
    for (let i = 0; i < NODES; i++) {
      const short = `q${String(i)}`;
      await g.createNode(short);
      await g.bind(ROLES.at(-1) ?? '', short, dep);
      for (const r of ROLES) names.push(g.nr(r, short));
    }
    await g.commit(dep);
    const committedAt = Date.now();

    let peakRss = 0;
    const want = new Set(names);
    await eventually(
      `${String(names.length)} noderoles active behind the fault proxy`,
      async () => {
        for (const op of faulty.live) peakRss = Math.max(peakRss, rssMb(op.proc.pid ?? 0));
        const mine = (await client.list('NodeRole')).filter((n) => want.has(n.metadata.name ?? ''));
        return mine.length === want.size && mine.every((n) => n.status?.state === 'active');
      },
      600_000,
      500,
    );
    const annealS = (Date.now() - committedAt) / 1000;
    const { lost, doubled, overlaps } = judge(faultJournal, names);
    const c = proxy.counts;
    console.log(
      `RESULT chaos-faults noderoles=${String(names.length)} requests=${String(c.requests)} 429=${String(c.tooMany)} 500=${String(c.error)} 500_after_write=${String(c.errorAfterWrite)} delayed=${String(c.delayed)} watches_cut=${String(c.watchesCut)} restarts=${String(faulty.restarts)} peak_rss_mb=${String(Math.round(peakRss))} anneal_s=${annealS.toFixed(1)} lost=${String(lost.length)} doubled=${String(doubled.length)} overlaps=${String(overlaps.length)} seed=${String(SEED)}`,
    );
    expect({ lost, doubled, overlaps }).toEqual({ lost: [], doubled: [], overlaps: [] });
    // The faults did happen, each kind of them.
    expect(
      Math.min(c.tooMany, c.error, c.errorAfterWrite, c.delayed, c.watchesCut),
    ).toBeGreaterThan(0);
    // Memory stays bounded: retries and restarted watches hold nothing that grows with them.
    expect(peakRss).toBeLessThan(1024);
  }, 900_000);
});
