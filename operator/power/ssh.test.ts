/**
 * The ssh driver's reboot command where `nohup` is missing, as in the discovery image (Debian's
 * busybox-static has no nohup applet): run by /bin/sh with a PATH holding only busybox's sleep
 * and a STAND-IN `reboot` that leaves a mark (a real one would reboot this machine). Not under
 * busybox ash itself: its `reboot` is the applet, never the one on PATH. The command must return,
 * its output closed, and the detached reboot must still run once that shell is gone. (The real
 * reboot of the discovery image over dropbear: test/integration/provision.test.ts.)
 */
import { execFile } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REBOOT_COMMAND } from './ssh.ts';

const dir = mkdtempSync(join(tmpdir(), 'p2-ssh-reboot-'));
const bin = join(dir, 'bin');
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** PATH with busybox's sleep and a stand-in reboot, and no nohup or systemctl. */
function stubPath(mark: string): string {
  rmSync(bin, { recursive: true, force: true });
  mkdirSync(bin, { recursive: true });
  symlinkSync('/bin/busybox', join(bin, 'sleep'));
  writeFileSync(join(bin, 'reboot'), `#!/bin/busybox sh\necho rebooted > ${mark}\n`);
  chmodSync(join(bin, 'reboot'), 0o755);
  return bin;
}

async function waitForFile(f: string): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (let i = 0; i < 400 && Date.now() < deadline; i++) {
    if (existsSync(f) && readFileSync(f, 'utf8') !== '') return readFileSync(f, 'utf8');
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${f} never written`);
}

describe('REBOOT_COMMAND', () => {
  it('returns with its output closed, and the detached reboot runs without nohup', async () => {
    const mark = join(dir, 'mark');
    const r = await promisify(execFile)('/bin/sh', ['-c', REBOOT_COMMAND], {
      env: { PATH: stubPath(mark) },
      timeout: 10_000,
    });
    expect(r.stdout).toBe('rebooting\n');
    expect(await waitForFile(mark)).toBe('rebooted\n');
  }, 30_000);
});
