/**
 * The lab power driver against a real qemu VM's QMP socket: through PowerService.driverFor, the
 * VM is powered off (halted), on (a cold boot), cycled, and its next boot set to the network
 * (SeaBIOS boots the NIC's iPXE ROM, on its serial console) or the disk, by changing the devices'
 * bootindex at run time. Bad input: a path that is no QMP socket fails with a clear error.
 */
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PowerDriver } from '../../operator/power/driver.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { firstBootLine, simVm } from '../harness/ipmi-bmc.ts';
import { powerRig } from '../harness/power.ts';
import { startProcess, type Started } from '../harness/process.ts';

const u = uid();
const client = testClient();
const rig = powerRig(client);
const NODE = `pow-lab-${u}.lab.example.com`;
const BAD = `pow-labbad-${u}.lab.example.com`;
let dir: string;
let qemu: Started;
let vm: ReturnType<typeof simVm>;
let driver: PowerDriver;
let socket: string;

/** Starts a boot over on an empty serial log, so the first "Booting from" line is this boot's. */
async function boot(action: () => Promise<void>): Promise<string> {
  truncateSync(vm.serial, 0);
  await action();
  try {
    return await eventually('the VM to boot', () => firstBootLine(vm.serial), 60_000);
  } catch (e) {
    // Once (CI, load from parallel VM tests) the console stayed empty for 60 s after power-on:
    // say what QEMU thought of the VM then, and what it logged.
    const tail = readFileSync(vm.serial, 'latin1').slice(-600);
    const state = await driver.status().catch((err: unknown) => `unknown (${String(err)})`);
    const log = readFileSync(join(dir, 'qemu.log'), 'latin1').slice(-600);
    throw new Error(
      `${(e as Error).message}; serial console ends: ${JSON.stringify(tail)}; power state now: ${state}; qemu log ends: ${JSON.stringify(log)}`,
    );
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pow-lab-'));
  vm = simVm(dir, `pow-lab-${u}`, '52:54:00:be:00:03');
  writeFileSync(vm.serial, '');
  socket = join(dir, 'qmp.sock');
  // As the lab runs its VMs: QMP on a Unix socket, -no-shutdown, disk first.
  qemu = startProcess(
    'qemu-system-x86_64',
    [
      ...vm.args.map((a) => (a === `file,id=s0,path=${vm.serial}` ? `${a},append=on` : a)),
      '-no-shutdown',
      '-qmp',
      `unix:${socket},server=on,wait=off`,
      '-boot',
      'order=c',
    ],
    join(dir, 'qemu.log'),
  );
  await eventually('the QMP socket', async () => {
    try {
      const node = await rig.createNode(NODE, { driver: 'lab', address: socket });
      driver = await rig.service.driverFor(node);
      return (await driver.status()) === 'on';
    } catch {
      await client.delete('Node', NODE);
      return false;
    }
  });
}, 60_000);

afterAll(async () => {
  await qemu.stop(5000);
  await client.delete('Node', NODE);
  await client.delete('Node', BAD);
  rmSync(dir, { recursive: true, force: true });
});

describe('lab power driver against a qemu VM over QMP', () => {
  it('halts and cold-boots the VM, from the network or the disk', async () => {
    expect(await driver.status()).toBe('on');
    await driver.off();
    expect(await driver.status()).toBe('off');

    await driver.setNextBoot('network');
    expect(await boot(() => driver.on())).toBe('ROM');
    expect(await driver.status()).toBe('on');

    await driver.setNextBoot('disk');
    expect(await boot(() => driver.cycle())).toBe('Hard Disk');

    await driver.off();
    expect(await driver.status()).toBe('off');
    // A cycle of a halted VM powers it on.
    await driver.setNextBoot('network');
    expect(await boot(() => driver.cycle())).toBe('ROM');
    expect(await driver.status()).toBe('on');
  }, 180_000);

  it('records Events for the actions', async () => {
    let seen: string[] = [];
    await eventually(
      'the Events',
      async () => {
        seen = (await rig.events(NODE)).map((e) => `${e.reason}: ${e.message}`);
        const reasons = new Set(seen.map((e) => e.split(':')[0]));
        return ['PowerOn', 'PowerOff', 'PowerCycle', 'NextBoot'].every((r) => reasons.has(r));
      },
      30_000,
    ).catch((e: unknown) => {
      const unwritten = rig.logs.filter((l) => l.includes('event not written')).slice(-3);
      throw new Error(
        `${(e as Error).message}; Events seen: ${JSON.stringify(seen)}; not written: ${unwritten.join(' ')}`,
      );
    });
  });

  it('fails clearly on a path that is no QMP socket', async () => {
    const node = await rig.createNode(BAD, { driver: 'lab', address: join(dir, 'nothing.sock') });
    const d = await rig.service.driverFor(node);
    await expect(d.off()).rejects.toThrow(/lab off on .*nothing\.sock: cannot talk to QMP/);
  });
});
