/**
 * `make bench-jig`: the script jig against OpenSSH's own client, in the same run, on the same
 * machines. BENCH_JIG_NODES (default 50) lab machines, each a network namespace with its own
 * sshd; BENCH_JIG_ROLES (default 4) script roles bound to each; BENCH_JIG_CONCURRENCY (default
 * 10, the annealer's cluster-wide cap) runs at once, at most one per node, a node's roles one after
 * another (the annealer's order). Both sides do exactly the same work per run:
 * connect as root with the same key, run the runner command (operator/jigs/script/protocol.ts)
 * with the same payload on stdin, and read back the same result, which both sides check.
 *
 * - jig: `scriptJig` through the annealer's inline executor (ssh2), with the operator's pool of
 *   kept connections (session-pool.ts): a node's next run reuses its last run's connection;
 * - openssh: `ssh -F /dev/null -T root@<address> '<runner command>'` with the payload on its
 *   stdin (OpenSSH's defaults: the host's ssh_config may turn on GSSAPI, which costs seconds).
 *
 * Latency is connect + run, per run, measured by the caller. The sides rotate in rounds so drift
 * on a shared machine hits all of them. OpenSSH runs three times: with ssh2's key exchange
 * (curve25519-sha256, the headline ratio: a new connection per run, as `ssh` makes), with its own
 * default (sntrup761x25519 on 9.x), and, for comparison, reusing connections (ControlMaster) as
 * the jig does. Every sshd hides root's ~/.bashrc from its sessions
 * (sshd.ts quietRootShell): sshd runs commands through root's login shell, and a bashrc running
 * `pyenv init` adds ~0.5 s to every session, on both sides alike, which would swamp what is
 * measured. Prints `RESULT jig runs_per_s=... p50_ms=... p99_ms=... ratio_vs_openssh=...` and
 * writes bench/results/jig.json.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node, NodeRole, Role } from '../generated/crowbar.ts';
import { inlineExecutor } from '../operator/controllers/annealer/executor.ts';
import { scriptJig } from '../operator/jigs/script/jig.ts';
import { SessionPool } from '../operator/jigs/script/session-pool.ts';
import {
  RUNNER_COMMAND,
  buildPayload,
  interpret,
  parseRunnerOutput,
} from '../operator/jigs/script/protocol.ts';
import { adminNode, SshFleet } from '../test/harness/ssh-fleet.ts';
import { pool } from './util.ts';

const NODES = Number(process.env['BENCH_JIG_NODES'] ?? 50);
const ROLES = Number(process.env['BENCH_JIG_ROLES'] ?? 4);
const CONCURRENCY = Number(process.env['BENCH_JIG_CONCURRENCY'] ?? 10);
const ROUNDS = Number(process.env['BENCH_JIG_ROUNDS'] ?? 2);

/** Each role's script: reads its input, writes a small wall. Same bytes on both sides. */
const script = (k: number): string => `#!/bin/sh
set -eu
n=$(wc -c < "$CROWBAR_INPUT")
echo "role ${k} on $CROWBAR_NODE run $CROWBAR_RUN read $n bytes"
printf '{"bench":{"role":${k},"inputBytes":%s,"node":"%s"}}' "$n" "$CROWBAR_NODE" > "$CROWBAR_OUTPUT"
`;

interface Work {
  node: Node;
  role: Role;
  noderole: NodeRole;
  address: string;
  input: Record<string, unknown>;
}

interface Pass {
  runs: number;
  failures: number;
  seconds: number;
  latenciesMs: number[];
}

const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

async function measure(work: readonly Work[], one: (w: Work) => Promise<boolean>): Promise<Pass> {
  const latenciesMs: number[] = [];
  let failures = 0;
  // As the annealer runs them: at most one run per node at a time, a node's roles one after
  // another, CONCURRENCY nodes at once.
  const byNode = new Map<string, Work[]>();
  for (const w of work) {
    const k = w.node.metadata.name ?? '';
    byNode.set(k, [...(byNode.get(k) ?? []), w]);
  }
  const t0 = performance.now();
  await pool([...byNode.values()], CONCURRENCY, async (chain) => {
    for (const w of chain) {
      const s = performance.now();
      const ok = await one(w);
      latenciesMs.push(performance.now() - s);
      if (!ok) failures++;
    }
  });
  return { runs: work.length, failures, seconds: (performance.now() - t0) / 1000, latenciesMs };
}

