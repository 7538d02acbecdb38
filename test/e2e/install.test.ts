/**
 * A full installation with Debian's real installer (issue 12, `make e2e-install`; not in `make
 * test`: tens of minutes of TCG). A BIOS qemu VM PXE-boots the discovery image and becomes a
 * Node; `provisioner-os-install` with the built-in `debian-12-install` reboots it into d-i
 * (debian-installer-12-netboot-amd64), which fetches its per-node preseed from the provisioner
 * API over HTTPS, loads its udebs and installs Debian 12 onto the VM's disk from a partial mirror
 * of Debian's own signed files (tools/debian-mirror.sh, served by the boot sidecar's file root:
 * d-i checks Debian's signature with its own keyring), runs the preseed's late command (our
 * late.sh: completion callback, waits for `local` acknowledged) and reboots; SeaBIOS boots the
 * disk (the sidecar's `local` iPXE script exits to it), the installed system reports itself alive
 * over HTTPS and the annealer runs a post-install role over SSH.
 * Network: only the test's own namespaces (pro-<hex>-*); the mirror is built beforehand by the
 * set-up step of `make e2e-install`.
 */
import { execFileSync } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { CoreV1Api } from '@kubernetes/client-node';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { DEBIAN_BOOTENV, debianBootEnv } from '../../operator/provisioner/builtins.ts';
import { e2ePreseed } from '../harness/e2e-preseed.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { nsExec } from '../harness/netns.ts';
import type { OperatorProc } from '../harness/operator.ts';
import type { Started } from '../harness/process.ts';
import {
  buildDiscoveryImage,
  setUpProvisioning,
  type Provisioning,
  type ProvLab,
} from '../harness/prov-lab.ts';
import { qemuArgs } from '../harness/qemu.ts';

const kubeconfig = inject('kubeconfig');
const client = testClient();
const FM = 'e2e-install-test';
const u = uid();
const domain = `e2e${u}.example.com`;
const network = `e2e-${u}`;
const DISC = `disc${u}-install`;
const FACTS_ROLE = `e2e-facts-${u}`;
const POST_ROLE = `e2e-post-${u}`;
const OS_INSTALL = 'provisioner-os-install';
const MAC = `52:54:00:${u.slice(0, 2)}:${u.slice(2, 4)}:11`;
const nodeName = `d${MAC.replace(/:/g, '-')}.${domain}`;
const CACHE = join(homedir(), '.cache', 'crowbar');
const DI = join(CACHE, 'debian-installer');
const MIRROR = process.env['CROWBAR_DEBIAN_MIRROR_DIR'] ?? join(CACHE, 'debian-mirror');

let prov: Provisioning | undefined;
let lab: ProvLab;
let op: OperatorProc | undefined;
let vm: Started | undefined;
let serial = '';
let diLog: Socket | undefined;
const diLines: string[] = [];
const apiUrl = () => prov?.apiUrl ?? '';

async function nodeEvents(name = nodeName): Promise<{ reason: string; message: string }[]> {
  const core = loadKubeConfig(kubeconfig).makeApiClient(CoreV1Api);
  const list = await core.listNamespacedEvent({
    namespace: 'default',
    fieldSelector: `involvedObject.name=${name}`,
  });
  return list.items
    .sort((a, b) =>
      String(a.firstTimestamp ?? a.eventTime).localeCompare(
        String(b.firstTimestamp ?? b.eventTime),
      ),
    )
    .map((e) => ({ reason: e.reason ?? '', message: e.message ?? '' }));
}

const ESC = String.fromCharCode(27);

/** The VM's console (newt escapes stripped) and d-i's syslog, for a failed wait. */
function tails(): string {
  let con = '(no console)';
  try {
    con = readFileSync(serial, 'latin1')
      // newt's screen escapes (ESC [ ... letter, ESC ( or ) charset) stripped
      .replace(new RegExp(`${ESC}\\[[0-9;?]*[A-Za-z]|${ESC}[()][0-9A-B]`, 'g'), '')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(-25)
      .join('\n');
  } catch {
    // not started
  }
  const syslog = diLines
    .filter((l) => !l.includes('debconf (filter)') && !/debconf: <-- |debconf: --> /.test(l))
    .slice(-40)
    .join('\n');
  return `console:\n${con}\nd-i syslog:\n${syslog}`;
}
/**
 * A question d-i is waiting on (the preseed did not answer it): from debconf's protocol log
 * (DEBCONF_DEBUG=5), an INPUT that was to be asked followed by nothing for `quietMs`. Everything
 * else d-i does logs as it goes, so an installer silent on a question is stuck on it, and the
 * test says which one instead of waiting out its bound.
 */
