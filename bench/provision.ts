/**
 * `make bench-provision`: BENCH_PROVISION_VMS (default 8) BIOS qemu VMs (TCG, 1 vCPU, 512 MiB,
 * no OS) powered on at once on a provisioning lab's bridge (test/harness/prov-lab.ts: a network
 * namespace with the real DHCP/TFTP/HTTP boot sidecar), against a real API server and the real
 * operator. Each VM PXE-boots the discovery image, registers with the provisioner API, becomes
 * Node d<mac>.<domain>, takes its allocated address, starts sshd, and the discovery role runs on
 * it over SSH. Measured per VM: from its qemu's start (power-on) to its discovery noderole
 * `active`, seen by polling the API every 250 ms (so each time is late by at most that).
 *
 * Where the time goes (bench/provision-phases.ts): each VM's serial console is read every 100 ms
 * and each line stamped with the wall time and the VM's qemu CPU time since its power-on; the
 * phases (iPXE's network configuration and downloads, the kernel, the agent's steps, the
 * operator's run) are printed as medians over the VMs, wall and CPU seconds side by side: the CPU
 * column is what a phase costs whatever else the machine runs. The stamped consoles are kept in
 * the temporary directory as bench-provision-vm<i>.console.
 *
 * Prints `RESULT provision vms=N seconds=<slowest> p50_s=... p99_s=... load1=<start>-<end>` and
 * writes bench/results/provision.json. Goal (issue 12): all 8 within 90 s on two cores. The
 * load average is printed beside it: on a machine shared with other work the times are not the
 * bench's alone.
 */
import {
  closeSync,
  copyFileSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CrowbarClient, loadKubeConfig } from '../operator/kube/client.ts';
import { startControlPlane } from '../test/harness/control-plane.ts';
import { nsExec } from '../test/harness/netns.ts';
import type { OperatorProc } from '../test/harness/operator.ts';
import type { Started } from '../test/harness/process.ts';
import {
  buildDiscoveryImage,
  setUpProvisioning,
  type Provisioning,
} from '../test/harness/prov-lab.ts';
import { qemuArgs } from '../test/harness/qemu.ts';
import {
  medianPhases,
  stampLines,
  vmPhases,
  type Mark,
  type PhaseRow,
  type StampedLine,
} from './provision-phases.ts';
import { cpuSeconds } from './util.ts';

const N = Number(process.env['BENCH_PROVISION_VMS'] ?? 8);
const TIMEOUT_S = Number(process.env['BENCH_PROVISION_TIMEOUT_S'] ?? 600);
const FM = 'bench-provision';
const DOMAIN = 'bench.example.com';
const NETWORK = 'bench-prov';
// A BootEnv's name is sledgehammer, local or <os>-install (the CRD's rule); the operator owns sledgehammer.
const DISC = 'benchdisc-install';
const FACTS = 'bench-facts';

// Knobs for comparing one change at a time in a sitting: more kernel arguments, another qemu
// -cpu model, and the sidecar's router advertisements off (BENCH_PROVISION_RA=0). The VMs have
// virtio NICs, so they boot the image's virtio kernel variant (ADR 0032).
const EXTRA_ARGS = process.env['BENCH_PROVISION_KERNEL_ARGS'] ?? '';
const CPU_MODEL = process.env['BENCH_PROVISION_CPU'];
const RA = process.env['BENCH_PROVISION_RA'] !== '0';
// Two runs side by side (a change and its base, under the same load) keep their files apart.
const LABEL = process.env['BENCH_PROVISION_LABEL']
  ? `-${process.env['BENCH_PROVISION_LABEL']}`
  : '';

const mac = (i: number) => `52:54:00:be:0e:${i.toString(16).padStart(2, '0')}`;
const nodeOf = (m: string) => `d${m.replace(/:/g, '-')}.${DOMAIN}`;

/** A VM's console, read as it grows; each complete line stamped on arrival. */
class Console {
  readonly lines: StampedLine[] = [];
  private offset = 0;
  private rest = '';
  private readonly file: string;
  private readonly mark: () => Mark;
  constructor(file: string, mark: () => Mark) {
    this.file = file;
    this.mark = mark;
  }
  read(): void {
    let fd: number;
    try {
      fd = openSync(this.file, 'r');
    } catch {
      return; // not created yet
    }
    try {
      const buf = Buffer.alloc(64 * 1024);
      for (let i = 0; i < 64; i++) {
        const n = readSync(fd, buf, 0, buf.length, this.offset);
        if (n <= 0) break;
        this.offset += n;
        const r = stampLines(this.rest, buf.subarray(0, n).toString('latin1'), this.mark());
        this.rest = r.rest;
        this.lines.push(...r.lines);
      }
    } finally {
      closeSync(fd);
    }
  }
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? NaN;
}

