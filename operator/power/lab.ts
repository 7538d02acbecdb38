/**
 * The lab power driver: one of the lab's qemu VMs, through its QMP socket (the VM runs with
 * `-no-shutdown`, so its process outlives a power-off). Power off is QMP `stop` (the VM is
 * halted, as a machine with its power cut) and power on is `system_reset` + `cont` (a cold boot).
 * The next boot device is the `bootindex` of the VM's devices `net0` and `disk0`, which QEMU
 * re-reads into the firmware's boot order (fw_cfg `bootorder`) at every reset.
 */
import { qmp, type QmpCommand } from './qmp.ts';
import {
  PowerError,
  type BootDevice,
  type PowerAction,
  type PowerDriver,
  type PowerState,
} from './driver.ts';

/** QMP query-status `status` → power state: only a running (or booting) VM is on. */
export function powerFromRunState(status: unknown): PowerState {
  if (typeof status !== 'string') return 'unknown';
  if (status === 'running' || status === 'prelaunch' || status === 'inmigrate') return 'on';
  if (status === 'paused' || status === 'shutdown' || status === 'guest-panicked') return 'off';
  return 'unknown';
}

/** The lab's device ids for the NIC and the disk. */
export const LAB_DEVICES = { network: 'net0', disk: 'disk0' } as const;

/**
 * qom-set commands giving `first` boot index 1 and the other device 2, through a free index so
 * that no two devices ever share one (QEMU refuses a used index).
 */
export function bootOrderCommands(first: BootDevice, devices: readonly BootDevice[]): QmpCommand[] {
  const other: BootDevice = first === 'network' ? 'disk' : 'network';
  const set = (d: BootDevice, v: number): QmpCommand => ({
    execute: 'qom-set',
    arguments: { path: `/machine/peripheral/${LAB_DEVICES[d]}`, property: 'bootindex', value: v },
  });
  const out: QmpCommand[] = [];
  if (devices.includes(other)) out.push(set(other, 9));
  out.push(set(first, 1));
  if (devices.includes(other)) out.push(set(other, 2));
  return out;
}

export interface LabTarget {
  /** The VM's QMP Unix socket. */
  socket: string;
  timeoutMs?: number;
}

export function labDriver(t: LabTarget): PowerDriver {
  const call = async (action: PowerAction, cmds: QmpCommand[]): Promise<unknown[]> => {
    try {
      return await qmp(t.socket, cmds, t.timeoutMs ?? 10_000);
    } catch (e) {
      throw new PowerError('unreachable', `lab ${action} on ${t.socket}: ${(e as Error).message}`, {
        cause: e,
      });
    }
  };
  const status = async (): Promise<PowerState> => {
    const [r] = await call('status', [{ execute: 'query-status' }]);
    return powerFromRunState((r as { status?: unknown } | undefined)?.status);
  };
  const devices = async (): Promise<BootDevice[]> => {
    const [r] = await call('setNextBoot', [
      { execute: 'qom-list', arguments: { path: '/machine/peripheral' } },
    ]);
    const names = new Set(((r ?? []) as { name?: string }[]).map((p) => p.name));
    return (['network', 'disk'] as const).filter((d) => names.has(LAB_DEVICES[d]));
  };
  return {
    name: 'lab',
    capabilities: new Set<PowerAction>(['on', 'off', 'cycle', 'status', 'setNextBoot']),
    on: async () => {
      if ((await status()) === 'on') return;
      await call('on', [{ execute: 'system_reset' }, { execute: 'cont' }]);
    },
    off: async () => {
      await call('off', [{ execute: 'stop' }]);
    },
    cycle: async () => {
      const cmds: QmpCommand[] = [{ execute: 'system_reset' }];
      if ((await status()) !== 'on') cmds.push({ execute: 'cont' });
      await call('cycle', cmds);
    },
    status,
    setNextBoot: async (device) => {
      const have = await devices();
      if (!have.includes(device))
        throw new PowerError(
          'config',
          `lab VM at ${t.socket} has no device ${LAB_DEVICES[device]} to boot from`,
        );
      await call('setNextBoot', bootOrderCommands(device, have));
    },
  };
}