let lastLines = 0;
let lastChange = Date.now();
function stuckOn(quietMs = 300_000): string | undefined {
  if (diLines.length !== lastLines) {
    lastLines = diLines.length;
    lastChange = Date.now();
    return undefined;
  }
  if (Date.now() - lastChange < quietMs) return undefined;
  for (let i = diLines.length - 1; i >= 0 && i >= diLines.length - 200; i--)
    if (diLines[i]?.includes('question will be asked')) {
      for (let j = i; j >= 0 && j >= i - 20; j--) {
        const m = /INPUT (\S+) (\S+)/.exec(diLines[j] ?? '');
        if (m) return `${m[2] ?? '?'} (priority ${m[1] ?? '?'})`;
      }
      return '(a question)';
    }
  return undefined;
}
/** Half an hour without a line from d-i: stuck, whatever on. */
const SILENT_MS = 1_800_000;

/**
 * Polls `fn` like eventually(), but fails at once when the VM is gone or d-i is stuck (a question
 * the preseed did not answer, or silence), with the console and d-i's syslog.
 */
async function installerWait<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs: number,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    if (vm?.proc.exitCode !== null) orTails(new Error(`${what}: qemu exited`));
    const q = stuckOn();
    if (q !== undefined)
      orTails(new Error(`${what}: d-i is waiting on a question the preseed did not answer: ${q}`));
    if (diLines.length > 0 && Date.now() - lastChange > SILENT_MS)
      orTails(new Error(`${what}: d-i has logged nothing for ${String(SILENT_MS / 60_000)} min`));
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e; // the API server under load: asked again
    }
    if (Date.now() > end)
      orTails(new Error(`${what}: not within ${String(timeoutMs / 1000)} s`, { cause: last }));
    await new Promise((r) => setTimeout(r, 2000));
  }
}

const orTails = (e: unknown): never => {
  throw new Error(`${(e as Error).message}\n${tails()}`, { cause: e });
};