async function main(): Promise<void> {
  console.log(`bench-provision: ${String(N)} BIOS VMs at once, power-on to discovery role active`);
  buildDiscoveryImage();
  const cp = await startControlPlane({ controllerManager: false });
  let prov: Provisioning | undefined;
  let op: OperatorProc | undefined;
  const vms: Started[] = [];
  const consoles: Console[] = [];
  let reader: NodeJS.Timeout | undefined;
  try {
    const client = new CrowbarClient(loadKubeConfig(cp.kubeconfig));
    prov = await setUpProvisioning({
      client,
      kubeconfig: cp.kubeconfig,
      apiServer: cp.server,
      fieldManager: FM,
      name: 'bench-provision',
      network: NETWORK,
      domain: DOMAIN,
      discovery: { bootEnv: DISC, kernelArgs: EXTRA_ARGS },
    });
    const l = prov.lab;
    await client.create(
      'Role',
      {
        metadata: { name: FACTS },
        spec: {
          jig: 'script',
          flags: ['discovery'],
          description: 'reads facts on the discovery image over SSH',
          script: {
            inline:
              '#!/bin/sh\nset -eu\necho "{\\"cpus\\": $(grep -c ^processor /proc/cpuinfo)}" > "$CROWBAR_OUTPUT"\n',
          },
        },
      } as never,
      FM,
    );
    op = await prov.startOperator({
      identity: 'bench-provision',
      args: [
        // The test harness's 4 s lease is for failover tests; at load 25 this operator lost it
        // and exited mid-bench. The operator's own defaults are longer still.
        '--lease-duration-ms=15000',
        '--renew-deadline-ms=10000',
        '--retry-period-ms=2000',
      ],
      env: { LOG_LEVEL: 'info' },
    });
    await prov.startSidecar([], RA);
    // Disks and taps first: only the machines' own work is timed.
    const args: string[][] = [];
    for (let i = 0; i < N; i++) {
      const disk = join(l.dir, `vm${String(i)}.raw`);
      await nsExec(l.lab.hubNs, 'truncate', ['-s', '1G', disk]);
      await l.addTap(`tap${String(i)}`);
      const a = qemuArgs({
        name: `bench-prov-${String(i)}`,
        firmware: 'bios',
        mac: mac(i),
        tap: `tap${String(i)}`,
        dir: l.dir,
        memoryMb: 512,
        disk: { file: disk, serial: `BENCH-${String(i)}` },
      });
      if (CPU_MODEL !== undefined) a.splice(a.indexOf('-cpu') + 1, 1, CPU_MODEL);
      args.push(a);
    }
    const load0 = loadavg()[0] ?? 0;
    const started: number[] = [];
    // Wall and qemu CPU seconds of VM i since its power-on.
    const markOf = (i: number): Mark => {
      const pid = vms[i]?.proc.pid;
      let cpu = NaN;
      try {
        if (pid !== undefined) cpu = cpuSeconds(pid);
      } catch {
        // qemu exited: the main loop says so
      }
      return { t: (performance.now() - (started[i] ?? 0)) / 1000, cpu };
    };
    for (let i = 0; i < N; i++) {
      started.push(performance.now());
      const serial = join(l.dir, `vm${String(i)}.serial`);
      vms.push(l.startInHub('qemu-system-x86_64', args[i] ?? [], serial));
      consoles.push(new Console(serial, () => markOf(i)));
    }
    reader = setInterval(() => {
      for (const c of consoles) c.read();
    }, 100);
    // The operator's side of each VM, as the API shows it.
    const apiMarks = new Map<number, Map<string, Mark>>();
    const apiMark = (i: number, phase: string): void => {
      let m = apiMarks.get(i);
      if (!m) apiMarks.set(i, (m = new Map<string, Mark>()));
      if (!m.has(phase)) m.set(phase, markOf(i));
    };
    const done = new Map<number, number>();
    // Registration (the Node has its hardware facts): splits the machine's own boot from the rest.
    const registered = new Map<number, number>();
    const deadline = performance.now() + TIMEOUT_S * 1000;
    while (done.size < N) {
      if (performance.now() > deadline)
        throw new Error(
          `only ${String(done.size)} of ${String(N)} VMs had their discovery role active within ${String(TIMEOUT_S)} s`,
        );
      const facts = (await client.list('NodeRole')).filter((x) => x.spec.role === FACTS);
      const active = new Set(
        facts.filter((x) => x.status?.state === 'active').map((x) => x.spec.node),
      );
      const running = new Set(
        facts
          .filter((x) => x.status?.state === 'transition' || x.status?.state === 'active')
          .map((x) => x.spec.node),
      );
      const now = performance.now();
      const all = await client.list('Node');
      const nodes = new Set(
        all.filter((n) => n.status?.hardware?.cpus !== undefined).map((n) => n.metadata.name),
      );
      const addressed = new Set(
        all
          .filter((n) => n.status?.addresses?.some((a) => a.network === NETWORK))
          .map((n) => n.metadata.name),
      );
      const alive = new Set(
        all.filter((n) => n.status?.alive === true).map((n) => n.metadata.name),
      );
      for (let i = 0; i < N; i++) {
        const name = nodeOf(mac(i));
        if (addressed.has(name)) apiMark(i, 'api-address');
        if (alive.has(name)) apiMark(i, 'api-alive');
        if (running.has(name)) apiMark(i, 'run-start');
        if (active.has(name)) apiMark(i, 'run-end');
      }
      for (let i = 0; i < N; i++)
        if (!registered.has(i) && nodes.has(nodeOf(mac(i))))
          registered.set(i, (now - (started[i] ?? now)) / 1000);
      for (let i = 0; i < N; i++)
        if (!done.has(i) && active.has(nodeOf(mac(i))))
          done.set(i, (now - (started[i] ?? now)) / 1000);
      for (let i = 0; i < N; i++)
        if (vms[i]?.proc.exitCode !== null && !done.has(i))
          throw new Error(
            `VM ${String(i)} exited; console tail:\n${readFileSync(join(l.dir, `vm${String(i)}.serial`), 'latin1').slice(-2000)}`,
          );
      await new Promise((r) => setTimeout(r, 250));
    }
    const load1 = loadavg()[0] ?? 0;
    clearInterval(reader);
    for (const c of consoles) c.read();
    const perVm: PhaseRow[][] = consoles.map((c, i) => {
      const m = apiMarks.get(i) ?? new Map<string, Mark>();
      // The console's own markers come first; of the API's, only the run shows nowhere else
      // (the address and alive are on the console too, and earlier than a 250 ms poll sees them).
      return vmPhases(c.lines, [
        { phase: 'run-start', at: m.get('run-start') },
        { phase: 'run-end', at: m.get('run-end') },
      ]);
    });
    const phases = medianPhases(perVm);
    const secs = [...done.values()];
    const result = {
      vms: N,
      seconds: Math.max(...secs),
      p50_s: quantile(secs, 0.5),
      p99_s: quantile(secs, 0.99),
      per_vm_s: secs.map((s) => Number(s.toFixed(1))),
      registered_s: [...registered.values()].map((s) => Number(s.toFixed(1))),
      cpu_s: [...done.keys()].map((i) =>
        Number((apiMarks.get(i)?.get('run-end')?.cpu ?? NaN).toFixed(1)),
      ),
      phases_median: phases.map((p) => ({
        phase: p.phase,
        wall_s: Number(p.wall.toFixed(2)),
        cpu_s: p.cpu === undefined ? null : Number(p.cpu.toFixed(2)),
      })),
      load1_start: load0,
      load1_end: load1,
      cores: 2,
      measured_at: new Date().toISOString(),
    };
    mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
    writeFileSync(
      join(import.meta.dirname, 'results', 'provision.json'),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    console.log(
      `RESULT provision vms=${String(N)} seconds=${result.seconds.toFixed(1)} p50_s=${result.p50_s.toFixed(1)} p99_s=${result.p99_s.toFixed(1)} load1=${load0.toFixed(1)}-${load1.toFixed(1)}`,
    );
    console.log(`registered after (s): ${result.registered_s.join(' ')}`);
    console.log(`qemu CPU until active (s): ${result.cpu_s.join(' ')}`);
    console.log('phase (median over VMs)      wall s   qemu CPU s');
    for (const p of phases)
      console.log(
        `  ${p.phase.padEnd(26)} ${p.wall.toFixed(2).padStart(6)}   ${p.cpu === undefined ? '' : p.cpu.toFixed(2).padStart(6)}`,
      );
  } finally {
    clearInterval(reader);
    // The stamped consoles outlive the lab too, also when the run failed.
    for (const [i, c] of consoles.entries()) {
      c.read();
      writeFileSync(
        join(tmpdir(), `bench-provision${LABEL}-vm${String(i)}.console`),
        c.lines.map((x) => `${x.t.toFixed(2)} ${x.cpu.toFixed(2)} ${x.text}`).join('\n'),
      );
    }
    for (const v of vms) await v.stop(5000).catch(() => undefined);
    await op?.stop().catch(() => undefined);
    // The operator's log outlives the lab directory, for a look at where the time went.
    if (op) copyFileSync(op.log, join(tmpdir(), `bench-provision${LABEL}-operator.log`));
    await prov?.destroy();
    await cp.stop();
  }
}

await main();
