/**
 * The lab power driver: one of the lab's qemu VMs, through its QMP socket (the VM runs with
 * `-no-shutdown`, so its process outlives a power-off). Power off is QMP `stop` (the VM is
 * halted, as a machine with its power cut) and power on is a cold boot: the VM's power-on state
 * loaded back, then `system_reset` + `cont`. The next boot device is the `bootindex` of the VM's
 * devices `net0` and `disk0`, which QEMU re-reads into the firmware's boot order (fw_cfg
 * `bootorder`) at every reset.
 *
 * Why a saved power-on state: `system_reset` alone is a warm reset. QEMU keeps RAM and does not
 * map the BIOS area back to ROM (the chipset's PAM registers survive it), so SeaBIOS restarts
 * from the copy of itself it left in RAM; reset during its first instructions (a power-off or
 * cycle right after a power-on: under TCG 6 of 10 tries) that copy is half made and the VM hangs
 * with nothing on its console, until the next power action. A machine whose power was cut has
 * no such memory. The launcher starts the VM paused (`-S`), saves that state with
 * {@link savePowerOnState} into a small qcow2 node of its own ({@link coldStateArgs}, never the
 * guest's disk), then lets it run; power on loads it. VMs without one (UEFI: OVMF runs from flash
 * and its variables must survive a power cycle) get the warm reset.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { qmp, type QmpCommand } from './qmp.ts';
import {
  PowerError,
  type BootDevice,
  type PowerAction,
  type PowerDriver,
  type PowerState,
} from './driver.ts';

/**
 * QMP query-status `status` → power state: only a running (or booting) VM is on. `prelaunch`
 * (started with `-S` and never let run, or reset while halted) has not run an instruction: off.
 */
export function powerFromRunState(status: unknown): PowerState {
  if (typeof status !== 'string') return 'unknown';
  if (status === 'running' || status === 'inmigrate') return 'on';
  if (
    status === 'paused' ||
    status === 'prelaunch' ||
    status === 'shutdown' ||
    status === 'guest-panicked'
  )
    return 'off';
  return 'unknown';
}

/** The block node that holds a lab VM's power-on state, and the state's snapshot tag. */
export const LAB_COLD_STATE = { node: 'lab-cold', tag: 'power-on' } as const;

/** qemu arguments for the power-on state's node: a qcow2 file that no guest device uses. */
export function coldStateArgs(file: string): string[] {
  return [
    '-blockdev',
    `driver=qcow2,node-name=${LAB_COLD_STATE.node},file.driver=file,file.filename=${file}`,
  ];
}

/** Whether `query-named-block-nodes` lists the power-on state (node and snapshot both). */
export function hasColdState(nodes: unknown): boolean {
  if (!Array.isArray(nodes)) return false;
  return nodes.some((n: unknown) => {
    const node = n as { 'node-name'?: unknown; image?: { snapshots?: { name?: unknown }[] } };
    return (
      node['node-name'] === LAB_COLD_STATE.node &&
      (node.image?.snapshots ?? []).some((sn) => sn.name === LAB_COLD_STATE.tag)
    );
  });
}

/**
 * Runs a snapshot job (`snapshot-save` or `snapshot-load`) of the power-on state to its end and
 * dismisses it; rejects with the job's error, or when it has not concluded by the deadline.
 */
async function coldStateJob(
  socket: string,
  execute: 'snapshot-save' | 'snapshot-load',
  timeoutMs: number,
): Promise<void> {
  const id = `${execute}-${String(process.pid)}-${Math.random().toString(36).slice(2, 8)}`;
  const deadline = Date.now() + timeoutMs;
  const { node, tag } = LAB_COLD_STATE;
  await qmp(
    socket,
    [{ execute, arguments: { 'job-id': id, tag, vmstate: node, devices: [node] } }],
    timeoutMs,
  );
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    const [jobs] = await qmp(socket, [{ execute: 'query-jobs' }], timeoutMs);
    const job = (jobs as { id?: string; status?: string; error?: string }[]).find(
      (j) => j.id === id,
    );
    if (job?.status === 'concluded') {
      await qmp(socket, [{ execute: 'job-dismiss', arguments: { id } }], timeoutMs);
      if (job.error !== undefined) throw new Error(`${execute}: ${job.error}`);
      return;
    }
    if (Date.now() > deadline)
      throw new Error(
        `${execute}: not done within ${String(timeoutMs)} ms (${job?.status ?? 'gone'})`,
      );
    await sleep(wait);
  }
}

/**
 * For the launcher of a lab VM started paused (`-S`) with {@link coldStateArgs}: saves its state
 * before its first instruction as the power-on state, then lets it run.
 */