beforeAll(async () => {
  if (!existsSync(join(MIRROR, 'debian', 'dists', 'bookworm', 'InRelease')))
    throw new Error(
      `no Debian mirror at ${MIRROR}: run tools/debian-mirror.sh (make e2e-install does)`,
    );
  buildDiscoveryImage();
  prov = await setUpProvisioning({
    client,
    kubeconfig,
    apiServer: inject('apiServer'),
    fieldManager: FM,
    name: `e2e-${u}`,
    network,
    domain,
    discovery: { bootEnv: DISC },
  });
  lab = prov.lab;
  // The installer and the mirror under the sidecar's file root (hard links: same file system).
  mkdirSync(join(lab.fileRoot, 'debian-installer', 'amd64'), { recursive: true });
  for (const f of ['linux', 'initrd.gz'])
    copyFileSync(
      join(DI, 'debian-installer', 'amd64', f),
      join(lab.fileRoot, 'debian-installer', 'amd64', f),
    );
  execFileSync('cp', ['-al', join(MIRROR, 'debian'), join(lab.fileRoot, 'debian')]);
  // Runs on the discovery image and again on the installed system (the annealer re-runs
  // discovery roles when the node comes back).
  await client.create(
    'Role',
    {
      metadata: { name: FACTS_ROLE },
      spec: {
        jig: 'script',
        flags: ['discovery'],
        description: 'reads facts over SSH',
        script: {
          inline:
            '#!/bin/sh\nset -eu\necho "{\\"cpus\\": $(grep -c ^processor /proc/cpuinfo), \\"kernel\\": \\"$(uname -r)\\"}" > "$CROWBAR_OUTPUT"\n',
        },
      },
    } as never,
    FM,
  );
  await client.create(
    'Role',
    {
      metadata: { name: POST_ROLE },
      spec: {
        jig: 'script',
        requires: [OS_INSTALL],
        description: 'a post-install role: runs on the installed system',
        script: {
          // The first-boot unit (oneshot) may still be running when SSH lets the role in: its
          // exit is awaited, bounded, and reported with its status.
          inline: [
            '#!/bin/sh',
            'set -eu',
            '. /etc/crowbar/node',
            '. /etc/os-release',
            'fb() { systemctl show -p "$1" --value crowbar-firstboot.service; }',
            'n=0; while [ "$(fb ExecMainExitTimestampMonotonic)" = 0 ] && [ $n -lt 300 ]; do n=$((n + 1)); sleep 1; done',
            'echo "{\\"installedAs\\": \\"$name\\", \\"os\\": \\"$PRETTY_NAME\\", \\"root\\": \\"$(findmnt -no SOURCE /)\\", \\"firstbootExit\\": \\"$(fb ExecMainStatus)\\", \\"firstbootRan\\": \\"$(fb ExecMainExitTimestampMonotonic)\\"}" > "$CROWBAR_OUTPUT"',
            '',
          ].join('\n'),
        },
      },
    } as never,
    FM,
  );
  await client.delete('BootEnv', DEBIAN_BOOTENV);
  op = await prov.startOperator({
    identity: `e2e-${u}`,
    args: [`--lease-name=e2e-${u}`, '--alive-interval-ms=1000'],
  });
  // d-i's syslog to this file (busybox syslogd -R, lib/debian-installer-startup.d/S10syslog).
  diLog = createSocket('udp4');
  diLog.on('message', (m) => {
    diLines.push(...m.toString('utf8').split('\n').filter(Boolean));
  });
  const sock = diLog;
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ address: lab.hostIp, port: 0 }, resolve);
  });
  // The site's edit of the built-in: its mirror in the preseed (late.sh unchanged), the syslog
  // host and debconf's protocol log before d-i's `---` (the installer's), no_timer_check after
  // it (TCG under load; d-i copies what follows `---` into the installed system's boot loader).
  const be = await eventually('the built-in debian-12-install', () =>
    client.get('BootEnv', DEBIAN_BOOTENV),
  );
  const [head, tail] = (be.spec.kernelArgs ?? '').split(' --- ');
  const files = (debianBootEnv().files ?? []).map((f) =>
    f.name === 'preseed.cfg' ? { ...f, template: e2ePreseed(`${lab.serverIp}:8080`) } : f,
  );
  await client.mergePatch(
    'BootEnv',
    DEBIAN_BOOTENV,
    {
      spec: {
        kernelArgs: `${head ?? ''} log_host=${lab.hostIp} log_port=${String(sock.address().port)} DEBCONF_DEBUG=5 --- ${tail ?? ''} no_timer_check`,
        files,
      },
    },
    FM,
  );
  await prov.startSidecar(['--dns', lab.serverIp]);
}, 600_000);

async function ourNodes(): Promise<Node[]> {
  return (await client.list('Node')).filter((n) => (n.metadata.name ?? '').endsWith(`.${domain}`));
}

afterAll(async () => {
  try {
    await vm?.stop(5000);
    for (const n of await ourNodes()) await client.delete('Node', n.metadata.name ?? '');
    await eventually(
      'the Nodes are gone',
      async () => (await ourNodes()).length === 0,
      60_000,
      250,
    );
  } finally {
    try {
      await op?.stop();
      diLog?.close();
      // For post-mortems: the console, d-i's syslog, the operator's and the sidecar's logs.
      writeFileSync(join(tmpdir(), 'e2e-install-last-syslog'), diLines.join('\n'));
      for (const f of readdirSync(lab.dir).filter((x) => /\.serial$|\.log$/.test(x)))
        copyFileSync(join(lab.dir, f), join(tmpdir(), `e2e-install-last-${f}`));
    } catch {
      // nothing to keep
    } finally {
      for (const r of [FACTS_ROLE, POST_ROLE])
        await client.delete('Role', r).catch(() => undefined);
      await client.delete('BootEnv', DEBIAN_BOOTENV).catch(() => undefined);
      await prov?.destroy();
    }
  }
}, 120_000);

