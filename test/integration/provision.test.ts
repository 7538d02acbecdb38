/**
 * Provisioning end to end (issue 12): a BIOS qemu VM (TCG) with no OS PXE-boots from the DHCP
 * sidecar into the discovery image (tools/discovery-image, built from Debian packages), whose
 * agent registers the machine with the operator's provisioner API. The machine becomes Node
 * d<mac>.<domain> with its hardware facts, takes its allocated address, starts sshd with the
 * operator's key, reports alive, and its discovery role runs over SSH. Then registration abuse
 * (forged token, a MAC of another Node, a 10 MB body, a flood) is refused and changes nothing.
 * The node API serves HTTPS only, with this file's own CA, which the sidecar delivers to every
 * netbooted machine as a second initrd (--api-ca-file, ADR 0019); a machine given another CA
 * refuses to register and says why on its console. A second BIOS VM gets the built-in
 * provisioner-os-install with debian-12-install: Debian's real installer (d-i) fetches its
 * per-node preseed from us over HTTPS, while the first VM runs the rest of the install flow with
 * a stand-in installer.
 * Everything runs in namespaces this file creates (pro-<hex>-*) and removes.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { CoreV1Api } from '@kubernetes/client-node';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import { loadKubeConfig } from '../../operator/kube/client.ts';
import { DEBIAN_BOOTENV, debianBootEnv } from '../../operator/provisioner/builtins.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { nsExec, type LabNode } from '../harness/netns.ts';
import type { OperatorProc } from '../harness/operator.ts';
import type { Started } from '../harness/process.ts';
import {
  buildDiscoveryImage,
  setUpProvisioning,
  type Provisioning,
  type ProvLab,
} from '../harness/prov-lab.ts';
import { caInitrd } from '../../dhcp-sidecar/ca-initrd.ts';
import { makeCa } from '../harness/pki.ts';
import { qemuArgs, type Firmware } from '../harness/qemu.ts';

const kubeconfig = inject('kubeconfig');
const client = testClient();
const FM = 'provision-test';
const u = uid();
const domain = `pro${u}.example.com`;
const network = `pro-${u}`;
const DISC = `disc${u}-install`;
const FACTS_ROLE = `pro-facts-${u}`;
const MAC = `52:54:00:${u.slice(0, 2)}:${u.slice(2, 4)}:01`;
const nodeName = `d${MAC.replace(/:/g, '-')}.${domain}`;
const STANDIN = `standin${u}-install`;
const POST_ROLE = `pro-post-${u}`;
const OS_INSTALL = 'provisioner-os-install';
const DI = join(homedir(), '.cache', 'crowbar', 'debian-installer');
/**
 * d-i's own syslog, sent by its busybox syslogd (`log_host=`/`log_port=` on its command line,
 * lib/debian-installer-startup.d/S10syslog) to a UDP socket of this file on the lab's host
 * address: the installer's side of the preseed fetch (wget's error, or "successfully loaded
 * preseed file"), which its serial console (a newt screen) does not show.
 */
let diLog: Socket | undefined;
const diLines: string[] = [];
const diLogTail = (re = /preseed|wget|fetch|url|netcfg|dhcp|error|fail/i) =>
  diLines
    .filter((l) => re.test(l))
    .slice(-40)
    .join('\n');
let prov: Provisioning | undefined;
let lab: ProvLab;
let op: OperatorProc | undefined;
let vm: Started | undefined;
/** The second VM: the real Debian installer's. */
let vm2: Started | undefined;
/**
 * The real installer's preseed fetch, started by its first test and awaited after the install
 * flow, which runs meanwhile (d-i boots under TCG for minutes): an Error when it did not come.
 */
let diFetch: Promise<{ reason: string; message: string } | Error> | undefined;
const MAC2 = `52:54:00:${u.slice(0, 2)}:${u.slice(2, 4)}:02`;
const node2Name = `d${MAC2.replace(/:/g, '-')}.${domain}`;
const serial2 = () => join(lab.dir, 'vm2.serial');
/** The UEFI VM (OVMF, no option ROM): discovery over UEFI PXE, snponly.efi, then iPXE. */
let vm3: Started | undefined;
const MAC3 = `52:54:00:${u.slice(0, 2)}:${u.slice(2, 4)}:03`;
const node3Name = `d${MAC3.replace(/:/g, '-')}.${domain}`;
const serial3 = () => join(lab.dir, 'vm3.serial');
let serial = '';
/**
 * A virtio-NIC VM whose only disk is on q35's AHCI (SATA) controller: the virtio kernel variant
 * cannot see that disk, so the provisioner sends it back to the generic kernel (ADR 0032).
 */
