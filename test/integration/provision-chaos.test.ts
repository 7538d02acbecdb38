/**
 * Install-flow chaos (issue 12, ADR 0022): the real operator is killed at each step of the
 * `provisioner-os-install` flow in turn, and every time a fresh operator finishes the same run
 * with exactly one power cycle and one installation.
 *
 * Real parts: the API server, the operator process, the DHCP/TFTP/HTTP boot sidecar that
 * acknowledges boot environments on the Node, OpenSSH's sshd as the machine's running system (the
 * aliveness check), and OpenIPMI's `ipmi_sim` as the machine's BMC, driven by the operator's ipmi
 * power driver; its chassis script (test/harness/vm-power.sh) starts a qemu VM per power-on and
 * logs each with its boot device, which is how the test counts power cycles (the VM is started
 * paused, `-S`: only its power state matters here). The machine's address is a network namespace
 * on the provisioning lab's bridge.
 *
 * STAND-IN INSTALLER: what runs after the power cycle is this file, in the machine's namespace,
 * doing what d-i does with our preseed: it fetches `preseed.cfg` from its own address, runs the
 * preseed's late command (the real `late.sh`, with /target in a scratch directory: the completion
 * callback, then the wait for `local` acknowledged), then the installed system's first-boot
 * script (reports it alive). The full installation by Debian's installer is `make e2e-install`.
 *
 * Crash points inside the operator are failpoints (operator/failpoints.ts, CROWBAR_FAILPOINTS):
 * the windows between the boot sidecar's acknowledgement and the power cycle are milliseconds.
 * "During the install" and "after the callback" are kills from outside (SIGKILL).
 */
import { CoreV1Api } from '@kubernetes/client-node';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { debianBootEnv } from '../../operator/provisioner/builtins.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { simVm, startIpmiBmc, type IpmiBmc } from '../harness/ipmi-bmc.ts';
import type { LabNode } from '../harness/netns.ts';
import type { OperatorProc } from '../harness/operator.ts';
import { setUpProvisioning, type Provisioning, type ProvLab } from '../harness/prov-lab.ts';
import { startSshd, type KeyPair, type Sshd } from '../harness/sshd.ts';

const kubeconfig = inject('kubeconfig');
const client = testClient();
const core = loadKubeConfig(kubeconfig).makeApiClient(CoreV1Api);
const FM = 'provision-chaos-test';
const u = uid();
const domain = `pch${u}.example.com`;
const network = `pch-${u}`;
const TARGET = `pch${u}-install`;
const OS_INSTALL = 'provisioner-os-install';
const SECRET = `pch-bmc-${u}`;
const BMC_USER = `crowbar${u}`;
const BMC_PASSWORD = `pw-${u}-Kx9`;
/** How long a resumed run waits for the installer before cycling again (operator flag). */
const EVIDENCE_MS = 60_000;

let prov: Provisioning | undefined;
let lab: ProvLab;
let key: KeyPair;
let op: OperatorProc | undefined;
let opCount = 0;
/** An operator started in the background by a kill hook; awaited by the case. */
let starting: Promise<unknown> | undefined;
const machines: { sshd: Sshd; bmc: IpmiBmc; ln: LabNode; name: string }[] = [];

const api = (path: string) => `${prov?.apiUrl ?? ''}${path}`;

/** A fresh operator; `failpoints` armed in it (it kills itself at the first one it reaches). */
async function startOp(failpoints: string[] = []): Promise<OperatorProc> {
  opCount++;
  if (!prov) throw new Error('no provisioning lab');
  op = await prov.startOperator({
    identity: `pch-${u}-${String(opCount)}`,
    args: [
      `--lease-name=pch-${u}`,
      '--alive-interval-ms=1000',
      `--install-reboot-evidence-ms=${String(EVIDENCE_MS)}`,
    ],
    env: { CROWBAR_FAILPOINTS: failpoints.join(',') },
  });
  return op;
}

/** Resolves once `p` has exited (a failpoint or a kill), bounded. */
async function exited(p: OperatorProc, timeoutMs: number): Promise<void> {
  await eventually(
    'the operator exited',
    () => p.proc.exitCode !== null || p.proc.signalCode !== null,
    timeoutMs,
    100,
  );
}

