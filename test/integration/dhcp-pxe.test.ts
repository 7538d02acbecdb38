/**
 * End to end: qemu VMs (TCG) PXE-boot from the DHCP/TFTP/HTTP sidecar inside a network namespace
 * this file creates: SeaBIOS with the iPXE option ROM (ipxe-qemu), OVMF's own PXE stack (first
 * stage snponly.efi over TFTP) and OVMF's UEFI HTTP boot (snponly.efi over HTTP). Each VM's Node
 * names a BootEnv whose kernel and initrd are a Debian kernel and a busybox initramfs that gets an
 * address with udhcpc and calls back over HTTP; the sidecar has acknowledged the boot environment
 * on the Node's status before the VM starts. Recipe: shared/reference/PXE-LAB.md.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { createDhcpLab, type DhcpLab } from '../harness/dhcp-lab.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { adminNetwork } from '../harness/dhcp-sidecar.ts';
import { setUpPxeTest, type PxeTest } from '../harness/pxe-test.ts';
import { qemuArgs, type Firmware } from '../harness/qemu.ts';

const u = uid();
const network = `cbdhcp-pxe-${u}`;
const domain = `pxe${u}.example.com`;
const FM = 'dhcp-pxe-test';
const BOOTENV = `pxetest${u}-install`;
let lab: DhcpLab;
let client: CrowbarClient;
let pxe: PxeTest;

interface Vm {
  name: string;
  firmware: Firmware;
  mac: string;
  last: number;
}

const VMS: Vm[] = [
  { name: 'bios', firmware: 'bios', mac: '52:54:00:e0:00:01', last: 31 },
  { name: 'uefi', firmware: 'uefi', mac: '52:54:00:e0:00:02', last: 32 },
  { name: 'uefihttp', firmware: 'uefi-http', mac: '52:54:00:e0:00:03', last: 33 },
];

beforeAll(async () => {
  client = testClient();
  lab = await createDhcpLab();
  pxe = await setUpPxeTest(lab, client, BOOTENV, FM);
  await client.create(
    'Network',
    adminNetwork(network, lab.net, { host: [10, 99], dhcp: [100, 150] }),
    FM,
  );
  for (const vm of VMS) {
    const name = `${vm.name}.${domain}`;
    await client.create(
      'Node',
      { metadata: { name }, spec: { macs: [vm.mac], bootEnv: BOOTENV } },
      FM,
    );
    const address = `${lab.net}.${vm.last}`;
    await client.create(
      'NetworkAllocation',
      {
        metadata: { name: `${network}.${address.replace(/\./g, '-')}` },
        spec: { network, node: name, address: `${address}/24`, family: 'ipv4', range: 'host' },
      } as never,
      FM,
    );
  }
  await lab.startSidecar({
    kubeconfig: inject('kubeconfig'),
    apiServer: inject('apiServer'),
    network,
  });
}, 400_000);

afterAll(async () => {
  await lab.destroy();
  for (const vm of VMS) await client.delete('Node', `${vm.name}.${domain}`).catch(() => undefined);
  await client.delete('Network', network).catch(() => undefined);
  await client.delete('BootEnv', BOOTENV).catch(() => undefined);
});

const callbackFrom = (mac: string) => pxe.callbackFrom(mac);

describe('qemu VMs PXE-boot from the sidecar', () => {
  it.each(VMS)(
    '$firmware VM boots its node boot environment and calls back',
    async (vm) => {
      const name = `${vm.name}.${domain}`;
      // The acknowledgement exists before the machine asks.
      const ack = await eventually('boot environment acknowledged', async () => {
        const n = await client.get('Node', name);
        return n?.status?.bootEnv?.applied === BOOTENV ? n.status.bootEnv : undefined;
      });
      expect(ack.generation).toBe(1);
      const tap = `tap${vm.last}`;
      await lab.addTap(tap);
      const serial = join(lab.dir, `${vm.name}.serial`);
      const qemu = lab.startInServerNs(
        'qemu-system-x86_64',
        qemuArgs({ ...vm, tap, dir: lab.dir, noReboot: true }),
        serial,
      );
      try {
        // Done when the callback arrives or qemu exits (the guest powers off after calling back).
        const got = await eventually(
          `callback from the ${vm.firmware} VM`,
          () => callbackFrom(vm.mac) ?? (qemu.proc.exitCode !== null ? 'exited' : undefined),
          150_000,
          250,
        );
        const log = readFileSync(serial, 'utf8');
        const body = got === 'exited' ? callbackFrom(vm.mac) : got;
        expect(
          body,
          `no callback; serial:\n${log
            .split('\n')
            .filter((l) => /PXETEST|iPXE|http|tftp|DHCP|PXE|Start|Boot|http/i.test(l))
            .slice(-60)
            .join('\n')}`,
        ).toBeDefined();
        if (!body) return;
        expect(body['ip']).toBe(`${lab.net}.${vm.last}/24`);
        expect(body['id']).toBe(name);
        expect(body['cmdline']).toContain(`pxetest.callback=http://${lab.serverIp}:8081/callback`);
      } finally {
        await qemu.stop(5000);
      }
    },
    200_000,
  );
});