let vm5: Started | undefined;
const MAC5 = `52:54:00:${u.slice(0, 2)}:${u.slice(2, 4)}:05`;
const node5Name = `d${MAC5.replace(/:/g, '-')}.${domain}`;
const serial5 = () => join(lab.dir, 'vm5.serial');
/** The machine that trusts another CA (direct kernel boot with that CA's initrd). */
let vm4: Started | undefined;
const MAC4 = `52:54:00:${u.slice(0, 2)}:${u.slice(2, 4)}:04`;
const serial4 = () => join(lab.dir, 'vm4.serial');
/** The node API's CA (its leaf names the lab's host address). */
let apiCa = '';

function vmArgs(
  tap: string,
  disk: string,
  mac = MAC,
  memoryMb = 512,
  firmware: Firmware = 'bios',
): string[] {
  return qemuArgs({
    name: `pro-${u}-${tap}`,
    firmware,
    mac,
    tap,
    dir: lab.dir,
    memoryMb,
    disk: { file: disk, serial: `DISK-${u}` },
    smbios: { manufacturer: 'Crowbar Test', product: 'Provision VM', serial: `SN-${u}` },
  });
}

const apiUrl = () => prov?.apiUrl ?? '';
const api = (path: string) => `${apiUrl()}${path}`;

beforeAll(async () => {
  buildDiscoveryImage();
  prov = await setUpProvisioning({
    client,
    kubeconfig,
    apiServer: inject('apiServer'),
    fieldManager: FM,
    name: `pro-${u}`,
    network,
    domain,
    discovery: { bootEnv: DISC },
  });
  lab = prov.lab;
  apiCa = prov.apiCa;
  await client.create(
    'Role',
    {
      metadata: { name: FACTS_ROLE },
      spec: {
        jig: 'script',
        flags: ['discovery'],
        description: 'reads facts on the discovery image over SSH',
        script: {
          inline:
            '#!/bin/sh\nset -eu\n[ -d /sys/firmware/efi ] && efi=true || efi=false\necho "{\\"cpus\\": $(grep -c ^processor /proc/cpuinfo), \\"kernel\\": \\"$(uname -r)\\", \\"image\\": \\"$(cat /etc/crowbar/image-version)\\", \\"efi\\": $efi}" > "$CROWBAR_OUTPUT"\n',
        },
      },
    } as never,
    FM,
  );
  // The real Debian installer (d-i) from debian-installer-12-netboot-amd64, where the built-in
  // debian-12-install BootEnv finds it; that BootEnv is made by this file's operator (its URL).
  execFileSync(join(import.meta.dirname, '..', '..', 'tools', 'fetch-debian-installer.sh'), [DI], {
    stdio: 'ignore',
    timeout: 300_000,
  });
  mkdirSync(join(lab.fileRoot, 'debian-installer', 'amd64'), { recursive: true });
  for (const f of ['linux', 'initrd.gz'])
    copyFileSync(
      join(DI, 'debian-installer', 'amd64', f),
      join(lab.fileRoot, 'debian-installer', 'amd64', f),
    );
  await client.delete('BootEnv', DEBIAN_BOOTENV);
  // The STAND-IN INSTALLER (test/harness/standin-installer): the discovery image with its agent
  // replaced; it fetches the real debian-12-install preseed and runs its late command.
  execFileSync(join(import.meta.dirname, '..', 'harness', 'build-standin.sh'), [
    join(lab.fileRoot, 'disc', 'standin.gz'),
  ]);
  const deb = debianBootEnv();
  await client.create(
    'BootEnv',
    {
      metadata: { name: STANDIN },
      spec: {
        description: 'STAND-IN INSTALLER for tests: runs the debian-12-install late command',
        kernel: 'disc/vmlinuz',
        initrds: ['disc/initrd.gz', 'disc/standin.gz'],
        kernelArgs: `initrd=initrd.gz console=ttyS0,115200 no_timer_check crowbar.mac={{mac}} crowbar.standin=install url=${apiUrl()}/provision/v1/nodes/{{name}}/files/preseed.cfg`,
        files: deb.files ?? [],
      },
    },
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
          inline:
            '#!/bin/sh\nset -eu\n. /etc/crowbar/node\necho "{\\"installedAs\\": \\"$name\\"}" > "$CROWBAR_OUTPUT"\n',
        },
      },
    } as never,
    FM,
  );
  op = await prov.startOperator({
    identity: `pro-${u}`,
    args: [`--lease-name=pro-${u}`, '--alive-interval-ms=1000'],
  });
  // A name server in the DHCP answers, as a site's has (d-i asks for one otherwise); nothing
  // listens there and nothing needs to: every URL the machines use is an address.
  await prov.startSidecar(['--dns', lab.serverIp]);
}, 400_000);

/** This file's Nodes (every name ends in its own domain). */
async function ourNodes(): Promise<Node[]> {
  return (await client.list('Node')).filter((n) => (n.metadata.name ?? '').endsWith(`.${domain}`));
}