beforeAll(async () => {
  // No discovery: the stand-in machines are namespaces on this host, without the boot
  // sidecar's CA, so the node API serves plain HTTP.
  prov = await setUpProvisioning({
    client,
    kubeconfig,
    apiServer: inject('apiServer'),
    fieldManager: FM,
    name: `pch-${u}`,
    network,
    domain,
    hostRange: [10, 99],
  });
  lab = prov.lab;
  key = prov.key;
  // The installer BootEnv of this file: the built-in debian-12-install's preseed and late.sh.
  const deb = debianBootEnv();
  await client.create(
    'BootEnv',
    {
      metadata: { name: TARGET },
      spec: {
        description: 'chaos test: the debian-12-install files, served to a STAND-IN INSTALLER',
        kernel: deb.kernel ?? 'debian-installer/amd64/linux',
        initrds: deb.initrds ?? [],
        kernelArgs: deb.kernelArgs ?? '',
        files: deb.files ?? [],
      },
    },
    FM,
  );
  await core.createNamespacedSecret({
    namespace: 'default',
    body: {
      metadata: { name: SECRET },
      stringData: { username: BMC_USER, password: BMC_PASSWORD },
    },
  });
  await startOp();
  await eventually(`role ${OS_INSTALL}`, () => client.get('Role', OS_INSTALL));
  await prov.startSidecar();
}, 300_000);

async function ourNodes(): Promise<Node[]> {
  return (await client.list('Node')).filter((n) => (n.metadata.name ?? '').endsWith(`.${domain}`));
}

afterAll(async () => {
  try {
    if (!op || op.proc.exitCode !== null || op.proc.signalCode !== null) await startOp();
    for (const n of await ourNodes()) await client.delete('Node', n.metadata.name ?? '');
    await eventually(
      "this file's Nodes are gone",
      async () => (await ourNodes()).length === 0,
      60_000,
      250,
    );
  } finally {
    try {
      await op?.stop();
    } finally {
      for (const m of machines) {
        await m.bmc.stop().catch(() => undefined);
        await m.sshd.cleanup().catch(() => undefined);
      }
      await core.deleteNamespacedSecret({ name: SECRET, namespace: 'default' }).catch(() => 0);
      await client.delete('BootEnv', TARGET).catch(() => undefined);
      await prov?.destroy();
    }
  }
}, 120_000);

/**
 * A machine: a namespace on the lab with sshd (its running system), an ipmi_sim BMC, and a Node
 * with that address (a hint and the provisioning network's role) and the ipmi driver.
 */
async function machine(i: number): Promise<(typeof machines)[number]> {
  const ln = await lab.lab.addNode(`m${String(i)}`);
  const sshd = await startSshd({ ns: ln.ns, address: ln.address, authorizedKeys: [key.publicKey] });
  const dir = join(lab.dir, `bmc${String(i)}`);
  mkdirSync(dir, { recursive: true });
  const mac = `52:54:00:${u.slice(0, 2)}:${u.slice(2, 4)}:${i.toString(16).padStart(2, '0')}`;
  const vm = simVm(dir, `pch-${u}-${String(i)}`, mac);
  const bmc = await startIpmiBmc({
    dir,
    name: `pch${u}${String(i)}`,
    username: BMC_USER,
    password: BMC_PASSWORD,
    // Paused: a power-on is logged and its process lives, but it takes no CPU.
    vm: { ...vm, args: [...vm.args, '-S'] },
  });
  const name = `m${String(i)}-${u}.${domain}`;
  const m = { sshd, bmc, ln, name };
  machines.push(m);
  await client.create(
    'Node',
    {
      metadata: { name },
      spec: {
        available: true,
        deployment: 'system',
        macs: [mac],
        hints: { [`${network}-v4addr`]: ln.address },
        power: { driver: 'ipmi', address: bmc.address, credentialsSecret: { name: SECRET } },
      },
    },
    FM,
  );
  await client.create(
    'NodeRole',
    {
      metadata: { name: `network-${network}.${name}` },
      spec: { role: `network-${network}`, node: name, deployment: 'system' },
    },
    FM,
  );
  await eventually(
    `${name} has its address and is alive`,
    async () => {
      const n = await client.get('Node', name);
      return (
        n?.status?.alive === true && n.status.addresses?.some((a) => a.address === ln.cidr) === true
      );
    },
    90_000,
    250,
  );
  return m;
}

function tailOf(file: string | undefined): string {
  try {
    return readFileSync(file ?? '', 'utf8')
      .split('\n')
      .slice(-30)
      .join('\n');
  } catch {
    return '(no log)';
  }
}

/** Events on a Node, oldest first. */
async function events(name: string): Promise<{ reason: string; message: string }[]> {
  const l = await core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: `involvedObject.name=${name}`,
  });
  return l.items
    .sort((a, b) =>
      String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)),
    )
    .map((e) => ({ reason: e.reason ?? '', message: e.message ?? '' }));
}