export async function savePowerOnState(socket: string, timeoutMs = 30_000): Promise<void> {
  const [st] = await qmp(socket, [{ execute: 'query-status' }], timeoutMs);
  const status = (st as { status?: string } | undefined)?.status;
  if (status !== 'prelaunch')
    throw new Error(
      `${socket}: the VM must not have run yet to save its power-on state (${String(status)})`,
    );
  await coldStateJob(socket, 'snapshot-save', timeoutMs);
  await qmp(socket, [{ execute: 'cont' }], timeoutMs);
}

/** The lab's device ids for the NIC and the disk. */
export const LAB_DEVICES = { network: 'net0', disk: 'disk0' } as const;

const bootIndexPath = (d: BootDevice): string => `/machine/peripheral/${LAB_DEVICES[d]}`;

/**
 * qom-set commands that take the devices from their `current` boot indexes (-1: none) to `first`
 * at 1 and the other at 2. QEMU refuses an index any device holds, the device itself included, so
 * a device already where it belongs is left alone and one whose wanted index another holds first
 * moves that one to a free index.
 */
export function bootOrderCommands(
  first: BootDevice,
  current: Partial<Record<BootDevice, number>>,
): QmpCommand[] {
  const other: BootDevice = first === 'network' ? 'disk' : 'network';
  const devices = [first, other].filter((d) => current[d] !== undefined);
  const want = new Map(devices.map((d, i) => [d, i + 1]));
  const now = new Map(devices.map((d) => [d, current[d] ?? -1]));
  const set = (d: BootDevice, v: number): QmpCommand => {
    now.set(d, v);
    return {
      execute: 'qom-set',
      arguments: { path: bootIndexPath(d), property: 'bootindex', value: v },
    };
  };
  const out: QmpCommand[] = [];
  for (const d of devices) {
    const v = want.get(d) ?? -1;
    if (now.get(d) === v) continue;
    const holder = devices.find((e) => e !== d && now.get(e) === v);
    if (holder) {
      const used = new Set(now.values());
      let free = 9;
      while (used.has(free)) free++;
      out.push(set(holder, free));
    }
    out.push(set(d, v));
  }
  return out;
}

export interface LabTarget {
  /** The VM's QMP Unix socket. */
  socket: string;
  timeoutMs?: number;
}

export function labDriver(t: LabTarget): PowerDriver {
  const timeoutMs = t.timeoutMs ?? 10_000;
  const fail = (action: PowerAction, e: unknown): PowerError =>
    new PowerError('unreachable', `lab ${action} on ${t.socket}: ${(e as Error).message}`, {
      cause: e,
    });
  const call = async (action: PowerAction, cmds: QmpCommand[]): Promise<unknown[]> => {
    try {
      return await qmp(t.socket, cmds, timeoutMs);
    } catch (e) {
      throw fail(action, e);
    }
  };
  const status = async (): Promise<PowerState> => {
    const [r] = await call('status', [{ execute: 'query-status' }]);
    return powerFromRunState((r as { status?: unknown } | undefined)?.status);
  };
  /** Power applied: the power-on state loaded where the VM has one, then reset and run. */
  const powerOn = async (action: PowerAction): Promise<void> => {
    const [nodes] = await call(action, [
      { execute: 'query-named-block-nodes', arguments: { flat: true } },
    ]);
    if (hasColdState(nodes)) {
      await call(action, [{ execute: 'stop' }]);
      try {
        await coldStateJob(t.socket, 'snapshot-load', timeoutMs);
      } catch (e) {
        throw fail(action, e);
      }
    }
    await call(action, [{ execute: 'system_reset' }, { execute: 'cont' }]);
  };
  /** The VM's boot devices and the boot index each holds now. */
  const bootIndexes = async (): Promise<Partial<Record<BootDevice, number>>> => {
    const [r] = await call('setNextBoot', [
      { execute: 'qom-list', arguments: { path: '/machine/peripheral' } },
    ]);
    const names = new Set(((r ?? []) as { name?: string }[]).map((p) => p.name));
    const have = (['network', 'disk'] as const).filter((d) => names.has(LAB_DEVICES[d]));
    const values = await call(
      'setNextBoot',
      have.map((d) => ({
        execute: 'qom-get',
        arguments: { path: bootIndexPath(d), property: 'bootindex' },
      })),
    );
    return Object.fromEntries(have.map((d, i) => [d, Number(values[i] ?? -1)]));
  };
  return {
    name: 'lab',
    capabilities: new Set<PowerAction>(['on', 'off', 'cycle', 'status', 'setNextBoot']),
    on: async () => {
      if ((await status()) === 'on') return;
      await powerOn('on');
    },
    off: async () => {
      await call('off', [{ execute: 'stop' }]);
    },
    cycle: async () => {
      await powerOn('cycle');
    },
    status,
    setNextBoot: async (device) => {
      const have = await bootIndexes();
      if (have[device] === undefined)
        throw new PowerError(
          'config',
          `lab VM at ${t.socket} has no device ${LAB_DEVICES[device]} to boot from`,
        );
      const cmds = bootOrderCommands(device, have);
      if (cmds.length > 0) await call('setNextBoot', cmds);
    },
  };
}