afterAll(async () => {
  try {
    await vm?.stop(5000);
    await vm2?.stop(5000);
    await vm3?.stop(5000);
    await vm4?.stop(5000);
    await vm5?.stop(5000);
    // Deleted while the operator still runs: it owns the Nodes' and addresses' finalizers.
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
      if (process.env['CBT_KEEP_LOG'] && op) copyFileSync(op.log, process.env['CBT_KEEP_LOG']);
      // The consoles, for post-mortems of a failed run.
      for (const f of [
        'vm1.serial',
        'vm2.serial',
        'vm3.serial',
        'vm4.serial',
        'vm5.serial',
        'vm1-firstboot.serial',
      ])
        try {
          copyFileSync(join(lab.dir, f), join(tmpdir(), `pro-last-${f}`));
        } catch {
          // not started
        }
      try {
        writeFileSync(join(tmpdir(), 'pro-last-vm2-syslog'), diLines.join('\n'));
      } catch {
        // nothing to keep
      }
      diLog?.close();
    } finally {
      for (const r of [FACTS_ROLE, POST_ROLE])
        await client.delete('Role', r).catch(() => undefined);
      await client.delete('BootEnv', STANDIN).catch(() => undefined);
      await client.delete('BootEnv', DEBIAN_BOOTENV).catch(() => undefined);
      await prov?.destroy();
    }
  }
}, 120_000);

/** The real installer's console and syslog, for its failures. */
function di2Tail(): string {
  let con = '(no console)';
  try {
    con = readFileSync(serial2(), 'utf8')
      .split('\n')
      .filter((l) => /crowbar|preseed|Command line|error|fail/i.test(l))
      .slice(-20)
      .join('\n');
  } catch {
    // not started
  }
  return `console:\n${con}\nd-i syslog:\n${diLogTail()}`;
}

/** A failed wait, rethrown with the tail of a VM's console. */
const orConsole =
  (tail: () => string) =>
  (e: unknown): never => {
    throw new Error(`${(e as Error).message}\nconsole:\n${tail()}`, { cause: e });
  };

/** The last `n` lines of a VM's console that match `re`, for a failed wait's message. */
function tailOf(file: string, re: RegExp, n = 40): string {
  try {
    return readFileSync(file, 'latin1')
      .split('\n')
      .filter((l) => re.test(l))
      .slice(-n)
      .join('\n');
  } catch {
    return '(no console)';
  }
}

function consoleTail(): string {
  return tailOf(serial, /crowbar|iPXE|http|DHCP|error|fail/i);
}

/** Waits until the discovery role on `node` (booted by `vm`) is active or in error. */
function discoveryRoleSettled(
  what: string,
  vm: () => Started | undefined,
  node: string,
  ms: number,
  tail: () => string,
) {
  return eventually(
    what,
    async () => {
      if (vm()?.proc.exitCode !== null) throw new Error('qemu exited');
      const x = await client.get('NodeRole', `${FACTS_ROLE}.${node}`);
      const st = x?.status?.state;
      return st === 'active' || st === 'error' ? x : undefined;
    },
    ms,
    500,
  ).catch(orConsole(tail));
}