/** GET from the machine's own address, retried while the operator (its API) is restarting. */
async function fetchFromMachine(m: (typeof machines)[number], url: string): Promise<string> {
  let body = '';
  await eventually(
    `the machine fetched ${url}`,
    async () => {
      // exec rejects when wget fails (the API is down): try again.
      const r = await m.ln
        .exec('wget', ['-q', '-T', '5', '-O', '-', url], 15_000)
        .catch(() => undefined);
      body = r?.stdout ?? '';
      return r !== undefined;
    },
    120_000,
    500,
  );
  return body;
}

interface Hooks {
  /** After the installer fetched its preseed, before its late command. */
  afterFetch?: () => Promise<void>;
  /** After the late command (callback done, `local` acknowledged), before the first boot. */
  afterCallback?: () => Promise<void>;
}

/**
 * The STAND-IN INSTALLER (see the file's comment): waits for the power cycle into the network
 * boot, then does what d-i does with the preseed, then the first boot.
 */
async function standIn(m: (typeof machines)[number], hooks: Hooks): Promise<void> {
  // Bounded by the resumed run's wait for the installer plus an operator restart.
  await eventually(
    'the BMC powered the machine on into a network boot',
    () => m.bmc.boots().includes('n'),
    EVIDENCE_MS + 180_000,
    250,
  );
  // d-i fetches its preseed once; a machine booting takes longer than the operator's restart,
  // which the retry stands in for.
  const preseed = await fetchFromMachine(m, api(`/provision/v1/nodes/${m.name}/files/preseed.cfg`));
  const late = /^d-i preseed\/late_command string (.*)$/m.exec(preseed)?.[1];
  expect(late, 'the preseed has a late command').toBeDefined();
  await hooks.afterFetch?.();
  const target = join(lab.dir, `target-${m.name}`);
  mkdirSync(target, { recursive: true });
  // The late command as d-i runs it: sh -c, with the installed system at $CROWBAR_TARGET.
  // (exec rejects with its stderr when the command fails.)
  await m.ln.exec(
    'sh',
    ['-c', `CROWBAR_TARGET=${target}; export CROWBAR_TARGET; ${late ?? 'false'}`],
    300_000,
  );
  await hooks.afterCallback?.();
  // First boot: the installed system's unit, reading its identity from the installed files.
  const fb = readFileSync(join(target, 'etc', 'crowbar', 'firstboot'), 'utf8').replaceAll(
    '/etc/crowbar/node',
    join(target, 'etc', 'crowbar', 'node'),
  );
  await m.ln.exec('sh', ['-c', fb], 200_000);
}

/**
 * One crash: the operator armed with `failpoints` (or killed by `hooks`), a fresh one started
 * after it died, the flow to the end; then what must hold every time.
 */
async function crashCase(
  i: number,
  o: {
    failpoint?: string;
    hooks?: (m: (typeof machines)[number]) => Hooks;
    /** Power cycles the journal says were asked for (not done: the BMC's log says that). */
    asked?: number;
  },
): Promise<{ m: (typeof machines)[number]; ev: { reason: string; message: string }[] }> {
  if (op && op.proc.exitCode === null && op.proc.signalCode === null) await op.stop();
  // Armed before the machine exists: its failpoints are on the install flow's path only.
  const armed = await startOp(o.failpoint === undefined ? [] : [o.failpoint]);
  const m = await machine(i);
  const nrName = `${OS_INSTALL}.${m.name}`;
  await client.create(
    'NodeRole',
    {
      metadata: { name: nrName },
      spec: { role: OS_INSTALL, node: m.name, deployment: 'system', data: { target_os: TARGET } },
    },
    FM,
  );
  // A failpoint kills the armed operator; a fresh one (no failpoints) takes over.
  const restarted =
    o.failpoint === undefined
      ? Promise.resolve()
      : exited(armed, 180_000).then(async () => {
          await startOp();
        });
  // Awaited below; a rejection must not go unhandled while the stand-in runs.
  restarted.catch(() => undefined);
  try {
    await standIn(m, o.hooks?.(m) ?? {});
  } catch (e) {
    throw new Error(`${(e as Error).message}\noperator log tail:\n${tailOf(op?.log)}`, {
      cause: e,
    });
  }
  await restarted;
  await starting;
  starting = undefined;
  if (o.failpoint !== undefined)
    expect(readFileSync(armed.log, 'utf8')).toContain(`failpoint ${o.failpoint}: killing`);
  const nr = await eventually(
    'the install noderole is active',
    async () => {
      const x = await client.get('NodeRole', nrName);
      return x?.status?.state === 'active' || x?.status?.state === 'error' ? x : undefined;
    },
    120_000,
    250,
  );
  expect(nr.status?.state, nr.status?.message).toBe('active');
  // Ran once: one run, numbered 1, never a second.
  expect(nr.status?.runCount).toBe(1);
  expect(nr.status?.run?.number).toBe(1);
  // One power cycle, into the network boot.
  expect(m.bmc.boots()).toEqual(['n']);
  const n = await client.get('Node', m.name);
  expect(n?.spec.bootEnv).toBe('local');
  expect(n?.status?.bootEnv?.applied).toBe('local');
  expect(n?.status?.install).toMatchObject({
    run: `${nrName}.run-1`,
    target: TARGET,
    phase: 'installed',
    cycles: o.asked ?? 1,
  });
  expect(n?.status?.alive).toBe(true);
  let ev: { reason: string; message: string }[] = [];
  await eventually(
    'the Installed Event',
    async () => (ev = await events(m.name)).some((e) => e.reason === 'Installed'),
    60_000,
    250,
  );
  // One installation: the installer called back once (late.sh retries only failed calls).
  expect(ev.filter((e) => e.reason === 'Installed')).toHaveLength(1);
  // Events are queued off the hot path and die with a killed process: at most one, and the
  // BMC's log above is the record that counts.
  expect(ev.filter((e) => e.reason === 'PowerCycle').length).toBeLessThanOrEqual(1);
  return { m, ev };
}

