/**
 * Restart safety of script runs over SSH (issue 13, chaos): a chain of script roles on three sshd
 * machines, each script appending "<noderole> <run> start|end" to a journal file of its machine,
 * annealed by two operator replicas (inline executor) while the leader is killed with SIGKILL
 * again and again, each time when a run is in flight on a machine, and replaced by a fresh
 * replica. Every noderole must end active with no person's help, each executed exactly once per
 * run number, and no two executions of one noderole may overlap. Traffic goes only to the lab's
 * own 10.251.S.0/24 and to loopback.
 */
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { eventually, testClient, uid } from '../harness/context.ts';
import { Fleet } from '../harness/fleet.ts';
import { labNetworkSpec } from '../harness/netns.ts';
import { metricValue, startOperator, type OperatorProc } from '../harness/operator.ts';
import { SshFleet } from '../harness/ssh-fleet.ts';
import type { KeyPair } from '../harness/sshd.ts';

const kubeconfig = inject('kubeconfig');
const logDir = inject('cpDir');
const client = testClient();
const FM = 'crowbar-test';
const id = uid();
const f = new Fleet(client, id);
const machines = new SshFleet({ prefix: `cbt-restart-${id}`, noderoleTag: id });
const net = `lab-${id}`;
const lease = `restart-${id}`;
const MACHINES = ['n1', 'n2', 'n3'];
/** The chain: c1 <- c2 <- ... <- c5, all on the same node (implicit). */
const CHAIN = ['c1', 'c2', 'c3', 'c4', 'c5'];
const KILLS = 5;
/** Milliseconds between seeing a run in flight and the kill: varied, not random. */
const KILL_DELAYS = [0, 900, 300, 1500, 600];
const live: OperatorProc[] = [];
const all: OperatorProc[] = [];
let key: KeyPair;
let dep = '';

const journal = (machine: string): string => join(machines.dir, `journal-${f.node(machine)}`);

const SCRIPT = `#!/bin/sh
set -eu
j="${machines.dir}/journal-$CROWBAR_NODE"
echo "$CROWBAR_NODEROLE $CROWBAR_RUN start" >> "$j"
sleep 2
echo "$CROWBAR_NODEROLE $CROWBAR_RUN end" >> "$j"
printf '{"done":"%s"}' "$CROWBAR_NODEROLE" > "$CROWBAR_OUTPUT"
`;

async function startReplica(): Promise<OperatorProc> {
  const op = await startOperator({
    kubeconfig,
    logDir,
    identity: `restart-${id}-${all.length}`,
    args: [
      `--lease-name=${lease}`,
      `--ssh-key-file=${key.path}`,
      '--alive-interval-ms=1000',
      '--executor=inline',
    ],
  });
  live.push(op);
  all.push(op);
  return op;
}

async function leader(): Promise<OperatorProc> {
  return eventually(
    'a leader among the replicas',
    async () => {
      for (const op of live) {
        if (metricValue((await op.http('/metrics')).body, 'crowbar_leader') === 1) return op;
      }
      return undefined;
    },
    30_000,
    100,
  );
}

/** Each journal line, per machine: `[noderole, run, start|end]`. */
function journalLines(): Map<string, string[][]> {
  const out = new Map<string, string[][]>();
  for (const m of MACHINES) {
    const p = journal(m);
    const text = existsSync(p) ? readFileSync(p, 'utf8') : '';
    out.set(
      m,
      text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => l.split(' ')),
    );
  }
  return out;
}

/** Every script of the chain has ended on every machine. */
function allEnded(): boolean {
  const lines = journalLines();
  return MACHINES.every((m) =>
    CHAIN.every((short) =>
      (lines.get(m) ?? []).some(([nr, , what]) => nr === f.nr(short, m) && what === 'end'),
    ),
  );
}

/** A run that started on a machine and has not ended: a run in flight. */
function runInFlight(): boolean {
  for (const lines of journalLines().values()) {
    const open = new Set<string>();
    for (const [nr, run, what] of lines) {
      if (what === 'start') open.add(`${nr} ${run}`);
      else open.delete(`${nr} ${run}`);
    }
    if (open.size > 0) return true;
  }
  return false;
}

