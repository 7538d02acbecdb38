/**
 * `make lab VMS=N`: N qemu VMs (TCG) of virtual bare metal on the lab's provisioning bridge,
 * alternately BIOS (SeaBIOS + iPXE ROM) and UEFI (OVMF's own PXE, then the sidecar's
 * snponly.efi). They have no OS: each PXE-boots the discovery image (tools/discovery-image,
 * built and cached like `make discovery-image`) from the lab's DHCP sidecar, which serves it as
 * the `sledgehammer` BootEnv to unknown MACs; the image's agent registers the machine with the
 * operator's provisioner API, which makes it Node d<mac>.lab.crowbar.dev with its hardware facts.
 * The lab then gives each Node the `lab` power driver (spec.power: its VM's QMP socket), and the
 * discovery role `lab-discovery-facts` runs on it over SSH.
 */
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { CrowbarClient } from '../operator/kube/client.ts';
import { labDriver, savePowerOnState } from '../operator/power/lab.ts';
import { qmpAnswers } from '../operator/power/qmp.ts';
import { run } from '../test/harness/netns.ts';
import {
  buildDiscoveryImage,
  discoveryBootEnv,
  DISCOVERY_DIR,
  DISCOVERY_FILES,
} from '../test/harness/prov-lab.ts';
import { startProcess, waitFor, type Started } from '../test/harness/process.ts';
import { makeColdStateFile, qemuArgs, type Firmware } from '../test/harness/qemu.ts';

export const DISCOVERY_ROLE = 'lab-discovery-facts';
const FM = 'crowbar-lab';

export interface LabVm {
  name: string;
  mac: string;
  firmware: Firmware;
  node: string;
  qmp: string;
  serial: string;
  proc: Started;
}

export interface LabVmsOptions {
  count: number;
  client: CrowbarClient;
  /** The namespace holding the lab bridge (br0), where the VMs' taps and qemu run. */
  hubNs: string;
  /** The sidecar's file root (served over TFTP and HTTP). */
  fileRoot: string;
  /** The operator's provisioner API as the machines reach it (https://<bridge host>:<port>). */
  apiUrl: string;
  domain: string;
  dir: string;
  pidFile: string;
}

/** A lab VM's MAC: 52:54:00:cb:00:<i>. */
export function vmMac(i: number): string {
  return `52:54:00:cb:00:${i.toString(16).padStart(2, '0')}`;
}

/**
 * Boots the VMs; resolves once each is a Node with hardware facts and a lab power driver that
 * reports it on.
 */
export async function startLabVms(o: LabVmsOptions): Promise<LabVm[]> {
  if (!Number.isInteger(o.count) || o.count < 0 || o.count > 16)
    throw new Error(`VMS must be a whole number from 0 to 16, got ${String(o.count)}`);
  buildDiscoveryImage();
  mkdirSync(join(o.fileRoot, 'disc'), { recursive: true });
  for (const f of DISCOVERY_FILES)
    copyFileSync(join(DISCOVERY_DIR, f), join(o.fileRoot, 'disc', f));
  await o.client.mergePatch('BootEnv', 'sledgehammer', { spec: discoveryBootEnv(o.apiUrl) }, FM);
  if (!(await o.client.get('Role', DISCOVERY_ROLE)))
    await o.client.create(
      'Role',
      {
        metadata: { name: DISCOVERY_ROLE },
        spec: {
          jig: 'script',
          flags: ['discovery'],
          description: 'reads facts on a discovered machine over SSH (the lab VMs)',
          script: {
            inline:
              '#!/bin/sh\nset -eu\necho "{\\"cpus\\": $(grep -c ^processor /proc/cpuinfo), \\"kernel\\": \\"$(uname -r)\\"}" > "$CROWBAR_OUTPUT"\n',
          },
        },
      } as never,
      FM,
    );
  const vdir = join(o.dir, 'vms');
  rmSync(vdir, { recursive: true, force: true });
  mkdirSync(vdir, { recursive: true });
  const vms: LabVm[] = [];
  for (let i = 1; i <= o.count; i++) {
    const name = `vm${String(i)}`;
    const mac = vmMac(i);
    const firmware: Firmware = i % 2 === 1 ? 'bios' : 'uefi';
    const tap = `vmtap${String(i)}`;
    await run('ip', ['-n', o.hubNs, 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    await run('ip', ['-n', o.hubNs, 'link', 'set', tap, 'master', 'br0', 'up']);
    const disk = join(vdir, `${name}.raw`);
    await run('truncate', ['-s', '1G', disk]);
    const qmp = join(vdir, `${name}.qmp`);
    const serial = join(vdir, `${name}.serial`);
    // SeaBIOS needs a saved power-on state for a cold boot (operator/power/lab.ts); OVMF does not.
    const coldState = firmware === 'bios' ? join(vdir, `${name}.cold.qcow2`) : undefined;
    if (coldState) makeColdStateFile(coldState);
    const proc = startProcess(
      'ip',
      [
        'netns',
        'exec',
        o.hubNs,
        'qemu-system-x86_64',
        ...qemuArgs({
          name: `crowbar-lab-${name}`,
          mac,
          tap,
          firmware,
          dir: vdir,
          disk: { file: disk, serial: `LAB-${name.toUpperCase()}` },
          smbios: { manufacturer: 'Crowbar Lab', product: 'Lab VM', serial: `LAB-${name}` },
          qmp,
          ...(coldState ? { coldState } : {}),
        }),
      ],
      serial,
      { pidFile: o.pidFile },
    );
    if (coldState) {
      await waitFor(
        `${name}'s QMP socket (${qmp})`,
        async () => {
          if (proc.proc.exitCode !== null) throw new Error(`${name}: qemu exited; see ${serial}`);
          return qmpAnswers(qmp);
        },
        30_000,
        100,
      );
      await savePowerOnState(qmp);
    }
    vms.push({
      name,
      mac,
      firmware,
      node: `d${mac.replace(/:/g, '-')}.${o.domain}`,
      qmp,
      serial,
      proc,
    });
  }
  for (const vm of vms) {
    await waitFor(
      `${vm.name} (${vm.firmware}) to register as ${vm.node} (console: ${vm.serial})`,
      async () => {
        if (vm.proc.proc.exitCode !== null)
          throw new Error(`${vm.name}: qemu exited; see ${vm.serial}`);
        const n = await o.client.get('Node', vm.node);
        return n?.status?.hardware?.cpus !== undefined;
      },
      300_000,
      1000,
    );
    await o.client.mergePatch(
      'Node',
      vm.node,
      { spec: { power: { driver: 'lab', address: vm.qmp } } },
      FM,
    );
    // The driver the operator will use answers for this VM (QMP query-status).
    const state = await labDriver({ socket: vm.qmp }).status();
    if (state !== 'on') throw new Error(`${vm.name}: the lab power driver reports it ${state}`);
  }
  return vms;
}

/** Waits until each VM's discovery noderole is active; returns the ones that are not. */
export async function discoveryActive(
  client: CrowbarClient,
  vms: readonly LabVm[],
  timeoutMs: number,
): Promise<string[]> {
  const pending = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const vm of vms) {
      const nr = await client.get('NodeRole', `${DISCOVERY_ROLE}.${vm.node}`);
      if (nr?.status?.state !== 'active')
        out.push(`${vm.node} ${nr?.status?.state ?? 'no noderole'}`);
    }
    return out;
  };
  try {
    await waitFor(
      'discovery roles active',
      async () => (await pending()).length === 0,
      timeoutMs,
      1000,
    );
    return [];
  } catch {
    return pending();
  }
}