describe('install-flow chaos: the operator killed at each step', () => {
  it('after the journal, before the boot environment is set', async () => {
    await crashCase(1, { failpoint: 'os-install/requested' });
  }, 600_000);

  it('after the boot environment is set, before the acknowledgement is seen', async () => {
    const { ev } = await crashCase(2, { failpoint: 'os-install/bootenv-set' });
    // The same run asked again (the same value: no new generation), then went on; the killed
    // process's own Event may not have been written.
    expect(ev.filter((e) => e.reason === 'InstallRequested').length).toBeGreaterThanOrEqual(1);
  }, 600_000);

  it('after the DHCP sidecar acknowledged, before the power cycle', async () => {
    await crashCase(3, { failpoint: 'os-install/acknowledged' });
  }, 600_000);

  it('after the power cycle was journalled, before the driver was called: one cycle, after the wait for the installer', async () => {
    // Asked twice (the first ask died before the driver), done once.
    const { ev } = await crashCase(4, { failpoint: 'os-install/rebooting', asked: 2 });
    expect(ev.map((e) => e.reason)).toContain('RebootUnconfirmed');
  }, 600_000);

  it('after the power cycle, before it was journalled: the installer showing up confirms it', async () => {
    const { ev } = await crashCase(5, { failpoint: 'os-install/cycled' });
    // Seen while the resumed run waited, or already journalled (`fetched`) when it was adopted:
    // the next operator's API can serve the installer before it holds the lease.
    expect(
      ev.some(
        (e) =>
          e.reason === 'InstallerSeen' ||
          (e.reason === 'InstallResumed' && /\((fetched|installed)\)/.test(e.message)),
      ),
      JSON.stringify(ev),
    ).toBe(true);
    expect(ev.map((e) => e.reason)).not.toContain('RebootUnconfirmed');
  }, 600_000);

  it('after the power cycle was journalled, before the run was recorded', async () => {
    const { ev } = await crashCase(6, { failpoint: 'os-install/rebooted' });
    expect(ev.find((e) => e.reason === 'InstallResumed')?.message).toMatch(
      // `rebooted`, or later when the stand-in was quicker than the next operator's adoption.
      /already restarted into .* \((rebooted|fetched|installed)\); not restarting it again/,
    );
  }, 600_000);

  it('during the install (after the preseed was fetched)', async () => {
    await crashCase(7, {
      hooks: () => ({
        afterFetch: async () => {
          const dead = op;
          dead?.proc.kill('SIGKILL');
          if (dead) await exited(dead, 30_000);
          // The late command starts against a dead API: it must retry until the next operator.
          starting = startOp();
        },
      }),
    });
  }, 600_000);

  it('in the completion callback, after it was journalled, before boot environment local', async () => {
    await crashCase(8, { failpoint: 'provisioner/installed-journalled' });
  }, 600_000);

  it('after the installer called back, before the first boot', async () => {
    await crashCase(9, {
      hooks: () => ({
        afterCallback: async () => {
          const dead = op;
          dead?.proc.kill('SIGKILL');
          if (dead) await exited(dead, 30_000);
          // The first boot reports alive against a dead API: it retries until the next one.
          starting = startOp();
        },
      }),
    });
  }, 600_000);
});