function openssh(keyPath: string, w: Work, run: number, kex: string[]): Promise<boolean> {
  const req = {
    script: w.role.spec.script?.inline ?? '',
    input: w.input,
    role: w.role.metadata.name ?? '',
    node: w.node.metadata.name ?? '',
    noderole: w.noderole.metadata.name ?? '',
    run,
    timeoutSeconds: 60,
    // A fresh start of the run each time, as the jig sends for a run it starts.
    attempt: randomBytes(8).toString('hex'),
  };
  const started = performance.now();
  return new Promise((resolve) => {
    const p = spawn(
      'ssh',
      [
        '-T',
        // OpenSSH's defaults, not this host's ssh_config (GSSAPI there costs seconds per run).
        '-F',
        '/dev/null',
        '-o',
        'IdentitiesOnly=yes',
        ...kex,
        '-i',
        keyPath,
        '-o',
        'BatchMode=yes',
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-o',
        'LogLevel=ERROR',
        '-o',
        'ConnectTimeout=10',
        `root@${w.address}`,
        RUNNER_COMMAND,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    const out: Buffer[] = [];
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.resume();
    p.on('close', () => {
      const res = interpret(parseRunnerOutput(Buffer.concat(out)), {
        role: req.role,
        node: req.node,
        noderole: req.noderole,
        timeoutSeconds: 60,
        elapsedMs: performance.now() - started,
      });
      resolve(res.ok && res.wall['bench'] !== undefined);
    });
    p.stdin.end(buildPayload(req));
  });
}

async function main(): Promise<void> {
  const machines = new SshFleet({ prefix: 'cbt-bench-jig', noderoleTag: '.bench.example.com' });
  const muxDir = mkdtempSync(join(tmpdir(), 'cbj-mux-'));
  try {
    const key = await machines.generateKey('root');
    const t0 = performance.now();
    const machineNames = Array.from({ length: NODES }, (_, i) => `b${i}`);
    await machines.start(machineNames, {
      authorizedKeys: () => [key.publicKey],
      quietRootShell: true,
    });
    const work: Work[] = [];
    const roles: Role[] = Array.from({ length: ROLES }, (_, k) => ({
      apiVersion: 'crowbar.dev/v1alpha1',
      kind: 'Role',
      metadata: { name: `bench-r${k}` },
      spec: { jig: 'script', timeoutSeconds: 60, script: { inline: script(k) } },
    }));
    for (const name of machineNames) {
      const ln = machines.node(name);
      const node = adminNode(`${name}.bench.example.com`, ln.cidr, { alive: true });
      for (const role of roles) {
        const nr = `${role.metadata.name ?? ''}.${node.metadata.name ?? ''}`;
        work.push({
          node,
          role,
          address: ln.address,
          noderole: {
            apiVersion: 'crowbar.dev/v1alpha1',
            kind: 'NodeRole',
            metadata: { name: nr },
            spec: {
              role: role.metadata.name ?? '',
              node: node.metadata.name ?? '',
              deployment: 'b',
            },
          },
          input: { crowbar: { node: node.metadata.name }, bench: { payload: 'x'.repeat(2048) } },
        });
      }
    }
    console.log(
      `bench-jig: ${NODES} sshd machines up in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${work.length} runs per side per round, ${CONCURRENCY} at once, ${ROUNDS} rounds`,
    );

    const hostKeys = new Map<string, string>();
    // As the operator runs it: one pool of kept connections (operator/jigs/script/wiring.ts).
    const sessions = new SessionPool();
    const jig = scriptJig({
      sessions,
      privateKey: key.privateKey,
      resolveAddress: (n) => n.status?.addresses?.[0]?.address.split('/')[0],
      loadScript: (r) => Promise.resolve(r.spec.script?.inline ?? ''),
      onHostKey: (n, fp) => {
        hostKeys.set(n.metadata.name ?? '', fp);
        return Promise.resolve();
      },
    });
    let runNo = 0;
    const viaJig = async (w: Work): Promise<boolean> => {
      const number = ++runNo;
      const res = await inlineExecutor.execute({
        noderole: w.noderole,
        role: w.role,
        node: w.node,
        number,
        input: w.input,
        signal: new AbortController().signal,
        jig,
        id: `${w.noderole.metadata.name ?? ''}.run-${number}`,
      });
      if (!res.ok) console.error(`bench-jig: jig run failed: ${res.message}`);
      return res.ok && res.wall['bench'] !== undefined;
    };
    // ssh2 negotiates curve25519-sha256; OpenSSH 9 prefers sntrup761x25519, which costs more CPU
    // on both ends. The headline ratio is against OpenSSH with the same key exchange; its
    // default is measured too.
    const viaSsh = (w: Work): Promise<boolean> =>
      openssh(key.path, w, ++runNo, ['-o', 'KexAlgorithms=curve25519-sha256']);
    const viaSshDefault = (w: Work): Promise<boolean> => openssh(key.path, w, ++runNo, []);
    // For comparison only: OpenSSH reusing its connections too (ControlMaster), as the jig's pool
    // does; masters exit on their own after 10 s idle, or with their machine's namespace.
    const viaSshMux = (w: Work): Promise<boolean> =>
      openssh(key.path, w, ++runNo, [
        '-o',
        'KexAlgorithms=curve25519-sha256',
        '-o',
        'ControlMaster=auto',
        '-o',
        `ControlPath=${muxDir}/%C`,
        '-o',
        'ControlPersist=10',
      ]);

    // Warm up both (page cache, sshd forks, the JIT).
    await measure(work.slice(0, CONCURRENCY * 2), viaJig);
    await measure(work.slice(0, CONCURRENCY * 2), viaSsh);

    const sides = {
      jig: viaJig,
      openssh: viaSsh,
      'openssh-default-kex': viaSshDefault,
      'openssh-mux': viaSshMux,
    };
    type Side = keyof typeof sides;
    const passes = new Map<Side, Pass[]>();
    const names = Object.keys(sides) as Side[];
    for (let r = 0; r < ROUNDS; r++) {
      // Rotate the order each round so drift on a shared machine hits every side.
      const order = names.map((_, i) => names[(i + r) % names.length] as Side);
      for (const side of order) {
        const p = await measure(work, sides[side]);
        passes.set(side, [...(passes.get(side) ?? []), p]);
        console.log(
          `bench-jig: round ${r + 1} ${side}: ${(p.runs / p.seconds).toFixed(1)} runs/s, ${p.failures} failed`,
        );
      }
    }
    const sum = (ps: Pass[]) => {
      const lat = ps.flatMap((p) => p.latenciesMs).sort((a, b) => a - b);
      const runs = ps.reduce((a, p) => a + p.runs, 0);
      const seconds = ps.reduce((a, p) => a + p.seconds, 0);
      return {
        runs,
        failures: ps.reduce((a, p) => a + p.failures, 0),
        runs_per_s: runs / seconds,
        p50_ms: pct(lat, 50),
        p99_ms: pct(lat, 99),
      };
    };
    const j = sum(passes.get('jig') ?? []);
    const o = sum(passes.get('openssh') ?? []);
    const od = sum(passes.get('openssh-default-kex') ?? []);
    const om = sum(passes.get('openssh-mux') ?? []);
    const result = {
      nodes: NODES,
      roles: ROLES,
      concurrency: CONCURRENCY,
      rounds: ROUNDS,
      cpus: cpus().length,
      jig: j,
      openssh: { ...o, kex: 'curve25519-sha256 (as ssh2)' },
      openssh_default_kex: { ...od, kex: 'OpenSSH default (sntrup761x25519-sha512 on 9.x)' },
      openssh_mux: { ...om, kex: 'curve25519-sha256, ControlMaster connection reuse' },
      jig_connections_reused: sessions.reused,
      ratio_vs_openssh: j.runs_per_s / o.runs_per_s,
      ratio_vs_openssh_mux: j.runs_per_s / om.runs_per_s,
      ratio_vs_openssh_default_kex: j.runs_per_s / od.runs_per_s,
      p50_ratio_vs_openssh: j.p50_ms / o.p50_ms,
      root_bashrc_hidden: true,
      measured_at: new Date().toISOString(),
    };
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    writeFileSync(
      join(import.meta.dirname, 'results', 'jig.json'),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    for (const [name, x] of [
      ['openssh (same kex)', o],
      ['openssh (default kex)', od],
      ['openssh (ControlMaster)', om],
    ] as const) {
      console.log(
        `bench-jig: ${name} ${x.runs_per_s.toFixed(1)} runs/s p50 ${x.p50_ms.toFixed(0)} ms p99 ${x.p99_ms.toFixed(0)} ms, ${x.failures} failed`,
      );
    }
    console.log(
      `RESULT jig runs_per_s=${j.runs_per_s.toFixed(1)} p50_ms=${j.p50_ms.toFixed(0)} p99_ms=${j.p99_ms.toFixed(0)} ratio_vs_openssh=${result.ratio_vs_openssh.toFixed(2)}`,
    );
    console.log(`bench-jig: the jig reused a kept connection for ${sessions.reused} runs`);
    if (j.failures + o.failures + od.failures + om.failures > 0) process.exitCode = 1;
  } finally {
    await machines.destroy().catch((e: unknown) => {
      console.error(`bench-jig: cleanup: ${(e as Error).message}`);
    });
    rmSync(muxDir, { recursive: true, force: true });
  }
}

await main();
