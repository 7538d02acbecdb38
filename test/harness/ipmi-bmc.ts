/**
 * A real BMC for the ipmi power driver: OpenIPMI's `ipmi_sim` (Debian `openipmi`) on a free UDP
 * port of 127.0.0.1, its chassis commands wired by `vm-power.sh` (lan.conf `chassis_control`)
 * to a real qemu VM (TCG) that the script starts on power on and kills on power off, with `-boot
 * order=n` when ipmi_sim was told `bootdev pxe`. The VM's NIC is qemu user networking with
 * `restrict=on` (nothing leaves qemu), so a network boot shows as iPXE on its serial console.
 */
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startProcess, type Started } from './process.ts';

export const CHASSIS_SCRIPT = join(import.meta.dirname, 'vm-power.sh');

/** A free UDP port on 127.0.0.1 (racy by nature; the caller retries when ipmi_sim cannot bind). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => {
        resolve(port);
      });
    });
  });
}

export interface SimVm {
  /** The qemu arguments (no -boot, -daemonize, -pidfile: the chassis script adds them). */
  args: string[];
  serial: string;
}

/** A small BIOS VM with an empty virtio disk (disk0) and a restricted user-mode NIC (net0). */
export function simVm(dir: string, name: string, mac: string): SimVm {
  const serial = join(dir, 'serial.log');
  const disk = join(dir, 'disk.img');
  writeFileSync(disk, Buffer.alloc(1024 * 1024));
  return {
    serial,
    args: [
      '-name',
      name,
      '-machine',
      'pc,accel=tcg,graphics=off',
      '-m',
      '96',
      '-display',
      'none',
      '-nodefaults',
      '-monitor',
      'none',
      '-chardev',
      `file,id=s0,path=${serial}`,
      '-serial',
      'chardev:s0',
      '-drive',
      `file=${disk},format=raw,if=none,id=d0`,
      '-device',
      'virtio-blk-pci,drive=d0,id=disk0',
      '-netdev',
      'user,id=n0,restrict=on',
      '-device',
      `virtio-net-pci,netdev=n0,mac=${mac},id=net0`,
    ],
  };
}

/**
 * The first "Booting from ..." line SeaBIOS wrote on the serial console after its banner, once it
 * has. Counting from the banner makes it this boot's line even when the log still holds the end
 * of a boot the VM was reset out of.
 */
export function firstBootLine(serial: string): string | undefined {
  if (!existsSync(serial)) return undefined;
  const text = readFileSync(serial, 'latin1');
  const banner = text.indexOf('SeaBIOS (version');
  if (banner < 0) return undefined;
  const m = /Booting from ([A-Za-z ]+)\.\.\./.exec(text.slice(banner));
  return m?.[1]?.trim();
}

/** Whether the VM that vm-power.sh started in `stateDir` lives. */
export function vmRunning(stateDir: string): boolean {
  const pidFile = join(stateDir, 'qemu.pid');
  if (!existsSync(pidFile)) return false;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** One entry per power on of the VM in `stateDir`: its boot order (n = network, c = disk). */
export function vmBoots(stateDir: string): string[] {
  const f = join(stateDir, 'boots.log');
  return existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean) : [];
}

/** Prepares `stateDir` for vm-power.sh: the VM's qemu arguments. */
export function prepareVmState(stateDir: string, vm: SimVm): void {
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(join(stateDir, 'qemu-args'), `${vm.args.join('\n')}\n`);
}

export interface IpmiBmc {
  address: string;
  stateDir: string;
  /** Whether the VM process lives (what the chassis script reports as power). */
  vmRunning(): boolean;
  /** One entry per power on: the boot order the VM started with (n = network, c = disk). */
  boots(): string[];
  stop(): Promise<void>;
}

export async function startIpmiBmc(o: {
  dir: string;
  name: string;
  username: string;
  password: string;
  vm: SimVm;
}): Promise<IpmiBmc> {
  const stateDir = join(o.dir, 'chassis');
  const simDir = join(o.dir, 'sim');
  prepareVmState(stateDir, o.vm);
  mkdirSync(simDir, { recursive: true });
  writeFileSync(
    join(o.dir, 'sim.emu'),
    [
      'mc_setbmc 0x20',
      'mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr',
      'sel_enable 0x20 1000 0x0a',
      'mc_enable 0x20',
      '',
    ].join('\n'),
  );
  const running = (): boolean => vmRunning(stateDir);
  let sim: Started | undefined;
  let address = '';
  // A port picked free may be taken before ipmi_sim binds it: try a few.
  for (let attempt = 0; attempt < 5 && !sim; attempt++) {
    const port = await freeUdpPort();
    const conf = join(o.dir, 'lan.conf');
    writeFileSync(
      conf,
      [
        `name "${o.name}"`,
        'set_working_mc 0x20',
        '  startlan 1',
        `    addr 127.0.0.1 ${port}`,
        '    priv_limit admin',
        '    allowed_auths_callback none md2 md5 straight',
        '    allowed_auths_user none md2 md5 straight',
        '    allowed_auths_operator none md2 md5 straight',
        '    allowed_auths_admin none md2 md5 straight',
        '    guid a123456789abcdefa123456789abcdef',
        '  endlan',
        `  chassis_control "${CHASSIS_SCRIPT} ${stateDir}"`,
        `  user 2 true "${o.username}" "${o.password}" admin 10 none md2 md5 straight`,
        '',
      ].join('\n'),
    );
    const log = join(o.dir, `ipmi_sim-${attempt}.log`);
    const p = startProcess(
      'ipmi_sim',
      ['-c', conf, '-f', join(o.dir, 'sim.emu'), '-s', simDir, '-n'],
      log,
    );
    // Bound when the port shows in the socket table, or failed when the process exits.
    const end = Date.now() + 10_000;
    let bound = false;
    while (Date.now() < end && p.proc.exitCode === null) {
      const ss = execFileSync('ss', ['-H', '-uln', `sport = :${port}`], { encoding: 'utf8' });
      if (ss.includes(`127.0.0.1:${port}`)) {
        bound = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (bound) {
      sim = p;
      address = `127.0.0.1:${port}`;
    } else await p.stop(2000);
  }
  if (!sim) throw new Error(`ipmi_sim did not start: see ${o.dir}/ipmi_sim-*.log`);
  const started = sim;
  return {
    address,
    stateDir,
    vmRunning: running,
    boots: () => vmBoots(stateDir),
    stop: async () => {
      try {
        execFileSync(CHASSIS_SCRIPT, [stateDir, 'set', 'power', '0'], { timeout: 15_000 });
      } finally {
        await started.stop(5000);
      }
    },
  };
}
