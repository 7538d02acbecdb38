/**
 * The ipmi power driver against a real BMC: OpenIPMI's ipmi_sim on 127.0.0.1, its chassis
 * control wired to a real qemu VM (test/harness/ipmi-bmc.ts). Through PowerService.driverFor (the
 * install flow's hook) and ipmitool: power on, status, off, next boot from the network (the VM
 * then boots iPXE) or the disk, cycle; Events on the Node for each action; the password in no log
 * line, Event or Node status; a wrong password fails with a clear error.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PowerDriver } from '../../operator/power/driver.ts';
import { PowerError } from '../../operator/power/driver.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { simVm, startIpmiBmc, type IpmiBmc } from '../harness/ipmi-bmc.ts';
import { bootScenario, eventsWithoutSecrets, powerRig } from '../harness/power.ts';

const u = uid();
const client = testClient();
const rig = powerRig(client);
const NODE = `pow-ipmi-${u}.lab.example.com`;
const BAD = `pow-ipmibad-${u}.lab.example.com`;
const SECRET = `pow-ipmi-${u}`;
const BAD_SECRET = `pow-ipmibad-${u}`;
const USER = `crowbar${u}`;
const PASSWORD = `pw-${u}-Zq7`;
let dir: string;
let bmc: IpmiBmc;
let vm: ReturnType<typeof simVm>;
let driver: PowerDriver;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pow-ipmi-'));
  vm = simVm(dir, `pow-ipmi-${u}`, '52:54:00:be:00:01');
  bmc = await startIpmiBmc({ dir, name: `pow${u}`, username: USER, password: PASSWORD, vm });
  await rig.createSecret(SECRET, { username: USER, password: PASSWORD });
  await rig.createSecret(BAD_SECRET, { username: USER, password: 'not-the-password' });
  const node = await rig.createNode(NODE, {
    driver: 'ipmi',
    address: bmc.address,
    credentialsSecret: { name: SECRET },
  });
  driver = await rig.service.driverFor(node);
}, 60_000);

afterAll(async () => {
  await bmc.stop();
  await client.delete('Node', NODE);
  await client.delete('Node', BAD);
  await rig.deleteSecret(SECRET);
  await rig.deleteSecret(BAD_SECRET);
  rmSync(dir, { recursive: true, force: true });
});

describe('ipmi power driver against ipmi_sim and a qemu VM', () => {
  it('powers the VM on from the network, off, on from the disk, and cycles it', async () => {
    await bootScenario(driver, bmc, vm.serial);
    // A cycle of a machine that is off powers it on.
    await driver.cycle();
    expect(await driver.status()).toBe('on');
    await driver.off();
  }, 240_000);

  it('records an Event for each action and never shows the password', async () => {
    const events = await eventsWithoutSecrets(rig, client, NODE, [PASSWORD]);
    expect(events.find((e) => e.reason === 'NextBoot')?.message).toMatch(
      new RegExp(`next boot from (network|disk) via ipmi \\(${bmc.address}\\)`),
    );
    const metrics = await rig.registry.getSingleMetricAsString('crowbar_power_actions_total');
    expect(metrics).toMatch(/driver="ipmi",action="on",outcome="ok"} [1-9]/);
  });

  it('fails with a clear error on a wrong password, without showing it', async () => {
    const node = await rig.createNode(BAD, {
      driver: 'ipmi',
      address: bmc.address,
      credentialsSecret: { name: BAD_SECRET },
    });
    const bad = await rig.service.driverFor(node);
    const err = await bad.status().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PowerError);
    expect((err as PowerError).message).toMatch(/ipmi status on 127\.0\.0\.1:\d+ failed/);
    expect((err as PowerError).message).not.toContain('not-the-password');
    const ev = await eventually(
      'a PowerFailed Event',
      async () => (await rig.events(BAD)).find((e) => e.reason === 'PowerFailed'),
      30_000,
    );
    expect(ev.type).toBe('Warning');
    expect(ev.message).not.toContain('not-the-password');
    expect(rig.logs.join('')).not.toContain('not-the-password');
  }, 60_000);

  it('says how to create a missing credentials Secret', async () => {
    const node = {
      ...(await client.get('Node', NODE)),
      spec: {
        power: {
          driver: 'ipmi' as const,
          address: bmc.address,
          credentialsSecret: { name: `pow-missing-${u}` },
        },
      },
    };
    await expect(rig.service.driverFor(node as never)).rejects.toThrow(
      /Secret default\/pow-missing-\w+ not found: kubectl create secret generic/,
    );
  });
});