describe('a full installation with the real Debian installer', () => {
  it('discovery, provisioner-os-install, d-i installs from the mirror onto the disk, first boot from the disk reports alive over HTTPS, a post-install role runs over SSH', async () => {
    const disk = join(lab.dir, 'vm.raw');
    await nsExec(lab.lab.hubNs, 'truncate', ['-s', '6G', disk]);
    await lab.addTap('tap1');
    serial = join(lab.dir, 'vm.serial');
    vm = lab.startInHub(
      'qemu-system-x86_64',
      qemuArgs({
        name: `e2e-${u}`,
        mac: MAC,
        tap: 'tap1',
        dir: lab.dir,
        memoryMb: 1024,
        disk: { file: disk, serial: `E2E-${u}` },
      }),
      serial,
    );
    const facts = await eventually(
      'the VM is discovered and its discovery role ran',
      async () => {
        if (vm?.proc.exitCode !== null) throw new Error('qemu exited');
        const x = await client.get('NodeRole', `${FACTS_ROLE}.${nodeName}`);
        const st = x?.status?.state;
        return st === 'active' || st === 'error' ? x : undefined;
      },
      300_000,
      1000,
    ).catch(orTails);
    expect(facts.status?.state, facts.status?.message).toBe('active');
    const t0 = Date.now();
    // No target_os: the built-in role's template says debian-12-install.
    for (const role of [OS_INSTALL, POST_ROLE])
      await client.create(
        'NodeRole',
        {
          metadata: { name: `${role}.${nodeName}` },
          spec: { role, node: nodeName, deployment: 'system' },
        },
        FM,
      );
    const fetched = await installerWait(
      'd-i fetched its preseed',
      async () =>
        (await nodeEvents()).find(
          (e) => e.reason === 'InstallerFetched' && e.message.includes('fetched preseed.cfg'),
        ),
      900_000,
    );
    expect(fetched.message).toMatch(
      /^the installer of debian-12-install fetched preseed\.cfg from /,
    );
    // The install itself: anna's udebs, partitioning, debootstrap, the kernel, grub, the late
    // command's callback. Bounded by the run's time, not by a guess at TCG's speed.
    const installed = await installerWait(
      'the installer called back (late.sh)',
      async () => (await nodeEvents()).find((e) => e.reason === 'Installed'),
      5_400_000,
    );
    console.log(
      `e2e-install: installed ${String(Math.round((Date.now() - t0) / 1000))} s after the commit`,
    );
    expect(installed.message).toContain('boot environment set to local');
    // d-i checked Debian's signature with its own keyring and took everything from our mirror.
    const sys = diLines.join('\n');
    expect(sys).toContain(`successfully loaded preseed file from ${apiUrl()}`);
    expect(sys).not.toMatch(/allow_unauthenticated|Not verifying Release signature/);
    expect(sys).toMatch(/regular: dists\/bookworm\/Release\.gpg/);
    // First boot from the disk: SeaBIOS after the sidecar's `local` exit, GRUB, the installed
    // Debian; its first-boot unit reports alive over HTTPS; the annealer runs the post-install
    // role over SSH.
    const post = await eventually(
      'the post-install role ran on the installed system',
      async () => {
        if (vm?.proc.exitCode !== null) throw new Error('qemu exited');
        const x = await client.get('NodeRole', `${POST_ROLE}.${nodeName}`);
        const st = x?.status?.state;
        return st === 'active' || st === 'error' ? x : undefined;
      },
      1_800_000,
      2000,
    ).catch(orTails);
    console.log(
      `e2e-install: post-install role active ${String(Math.round((Date.now() - t0) / 1000))} s after the commit`,
    );
    expect(post.status?.state, post.status?.message).toBe('active');
    expect(post.status?.wall?.['installedAs']).toBe(nodeName);
    expect(String(post.status?.wall?.['os'])).toMatch(/^Debian GNU\/Linux 12/);
    expect(String(post.status?.wall?.['root'])).toMatch(/^\/dev\/vda\d$/);
    // The first-boot unit reported alive (curl -f over HTTPS with the node API's CA).
    expect(post.status?.wall?.['firstbootExit']).toBe('0');
    expect(String(post.status?.wall?.['firstbootRan'])).toMatch(/^[1-9]\d*$/);
    const con = readFileSync(serial, 'latin1');
    expect(con).toContain('Crowbar: boot from local disk');
    expect(con).toMatch(/Debian GNU\/Linux 12 \S+ ttyS0/);
    const n = await client.get('Node', nodeName);
    expect(n?.status?.alive).toBe(true);
    expect(n?.spec.bootEnv).toBe('local');
    const inst = await client.get('NodeRole', `${OS_INSTALL}.${nodeName}`);
    expect(inst?.status?.state).toBe('active');
    expect((await nodeEvents()).filter((e) => e.reason === 'InstallRequested')).toHaveLength(1);
  }, 9_000_000);
});