beforeAll(async () => {
  key = await machines.generateKey('root');
  await machines.start(MACHINES, { authorizedKeys: () => [key.publicKey], quietRootShell: true });
  await client.create(
    'Network',
    { metadata: { name: net }, spec: labNetworkSpec(machines.lab.subnet) },
    FM,
  );
  for (const [i, short] of CHAIN.entries()) {
    await f.createRole(short, {
      jig: 'script',
      flags: ['implicit'],
      timeoutSeconds: 120,
      ...(i === 0 ? {} : { requires: [CHAIN[i - 1] ?? ''] }),
      script: { inline: SCRIPT },
    });
  }
  await startReplica();
  await startReplica();
  await eventually(`role network-${net}`, () => client.get('Role', `network-${net}`));
  dep = await f.createDeployment('d', 'committed');
  for (const m of MACHINES) {
    const name = f.node(m);
    const ip = machines.node(m).address;
    await client.create(
      'Node',
      {
        metadata: { name },
        spec: { available: true, deployment: 'system', hints: { [`${net}-v4addr`]: ip } },
      },
      FM,
    );
    await client.create(
      'NodeRole',
      {
        metadata: { name: `network-${net}.${name}` },
        spec: { role: `network-${net}`, node: name, deployment: dep },
      },
      FM,
    );
  }
  for (const m of MACHINES) {
    await eventually(
      `${m} alive`,
      async () => (await client.get('Node', f.node(m)))?.status?.alive === true,
      30_000,
    );
  }
});

afterAll(async () => {
  try {
    for (const op of live.splice(0)) await op.stop().catch(() => undefined);
    // CBT_KEEP_LOG=<dir> keeps the operators' logs for debugging.
    const keep = process.env['CBT_KEEP_LOG'];
    if (keep) for (const op of all) cpSync(op.log, join(keep, op.log.split('/').at(-1) ?? 'op'));
  } finally {
    await client.delete('Network', net).catch(() => undefined);
    // Last: removes the namespaces with any run still executing in them, and the journals.
    await machines.destroy();
  }
});

describe('script runs across operator kills', () => {
  it('kills the leader mid-run again and again: every noderole active, each run executed once', async () => {
    const last = CHAIN.at(-1) ?? '';
    for (const m of MACHINES) await f.bind(last, m, dep);
    const total = MACHINES.length * (CHAIN.length + 1); // + each node's network binding
    let kills = 0;
    for (const delay of KILL_DELAYS.slice(0, KILLS)) {
      const op = await leader();
      // On a loaded machine a replica can take longer to start than the chain's last runs take to
      // finish: once every script has ended there is nothing left to kill mid-run.
      const next = await eventually(
        'a script run in flight on a machine, or every script ended',
        () => (runInFlight() ? 'kill' : allEnded() ? 'done' : undefined),
        60_000,
        50,
      );
      if (next === 'done') break;
      await new Promise((r) => setTimeout(r, delay));
      const exited = new Promise((r) => op.proc.once('exit', r));
      op.proc.kill('SIGKILL');
      await exited;
      kills++;
      live.splice(live.indexOf(op), 1);
      await startReplica();
    }
    const done = await f.waitAll('active', total, 120_000);

    // Each noderole ran once (runCount counts successes) and its script executed exactly once,
    // from start to end, for run 1: no second execution, none overlapping another.
    let doubled = 0;
    let lost = 0;
    const lines = journalLines();
    for (const m of MACHINES) {
      for (const short of CHAIN) {
        const nr = f.nr(short, m);
        const obj = done.find((n) => n.metadata.name === nr);
        expect(obj?.status?.runCount, nr).toBe(1);
        expect(obj?.status?.wall, nr).toEqual({ done: nr });
        const mine = (lines.get(m) ?? []).filter(([name]) => name === nr).map((l) => l.join(' '));
        if (mine.length > 2) doubled++;
        if (mine.length < 2) lost++;
        expect(mine, nr).toEqual([`${nr} 1 start`, `${nr} 1 end`]);
      }
    }
    // The kills did land on runs in flight: the replicas that took over re-adopted some.
    const adopted = all
      .map((op) => readFileSync(op.log, 'utf8').split('re-adopting an interrupted run').length - 1)
      .reduce((a, b) => a + b, 0);
    expect(adopted).toBeGreaterThan(0);
    console.log(
      `RESULT script-restart kills=${kills} readopted=${adopted} noderoles=${CHAIN.length * MACHINES.length} lost=${lost} doubled=${doubled}`,
    );
  }, 300_000);
});
