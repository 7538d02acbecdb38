/**
 * qemu VMs (TCG) for the provisioning tests and the lab: one argument list for the ways they boot
 * from the network. `bios` is SeaBIOS with the NIC's iPXE option ROM (ipxe-qemu); `uefi` is OVMF
 * with its own PXE stack (no option ROM, as on real UEFI hardware: the first stage is
 * snponly.efi over TFTP); `uefi-http` is OVMF's UEFI HTTP boot alone (PXE switched off).
 * The VM has one virtio NIC on a tap device (first in the boot order), the serial console on
 * stdio and, where asked, a raw disk (second), SMBIOS identity and a QMP socket (the lab power
 * driver's, operator/power/lab.ts, which knows the devices as net0 and disk0).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { coldStateArgs } from '../../operator/power/lab.ts';

export type Firmware = 'bios' | 'uefi' | 'uefi-http';

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

export interface QemuVm {
  /** qemu's -name (shows in ps). */
  name: string;
  mac: string;
  tap: string;
  firmware?: Firmware;
  memoryMb?: number;
  /** Where a UEFI VM's own copy of the OVMF variables goes. */
  dir: string;
  disk?: { file: string; serial: string };
  smbios?: { manufacturer: string; product: string; serial: string };
  /** Exit instead of rebooting (tests whose guest reboots when done). */
  noReboot?: boolean;
  /** A QMP socket (server, no wait) at this path. */
  qmp?: string;
  /**
   * Where the lab power driver keeps the VM's power-on state (a qcow2 file this makes): the VM
   * starts paused, for its launcher to save that state and let it run (savePowerOnState).
   */
  coldState?: string;
}

/** Makes the small qcow2 file that holds a VM's power-on state (RAM is mostly zero pages). */
export function makeColdStateFile(file: string): void {
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '1M']);
}

/** qemu-system-x86_64's arguments for `vm` (copies the OVMF variables for a UEFI VM). */
export function qemuArgs(vm: QemuVm): string[] {
  const firmware = vm.firmware ?? 'bios';
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
    String(vm.memoryMb ?? 512),
    '-nographic',
    '-nodefaults',
    '-serial',
    'stdio',
    '-monitor',
    'none',
    ...(vm.noReboot ? ['-no-reboot'] : []),
    // The lab power driver's (operator/power/lab.ts): power off is a halt, the process stays.
    ...(vm.qmp ? ['-qmp', `unix:${vm.qmp},server=on,wait=off`, '-no-shutdown'] : []),
    ...(vm.coldState ? ['-S', ...coldStateArgs(vm.coldState)] : []),
    ...(vm.smbios
      ? [
          '-smbios',
          `type=1,manufacturer=${vm.smbios.manufacturer},product=${vm.smbios.product},serial=${vm.smbios.serial}`,
        ]
      : []),
    '-netdev',
    `tap,id=n0,ifname=${vm.tap},script=no,downscript=no`,
  ];
  if (firmware === 'bios') {
    args.push('-device', `virtio-net-pci,netdev=n0,id=net0,mac=${vm.mac},bootindex=1`);
  } else {
    const vars = join(vm.dir, `${vm.name}-vars.fd`);
    copyFileSync(OVMF_VARS, vars);
    args.push(
      '-drive',
      `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
      '-drive',
      `if=pflash,format=raw,unit=1,file=${vars}`,
      // No NIC option ROM: OVMF's own PXE / HTTP boot stack, as on real UEFI hardware.
      '-device',
      `virtio-net-pci,netdev=n0,id=net0,mac=${vm.mac},bootindex=1,romfile=`,
    );
    if (firmware === 'uefi-http')
      args.push(
        '-fw_cfg',
        'name=opt/org.tianocore/IPv4PXESupport,string=n',
        '-fw_cfg',
        'name=opt/org.tianocore/IPv6PXESupport,string=n',
      );
  }
  if (vm.disk)
    args.push(
      '-drive',
      `file=${vm.disk.file},if=none,id=d0,format=raw`,
      '-device',
      `virtio-blk-pci,drive=d0,id=disk0,serial=${vm.disk.serial},bootindex=2`,
    );
  return args;
}