describe('discovery', () => {
  it('a BIOS VM PXE-boots the discovery image, registers with its hardware facts, and its discovery role runs over SSH', async () => {
    const disk = join(lab.dir, 'vm1.raw');
    await nsExec(lab.lab.hubNs, 'truncate', ['-s', '1G', disk]);
    await lab.addTap('tap1');
    serial = join(lab.dir, 'vm1.serial');
    vm = lab.startInHub('qemu-system-x86_64', vmArgs('tap1', disk), serial);
    // The real installer's machine boots discovery alongside (1 GiB: d-i needs it later).
    const disk2 = join(lab.dir, 'vm2.raw');
    await nsExec(lab.lab.hubNs, 'truncate', ['-s', '4G', disk2]);
    await lab.addTap('tap2');
    vm2 = lab.startInHub('qemu-system-x86_64', vmArgs('tap2', disk2, MAC2, 1024), serial2());
    // The UEFI machine boots discovery alongside (its own test below).
    const disk3 = join(lab.dir, 'vm3.raw');
    await nsExec(lab.lab.hubNs, 'truncate', ['-s', '1G', disk3]);
    await lab.addTap('tap3');
    vm3 = lab.startInHub('qemu-system-x86_64', vmArgs('tap3', disk3, MAC3, 512, 'uefi'), serial3());
    // The machine that trusts another CA boots alongside (its own test below): the discovery
    // image and a CA initrd of a CA that did not sign the node API's certificate.
    const otherCa = makeCa(join(lab.dir, 'other-pki'), `/CN=pro-${u}-other-ca`).crt;
    const initrd4 = join(lab.dir, 'vm4-initrd.gz');
    writeFileSync(
      initrd4,
      Buffer.concat([
        readFileSync(join(lab.fileRoot, 'disc', 'initrd.gz')),
        caInitrd(readFileSync(otherCa, 'utf8')),
      ]),
    );
    const disk4 = join(lab.dir, 'vm4.raw');
    await nsExec(lab.lab.hubNs, 'truncate', ['-s', '1G', disk4]);
    await lab.addTap('tap4');
    vm4 = lab.startInHub(
      'qemu-system-x86_64',
      [
        ...vmArgs('tap4', disk4, MAC4),
        '-kernel',
        join(lab.fileRoot, 'disc', 'vmlinuz'),
        '-initrd',
        initrd4,
        '-append',
        `console=ttyS0,115200 no_timer_check crowbar.mac=${MAC4} crowbar.api=${apiUrl()}`,
      ],
      serial4(),
    );
    let node: Node;
    try {
      node = await eventually(
        'the VM registered with its hardware',
        async () => {
          if (vm?.proc.exitCode !== null) throw new Error('qemu exited');
          const n = await client.get('Node', nodeName);
          return n?.status?.hardware?.cpus !== undefined ? n : undefined;
        },
        150_000,
        500,
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}\nconsole:\n${consoleTail()}`, { cause: e });
    }
    const hw = node.status?.hardware;
    expect(node.spec.macs).toContain(MAC);
    expect(node.spec.bootEnv).toBe(DISC);
    expect(hw?.cpus).toBe(1);
    expect(hw?.memoryBytes).toBeGreaterThan(400 * 1024 * 1024);
    expect(hw?.memoryBytes).toBeLessThanOrEqual(512 * 1024 * 1024);
    expect(hw?.memory).toMatch(/^\d+(\.\d)?Mi$/);
    expect(hw?.disks).toContainEqual(
      expect.objectContaining({ name: 'vda', sizeBytes: 1024 ** 3, serial: `DISK-${u}` }),
    );
    expect(hw?.nics).toContainEqual(
      expect.objectContaining({ mac: MAC, driver: 'virtio_net', link: true }),
    );
    expect(hw?.dmi).toEqual({ vendor: 'Crowbar Test', product: 'Provision VM', serial: `SN-${u}` });
    // A virtio NIC: iPXE named it in DHCP (175.177), so the BootEnv's virtio variant (Debian's
    // cloud kernel) booted; it saw the virtio disk, so it stays (q35's empty AHCI is reported).
    expect(hw?.kernel).toMatch(/-cloud-amd64$/);
    expect(hw?.unclaimed).toContainEqual(expect.objectContaining({ class: '010601' }));
    expect(node.spec.kernelVariants).toBeUndefined();
    expect(hw?.address).toMatch(new RegExp(`^${lab.net.replace(/\./g, '\\.')}\\.1[0-5]\\d$`));

    // The discovery role runs over SSH on the machine, at its allocated address.
    const nr = await eventually(
      'the discovery noderole is active',
      async () => {
        const x = await client.get('NodeRole', `${FACTS_ROLE}.${nodeName}`);
        const st = x?.status?.state;
        return st === 'active' || st === 'error' ? x : undefined;
      },
      120_000,
      500,
    ).catch(orConsole(consoleTail));
    expect(nr.status?.state, nr.status?.message).toBe('active');
    expect(nr.status?.wall?.['cpus']).toBe(1);
    expect(String(nr.status?.wall?.['kernel'])).toMatch(/-amd64$/);
    // A BIOS boot: the kernel has no EFI runtime (/sys/firmware/efi).
    expect(nr.status?.wall?.['efi']).toBe(false);
    const after = await client.get('Node', nodeName);
    expect(after?.status?.alive).toBe(true);
    const addr = after?.status?.addresses?.find((a) => a.network === network)?.address ?? '';
    expect(addr).toMatch(new RegExp(`^${lab.net.replace(/\./g, '\\.')}\\.1[6-9]\\d/24$`));
    expect(after?.status?.sshHostKey).toMatch(/^SHA256:/);
  }, 300_000);
});

describe('UEFI discovery', () => {
  it('a UEFI VM (OVMF, no option ROM) PXE-boots snponly.efi, iPXE loads the discovery image, it registers and its discovery role runs', async () => {
    const nr = await discoveryRoleSettled(
      'the UEFI VM registered and its discovery role ran',
      () => vm3,
      node3Name,
      240_000,
      () => tailOf(serial3(), /crowbar|iPXE|PXE|EFI|http|DHCP|error|fail|Boot/i),
    );
    expect(nr.status?.state, nr.status?.message).toBe('active');
    const n3 = await client.get('Node', node3Name);
    expect(n3?.spec.macs).toContain(MAC3);
    expect(n3?.status?.hardware?.nics).toContainEqual(
      expect.objectContaining({ mac: MAC3, driver: 'virtio_net' }),
    );
    expect(n3?.status?.alive).toBe(true);
    // The discovery kernel was started by UEFI firmware (the BootEnv's `quiet` keeps the
    // kernel's own `efi: EFI v2.x by EDK II` off the console): its EFI runtime is there.
    expect(nr.status?.wall?.['efi']).toBe(true);
    // Each step of the UEFI path, from the console: OVMF's own PXE stack (no iPXE ROM), the
    // sidecar's iPXE (snponly.efi) and then the discovery image.
    const con = readFileSync(serial3(), 'latin1');
    expect(con).not.toMatch(/iPXE \(http:\/\/ipxe\.org\) 00:0\d\.0 C\d00 PCI/);
    expect(con).toMatch(/iPXE/);
    // snponly.efi names its SNP device by its PCI IDs too (175.177): the virtio variant booted.
    expect(con).toContain(`boots ${DISC} (kernel variant virtio)`);
    expect(n3?.status?.hardware?.kernel).toMatch(/-cloud-amd64$/);
    expect(con).toMatch(
      new RegExp(`crowbar-discovery: registered as ${node3Name.replace(/\./g, '\\.')}`),
    );
    await vm3?.stop(5000);
  }, 300_000);
});

describe('a node API whose certificate another CA signed', () => {
  it('the machine refuses to register, says why on its console, and no Node appears', async () => {
    const refused =
      /crowbar-discovery: registration refused: the node API's certificate does not verify against \/etc\/crowbar\/ca\.pem: verify error:num=\d+:[^\n]+/;
    const line = await eventually(
      'the machine that trusts another CA refuses to register',
      () => {
        if (vm4?.proc.exitCode !== null) throw new Error('qemu exited');
        let con = '';
        try {
          con = readFileSync(serial4(), 'latin1');
        } catch {
          // not written yet
        }
        return refused.exec(con)?.[0];
      },
      240_000,
      500,
    ).catch(orConsole(() => readFileSync(serial4(), 'latin1').split('\n').slice(-30).join('\n')));
    expect(line).toMatch(/unable to get local issuer certificate|unable to verify the first/);
    // The agent stops after the refusal, so no request of it reached the API afterwards.
    const mine = (await ourNodes()).filter((n) => (n.spec.macs ?? []).includes(MAC4));
    expect(mine).toEqual([]);
    await vm4?.stop(5000);
  }, 300_000);
});

describe('registration abuse', () => {
  let client1: LabNode;
  let flooder: LabNode;
  const curl = async (ns: LabNode, args: string[]): Promise<{ code: number; body: string }> => {
    // curl exits non-zero when the server closes early (the 413): its output still counts.
    const stdout = await new Promise<string>((resolve) => {
      execFile(
        'ip',
        [
          'netns',
          'exec',
          ns.ns,
          'curl',
          '--cacert',
          apiCa,
          '-sS',
          '-m',
          '20',
          '-o',
          '-',
          '-w',
          '\n%{http_code}',
          ...args,
        ],
        { timeout: 30_000, maxBuffer: 1024 * 1024 },
        (_err, out) => {
          resolve(out);
        },
      );
    });
    const lines = stdout.trimEnd().split('\n');
    const code = Number(lines.pop());
    return { code, body: lines.join('\n') };
  };
  const body = (mac: string, nics: string[] = []) =>
    JSON.stringify({
      mac,
      hardware: { cpus: 1, nics: nics.map((m, i) => ({ name: `eth${i}`, mac: m })) },
    });

  beforeAll(async () => {
    client1 = await lab.lab.addNode('c1');
    flooder = await lab.lab.addNode('c2');
  });

  it('refuses a forged token, another node\u2019s MACs, a 10 MB body and a flood, and changes nothing', async () => {
    const before = await client.get('Node', nodeName);
    expect(before).toBeDefined();
    const count = (await ourNodes()).length;
    const reg = [
      '-X',
      'POST',
      '-H',
      'Content-Type: application/json',
      api('/provision/v1/register'),
    ];

    // The machine's own MAC with a forged token: 401, from any address.
    const forged = await curl(client1, [
      '-H',
      'Authorization: Bearer forged',
      '--data',
      body(MAC),
      ...reg,
    ]);
    expect(forged.code).toBe(401);
    expect(forged.body).toContain(`not node ${nodeName}'s registration token`);
    // Its MAC without a token from another address: 403.
    const foreign = await curl(client1, ['--data', body(MAC), ...reg]);
    expect(foreign.code).toBe(403);
    expect(foreign.body).toContain(`belongs to Node ${nodeName}`);
    // A new boot MAC whose NIC MACs include this Node's: 409.
    const other = `52:54:00:${u.slice(0, 2)}:${u.slice(2, 4)}:99`;
    const stolen = await curl(client1, ['--data', body(other, [other, MAC]), ...reg]);
    expect(stolen.code).toBe(409);
    expect(stolen.body).toContain(`belongs to Node ${nodeName}`);
    // 10 MB: 413 before it is read.
    const big = join(lab.dir, 'big.json');
    await nsExec(client1.ns, 'sh', ['-c', `head -c 10485760 /dev/zero | tr '\\0' ' ' > ${big}`]);
    const huge = await curl(client1, ['--data-binary', `@${big}`, ...reg]);
    expect(huge.code).toBe(413);
    expect(huge.body).toContain('over 262144 bytes');

    // A flood of new machines from one address: the first few pass the limiter, then 429.
    const codes: number[] = [];
    for (let i = 0; i < 12; i++) {
      const m = `52:54:00:${u.slice(0, 2)}:ff:${i.toString(16).padStart(2, '0')}`;
      // A malformed body: nothing would be created even when the limiter lets it through.
      const r = await curl(flooder, ['--data', `{"mac":"${m}","hardware":{"cpus":"x"}}`, ...reg]);
      codes.push(r.code);
    }
    expect(codes.filter((c) => c === 400).length).toBe(5);
    expect(codes.slice(5).every((c) => c === 429)).toBe(true);

    const after = await client.get('Node', nodeName);
    expect(after?.spec.macs).toEqual(before?.spec.macs);
    expect(after?.status?.hardware).toEqual(before?.status?.hardware);
    expect((await ourNodes()).length).toBe(count);
  });
});

/** Reasons of the Events on this file's Node, oldest first. */
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

describe('the real Debian installer', () => {
  it('its machine is discovered, and provisioner-os-install with debian-12-install is committed for it', async () => {
    const facts2 = await eventually(
      'the second VM is discovered and its discovery role ran',
      async () => {
        if (vm2?.proc.exitCode !== null) throw new Error('qemu exited');
        const x = await client.get('NodeRole', `${FACTS_ROLE}.${node2Name}`);
        return x?.status?.state === 'active' ? x : undefined;
      },
      240_000,
      500,
    ).catch(orConsole(di2Tail));
    expect(facts2.status?.wall?.['cpus']).toBe(1);
    diLog = createSocket('udp4');
    diLog.on('message', (m) => {
      diLines.push(...m.toString('utf8').split('\n').filter(Boolean));
    });
    const log = diLog;
    await new Promise<void>((resolve, reject) => {
      log.once('error', reject);
      log.bind({ address: lab.hostIp, port: 0 }, resolve);
    });
    const be = await eventually('the built-in debian-12-install', () =>
      client.get('BootEnv', DEBIAN_BOOTENV),
    );
    // no_timer_check: a lab VM under TCG (the IO-APIC timer check can fail under load). The
    // syslog and DEBCONF_DEBUG go before d-i's `---`: they are the installer's, not the target's.
    const [before, after] = (be.spec.kernelArgs ?? '').split(' --- ');
    await client.mergePatch(
      'BootEnv',
      DEBIAN_BOOTENV,
      {
        spec: {
          kernelArgs: `${before ?? ''} log_host=${lab.hostIp} log_port=${String(log.address().port)} DEBCONF_DEBUG=5 --- ${after ?? ''} no_timer_check`,
        },
      },
      FM,
    );
    // No target_os: the built-in role's template says debian-12-install.
    await client.create(
      'NodeRole',
      {
        metadata: { name: `${OS_INSTALL}.${node2Name}` },
        spec: { role: OS_INSTALL, node: node2Name, deployment: 'system' },
      },
      FM,
    );
    // Awaited after the install flow; the machine is stopped as soon as the fetch is recorded.
    diFetch = eventually(
      'd-i fetched its preseed from the provisioner API',
      async () => {
        if (vm2?.proc.exitCode !== null) throw new Error('qemu exited');
        return (await nodeEvents(node2Name)).find(
          (e) => e.reason === 'InstallerFetched' && e.message.includes('fetched preseed.cfg'),
        );
      },
      600_000,
      500,
    ).then(
      async (e) => {
        // d-i logs the load once it has applied every line of the file: under TCG on a
        // loaded machine that took it over a minute (debconf SETs 20:28:27-20:29:21 for one
        // run). Wait for its own verdict, loaded or a retrieve/load error, not for a guess of
        // how long parsing takes; the bound is the continued test's budget.
        await eventually(
          "d-i's syslog says it loaded the preseed or could not",
          () =>
            diLines.some(
              (l) =>
                l.includes('successfully loaded preseed file') ||
                /preseed\/(retrieve|load)_error/.test(l),
            ),
          240_000,
          250,
        ).catch(() => undefined);
        await vm2?.stop(5000);
        return e;
      },
      (err: unknown) => new Error(`${(err as Error).message}\n${di2Tail()}`, { cause: err }),
    );
  }, 300_000);
});

describe('kernel variant fallback', () => {
  it('a virtio VM whose disk the virtio kernel cannot see is sent back to the generic kernel, after the sidecar acknowledged it', async () => {
    const disk5 = join(lab.dir, 'vm5.raw');
    await nsExec(lab.lab.hubNs, 'truncate', ['-s', '1G', disk5]);
    await lab.addTap('tap5');
    vm5 = lab.startInHub(
      'qemu-system-x86_64',
      [
        ...qemuArgs({
          name: `pro-${u}-tap5`,
          mac: MAC5,
          tap: 'tap5',
          dir: lab.dir,
          smbios: { manufacturer: 'Crowbar Test', product: 'SATA VM', serial: `SN5-${u}` },
        }),
        // The disk on q35's built-in AHCI controller: Debian's cloud kernel has no ahci driver.
        '-drive',
        `file=${disk5},if=none,id=d5,format=raw`,
        '-device',
        `ide-hd,drive=d5,bus=ide.0,serial=SATA-${u}`,
      ],
      serial5(),
    );
    const nr = await discoveryRoleSettled(
      'the SATA VM registered on the generic kernel and its discovery role ran',
      () => vm5,
      node5Name,
      300_000,
      () => tailOf(serial5(), /crowbar|iPXE|http|error|fail/i, 30),
    );
    expect(nr.status?.state, nr.status?.message).toBe('active');
    const n5 = await client.get('Node', node5Name);
    expect(n5?.spec.kernelVariants).toBe('off');
    // The second boot's facts: the generic kernel, which drives the AHCI disk.
    expect(n5?.status?.hardware?.kernel).toMatch(/^\d.*-amd64$/);
    expect(n5?.status?.hardware?.kernel).not.toMatch(/cloud/);
    expect(n5?.status?.hardware?.disks).toContainEqual(
      expect.objectContaining({ name: 'sda', sizeBytes: 1024 ** 3 }),
    );
    expect(n5?.status?.hardware?.unclaimed ?? []).toEqual([]);
    expect(String(nr.status?.wall?.['kernel'])).not.toMatch(/cloud/);
    const ev = (await nodeEvents(node5Name)).find((e) => e.reason === 'KernelVariantOff');
    expect(ev?.message).toMatch(
      /kernel variant virtio sees no disk and has no driver for storage controller 0000:00:1f\.2/,
    );
    // On its console: the first boot said why it rebooted, then a second registration.
    const con = readFileSync(serial5(), 'latin1');
    expect(con).toMatch(/crowbar-discovery: rebooting: kernel variant virtio sees no disk/);
    expect(con.match(/crowbar-discovery: registered as/g)?.length).toBe(2);
    await vm5.stop(5000);
  }, 330_000);
});

describe('install flow', () => {
  it('provisioner-os-install: acknowledged boot environment, reboot, the installer fetches its preseed and calls back, local acknowledged, first boot alive, post-install role runs', async () => {
    const installNr = `${OS_INSTALL}.${nodeName}`;
    await client.create(
      'NodeRole',
      {
        metadata: { name: installNr },
        spec: {
          role: OS_INSTALL,
          node: nodeName,
          deployment: 'system',
          data: { target_os: STANDIN },
        },
      },
      FM,
    );
    await client.create(
      'NodeRole',
      {
        metadata: { name: `${POST_ROLE}.${nodeName}` },
        spec: { role: POST_ROLE, node: nodeName, deployment: 'system' },
      },
      FM,
    );
    // The jig asked for the installer, the sidecar acknowledged it, then the machine rebooted.
    const started = await eventually(
      'the install run rebooted the machine',
      async () => {
        const ev = await nodeEvents();
        return ev.some((e) => e.reason === 'Rebooting') ? ev : undefined;
      },
      60_000,
      250,
    );
    for (const r of ['InstallRequested', 'BootEnvAcknowledged'])
      expect(started.map((e) => e.reason)).toContain(r);
    // The Node has no spec.power: the PowerService's ssh driver rebooted it (host key checked).
    expect(started).toContainEqual({ reason: 'PowerCycle', message: 'rebooted over SSH' });
    expect(started).toContainEqual({
      reason: 'Rebooting',
      message: `rebooting into ${STANDIN} (rebooted over SSH; the Node has no spec.power)`,
    });
    // The run's log has the steps in order (Events are only second-precise).
    const tail = await eventually('the install run finished', async () => {
      const x = await client.get('NodeRole', installNr);
      return x?.status?.run?.logTail?.includes('rebooting into') ? x.status.run.logTail : undefined;
    });
    const at = (s: string) => tail.indexOf(s);
    expect(at(`boot environment set to ${STANDIN}`)).toBeGreaterThanOrEqual(0);
    expect(at(`serves ${STANDIN}`)).toBeGreaterThan(at('boot environment set to'));
    expect(at('rebooting into')).toBeGreaterThan(at(`serves ${STANDIN}`));
    // The stand-in installer fetched the preseed and late.sh from us, called back, saw local
    // acknowledged and powered off.
    await eventually(
      'the stand-in installer powered off',
      () => vm?.proc.exitCode !== null,
      150_000,
      250,
    ).catch(orConsole(consoleTail));
    expect(consoleTail()).toContain('late command done');
    // Events are written off the operator's hot path (a queue): they may land after the VM is off.
    let ev: { reason: string; message: string }[] = [];
    await eventually(
      'the installer Events',
      async () => {
        ev = await nodeEvents();
        const fetched = ev.filter((e) => e.reason === 'InstallerFetched').map((e) => e.message);
        return (
          fetched.some((m) => m.includes('fetched preseed.cfg')) &&
          fetched.some((m) => m.includes('fetched late.sh')) &&
          ev.some((e) => e.reason === 'Installed')
        );
      },
      60_000,
      250,
    ).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}; Events: ${JSON.stringify(ev)}`, { cause: e });
    });
    const installed = await client.get('Node', nodeName);
    expect(installed?.spec.bootEnv).toBe('local');
    expect(installed?.status?.bootEnv?.applied).toBe('local');

    // First boot of the installed system (a STAND-IN for the firmware booting the disk: qemu
    // loads the image directly, with the same disk and MAC).
    const initrd = join(lab.dir, 'firstboot.gz');
    writeFileSync(
      initrd,
      Buffer.concat([
        readFileSync(join(lab.fileRoot, 'disc', 'initrd.gz')),
        readFileSync(join(lab.fileRoot, 'disc', 'standin.gz')),
      ]),
    );
    serial = join(lab.dir, 'vm1-firstboot.serial');
    vm = lab.startInHub(
      'qemu-system-x86_64',
      [
        ...vmArgs('tap1', join(lab.dir, 'vm1.raw')),
        '-kernel',
        join(lab.fileRoot, 'disc', 'vmlinuz'),
        '-initrd',
        initrd,
        '-append',
        `console=ttyS0,115200 no_timer_check crowbar.mac=${MAC} crowbar.standin=firstboot`,
      ],
      serial,
    );
    const post = await eventually(
      'the post-install role ran on the installed system',
      async () => {
        const x = await client.get('NodeRole', `${POST_ROLE}.${nodeName}`);
        const st = x?.status?.state;
        return st === 'active' || st === 'error' ? x : undefined;
      },
      120_000,
      500,
    ).catch(orConsole(consoleTail));
    expect(post.status?.state, post.status?.message).toBe('active');
    expect(post.status?.wall).toEqual({ installedAs: nodeName });
    const inst = await client.get('NodeRole', installNr);
    expect(inst?.status?.state).toBe('active');
    // Destructive: the jig ran once; the re-run after the node came back was skipped.
    const requested = (await nodeEvents()).filter((e) => e.reason === 'InstallRequested');
    expect(requested).toHaveLength(1);
    const n = await client.get('Node', nodeName);
    expect(n?.status?.alive).toBe(true);
  }, 400_000);
});

describe('the real Debian installer, continued', () => {
  it('the sidecar acknowledged debian-12-install, the machine rebooted, and d-i fetched its per-node preseed over HTTPS from us', async () => {
    if (!diFetch) throw new Error("the real installer's first test did not commit its install");
    const fetched = await diFetch;
    if (fetched instanceof Error) throw fetched;
    const n2 = await client.get('Node', node2Name);
    const addr2 = n2?.status?.addresses?.find((a) => a.network === network)?.address.split('/')[0];
    // Our HTTP server's record: the request came from the machine's own address.
    expect(fetched.message).toBe(
      `the installer of ${DEBIAN_BOOTENV} fetched preseed.cfg from ${addr2 ?? '?'}`,
    );
    expect(n2?.status?.bootEnv?.applied).toBe(DEBIAN_BOOTENV);
    // Events are second-precise: the order is the install run's log's (the install flow test).
    const ev = (await nodeEvents(node2Name)).map((e) => e.reason);
    for (const r of ['InstallRequested', 'BootEnvAcknowledged', 'Rebooting'])
      expect(ev).toContain(r);
    // It is Debian's installer that asked: its kernel command line is on the console, and its
    // own syslog says it verified our certificate (GNU wget, OpenSSL's hashed CA directory that
    // the sidecar's CA initrd adds to) and loaded the file.
    const url = `${apiUrl()}/provision/v1/nodes/${node2Name}/files/preseed.cfg`;
    expect(readFileSync(serial2(), 'utf8')).toContain(
      `auto=true priority=critical netcfg/no_default_route=true url=${url}`,
    );
    expect(diLines.join('\n'), diLogTail()).toContain(
      `successfully loaded preseed file from ${url}`,
    );
  }, 300_000);
});
