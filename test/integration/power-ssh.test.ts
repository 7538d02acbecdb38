/**
 * The ssh power driver through the script jig's SSH plumbing against a real sshd in a network
 * namespace: root's key, trust on first use, the command's exit status. The machines of this
 * test are namespaces of the test host itself, so the reboot command is replaced by one that
 * leaves a mark (PowerServiceOptions.sshRebootCommand): a real reboot would reboot the host. The
 * driver's only action is a reboot; the others are refused as unsupported. The install flow's
 * restart (operator/provisioner/power-rebooter.ts) takes this driver for a Node without
 * spec.power, at the address the operator's sshAddress picks, and keeps the host-key check.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Network, Node } from '../../generated/crowbar.ts';
import { fileKeySource, sshAddresses } from '../../operator/jigs/script/wiring.ts';
import { PowerError } from '../../operator/power/driver.ts';
import { powerHook } from '../../operator/power/controller.ts';
import { powerRebooter } from '../../operator/provisioner/power-rebooter.ts';
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
    // As the operator does (operator/main.ts): a network of category admin, whatever its name.
    sshAddress: (n) =>
      sshAddresses(n, (net) =>
        net === `prov-${u}` ? ({ spec: { category: 'admin' } } as Network) : undefined,
      )[0],
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

  it('restarts a Node without spec.power for the install flow: ssh driver, its address, an Event', async () => {
    rmSync(mark, { force: true });
    const name = `pow-ssh-np-${u}.lab.example.com`;
    const bare: Node = {
      apiVersion: 'crowbar.dev/v1alpha1',
      kind: 'Node',
      metadata: { name },
      spec: {},
      status: {
        addresses: [
          { network: `prov-${u}`, address: `${machines.node('m1').address}/24`, family: 'ipv4' },
        ],
      },
    };
    const how = await powerRebooter(powerHook(rig.service)).reboot(
      bare,
      new AbortController().signal,
    );
    expect(how).toBe('rebooted over SSH; the Node has no spec.power');
    expect(readFileSync(mark, 'utf8')).toBe('rebooting\n');
    await eventually(
      'a PowerCycle Event on the Node',
      async () =>
        (await rig.events(name)).find(
          (e) => e.reason === 'PowerCycle' && e.message === 'rebooted over SSH',
        ),
      30_000,
    );
  });

  it('refuses a machine whose host key is not the one recorded on the Node, and reboots nothing', async () => {
    rmSync(mark, { force: true });
    const name = `pow-ssh-hk-${u}.lab.example.com`;
    const n = adminNode(name, `${machines.node('m1').address}/24`, {
      sshHostKey: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    });
    const r = powerRebooter(powerHook(rig.service)).reboot(n, new AbortController().signal);
    await expect(r).rejects.toThrow(/host key of .* changed \(was SHA256:A+, now SHA256:/);
    await expect(r).rejects.toMatchObject({ kind: 'auth' });
    expect(existsSync(mark)).toBe(false);
    await eventually(
      'a PowerFailed Event on the Node',
      async () =>
        (await rig.events(name)).find(
          (e) => e.reason === 'PowerFailed' && e.type === 'Warning' && /host key/.test(e.message),
        ),
      30_000,
    );
  });
});
