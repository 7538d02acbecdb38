/**
 * The ssh power driver through the script jig's SSH plumbing against a real sshd in a network
 * namespace: root's key, trust on first use, the command's exit status. The machines of this
 * test are namespaces of the test host itself, so the reboot command is replaced by one that
 * leaves a mark (PowerServiceOptions.sshRebootCommand): a real reboot would reboot the host. The
 * driver's only action is a reboot; the others are refused as unsupported.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import { fileKeySource } from '../../operator/jigs/script/wiring.ts';
import { PowerError } from '../../operator/power/driver.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { powerRig } from '../harness/power.ts';
import { adminNode, SshFleet } from '../harness/ssh-fleet.ts';

const u = uid();
const client = testClient();
const machines = new SshFleet({ prefix: `pow-ssh-${u}` });
const mark = join(machines.dir, 'rebooted');
let rig: ReturnType<typeof powerRig>;
const NAME = `pow-ssh-${u}.lab.example.com`;

function node(address: string): Node {
  const n = adminNode(NAME, `${address}/24`, {});
  return { ...n, spec: { ...n.spec, power: { driver: 'ssh' } } };
}

beforeAll(async () => {
  const key = await machines.generateKey('operator');
  await machines.start(['m1'], { authorizedKeys: () => [key.publicKey] });
  rig = powerRig(client, {
    sshKey: fileKeySource(key.path),
    sshRebootCommand: `/bin/sh -c 'echo rebooting > ${mark}'`,
  });
}, 60_000);

afterAll(() => machines.destroy());

describe('ssh power driver against sshd', () => {
  it('reboots over SSH as root and records it', async () => {
    const d = await rig.service.driverFor(node(machines.node('m1').address));
    expect([...d.capabilities]).toEqual(['cycle']);
    await d.cycle();
    expect(existsSync(mark) && readFileSync(mark, 'utf8')).toBe('rebooting\n');
    await eventually(
      'a PowerCycle Event',
      async () =>
        (await rig.events(NAME)).find(
          (e) => e.reason === 'PowerCycle' && e.message === 'rebooted over SSH',
        ),
      30_000,
    );
  });

  it('refuses what only a BMC can do', async () => {
    const d = await rig.service.driverFor(node(machines.node('m1').address));
    await expect(d.off()).rejects.toThrow(/the ssh power driver cannot off/);
    await expect(d.setNextBoot('network')).rejects.toThrow(PowerError);
  });

  it('fails clearly when nothing answers', async () => {
    const d = await rig.service.driverFor(node(machines.lab.unusedAddress()));
    await expect(d.cycle()).rejects.toThrow(/ssh reboot of pow-ssh-\w+\.lab\.example\.com/);
  }, 60_000);
});
