/**
 * End to end: qemu VMs (TCG) PXE-boot from the DHCP/TFTP/HTTP sidecar inside a network namespace
 * this file creates: SeaBIOS with the iPXE option ROM (ipxe-qemu), OVMF's own PXE stack (first
 * stage snponly.efi over TFTP) and OVMF's UEFI HTTP boot (snponly.efi over HTTP). Each VM's Node
 * names a BootEnv whose kernel and initrd are a Debian kernel and a busybox initramfs that gets an
 * address with udhcpc and calls back over HTTP; the sidecar has acknowledged the boot environment
 * on the Node's status before the VM starts. Recipe: shared/reference/PXE-LAB.md.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { createDhcpLab, type DhcpLab } from '../harness/dhcp-lab.ts';
import { eventually, testClient, uid } from '../harness/context.ts';

const u = uid();
const network = `cbdhcp-pxe-${u}`;
const domain = `pxe${u}.example.com`;
const FM = 'dhcp-pxe-test';
const BOOTENV = `pxetest${u}-install`;
const IMAGE = join(homedir(), '.cache', 'crowbar', 'pxe-test');
let lab: DhcpLab;
let client: CrowbarClient;
let callbacks: string;

interface Vm {
  name: string;
  firmware: 'bios' | 'uefi' | 'uefi-http';
  mac: string;
  last: number;
}

const VMS: Vm[] = [
  { name: 'bios', firmware: 'bios', mac: '52:54:00:e0:00:01', last: 31 },
  { name: 'uefi', firmware: 'uefi', mac: '52:54:00:e0:00:02', last: 32 },
  { name: 'uefihttp', firmware: 'uefi-http', mac: '52:54:00:e0:00:03', last: 33 },
];

function qemuArgs(vm: Vm, tap: string): string[] {
  const args = [
    '-name',
    vm.name,
    '-machine',
    'q35,accel=tcg',
    '-cpu',
    'max',
    '-smp',
    '1',
    '-m',
    '512',
    '-nographic',
    '-nodefaults',
    '-serial',
    'stdio',
    '-monitor',
    'none',
    '-no-reboot',
    '-netdev',
    `tap,id=n0,ifname=${tap},script=no,downscript=no`,
  ];
  if (vm.firmware === 'bios') {
    args.push('-device', `virtio-net-pci,netdev=n0,mac=${vm.mac},bootindex=1`);
    return args;
  }
  const vars = join(lab.dir, `${vm.name}-vars.fd`);
  copyFileSync('/usr/share/OVMF/OVMF_VARS_4M.fd', vars);
  args.push(
    '-drive',
    'if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd',
    '-drive',
    `if=pflash,format=raw,unit=1,file=${vars}`,
    // No NIC option ROM: OVMF's own PXE / HTTP boot stack, as on real UEFI hardware.
    '-device',
    `virtio-net-pci,netdev=n0,mac=${vm.mac},bootindex=1,romfile=`,
  );
  if (vm.firmware === 'uefi-http')
    args.push(
      '-fw_cfg',
      'name=opt/org.tianocore/IPv4PXESupport,string=n',
      '-fw_cfg',
      'name=opt/org.tianocore/IPv6PXESupport,string=n',
    );
  return args;
}

beforeAll(async () => {
  execFileSync(join(import.meta.dirname, '..', 'harness', 'build-pxe-image.sh'), [IMAGE], {
    stdio: 'ignore',
    timeout: 300_000,
  });
  client = testClient();
  lab = await createDhcpLab();
  mkdirSync(join(lab.fileRoot, 'pxetest'));
  for (const f of ['vmlinuz', 'initrd.gz'])
    copyFileSync(join(IMAGE, f), join(lab.fileRoot, 'pxetest', f));
  callbacks = join(lab.dir, 'callbacks.jsonl');
  lab.startInServerNs(
    process.execPath,
    [
      join(import.meta.dirname, '..', 'harness', 'pxe-callback.ts'),
      lab.serverIp,
      '8081',
      callbacks,
    ],
    join(lab.dir, 'callback.log'),
  );
  await client.create(
    'BootEnv',
    {
      metadata: { name: BOOTENV },
      spec: {
        kernel: 'pxetest/vmlinuz',
        initrds: ['pxetest/initrd.gz'],
        kernelArgs:
          'initrd={{initrd}} console=ttyS0,115200 pxetest.callback=http://{{server}}:8081/callback pxetest.id={{name}}',
      },
    },
    FM,
  );
  await client.create(
    'Network',
    {
      metadata: { name: network },
      spec: {
        category: 'admin',
        subnet: `${lab.net}.0/24`,
        ranges: [
          { name: 'host', first: `${lab.net}.10`, last: `${lab.net}.99` },
          { name: 'dhcp', first: `${lab.net}.100`, last: `${lab.net}.150` },
        ],
      },
    } as never,
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

function callbackFrom(mac: string): Record<string, string> | undefined {
  if (!existsSync(callbacks)) return undefined;
  for (const line of readFileSync(callbacks, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const body = JSON.parse(line) as Record<string, string>;
      if (body['mac'] === mac) return body;
    } catch {
      // a torn line: not ours to judge
    }
  }
  return undefined;
}

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
      const qemu = lab.startInServerNs('qemu-system-x86_64', qemuArgs(vm, tap), serial);
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
