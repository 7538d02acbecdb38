/**
 * The redfish power driver against the sushy-tools Redfish emulator (fake-driver mode, HTTPS with
 * a CA of this test, HTTP Basic auth) whose change notifications start and stop a real qemu VM
 * (test/harness/sushy.ts): through PowerService.driverFor, ComputerSystem.Reset powers it on, off
 * and cycles it; Boot.BootSourceOverrideTarget=Pxe makes its next boot a network boot (iPXE on
 * its serial console), Hdd a disk boot. Events for each action, the password nowhere; an
 * untrusted certificate and a wrong password fail with errors that say so.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PowerDriver } from '../../operator/power/driver.ts';
import { PowerError } from '../../operator/power/driver.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { simVm } from '../harness/ipmi-bmc.ts';
import { bootScenario, eventsWithoutSecrets, powerRig } from '../harness/power.ts';
import { startRedfishBmc, type RedfishBmc } from '../harness/sushy.ts';

const u = uid();
const client = testClient();
const rig = powerRig(client);
const NODE = `pow-rf-${u}.lab.example.com`;
const NOCA = `pow-rfnoca-${u}.lab.example.com`;
const BADPW = `pow-rfbadpw-${u}.lab.example.com`;
const SECRET = `pow-rf-${u}`;
const NOCA_SECRET = `pow-rfnoca-${u}`;
const BADPW_SECRET = `pow-rfbadpw-${u}`;
const USER = `crowbar${u}`;
const PASSWORD = `rf-${u}-Kx9`;
let dir: string;
let bmc: RedfishBmc;
let vm: ReturnType<typeof simVm>;
let driver: PowerDriver;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pow-redfish-'));
  vm = simVm(dir, `pow-rf-${u}`, '52:54:00:be:00:02');
  bmc = await startRedfishBmc({
    dir,
    username: USER,
    password: PASSWORD,
    systemId: randomUUID(),
    mac: '52:54:00:be:00:02',
    vm,
  });
  await rig.createSecret(SECRET, { username: USER, password: PASSWORD, 'ca.crt': bmc.caPem });
  await rig.createSecret(NOCA_SECRET, { username: USER, password: PASSWORD });
  await rig.createSecret(BADPW_SECRET, {
    username: USER,
    password: 'wrong-password',
    'ca.crt': bmc.caPem,
  });
  const node = await rig.createNode(NODE, {
    driver: 'redfish',
    address: bmc.url,
    credentialsSecret: { name: SECRET },
  });
  driver = await rig.service.driverFor(node);
}, 360_000);

afterAll(async () => {
  await bmc.stop();
  for (const n of [NODE, NOCA, BADPW]) await client.delete('Node', n);
  for (const s of [SECRET, NOCA_SECRET, BADPW_SECRET]) await rig.deleteSecret(s);
  rmSync(dir, { recursive: true, force: true });
});

describe('redfish power driver against sushy-tools and a qemu VM', () => {
  it('powers the VM on from the network, off, on from the disk, and cycles it', async () => {
    await bootScenario(driver, bmc, vm.serial);
  }, 300_000);

  it('records an Event for each action and never shows the password', async () => {
    const events = await eventsWithoutSecrets(rig, client, NODE, [
      PASSWORD,
      Buffer.from(`${USER}:${PASSWORD}`).toString('base64'),
    ]);
    expect(events.find((e) => e.reason === 'PowerOn')?.message).toBe(
      `powered on via redfish (${bmc.url})`,
    );
  });

  it('refuses a certificate it has no CA for, and says so', async () => {
    const node = await rig.createNode(NOCA, {
      driver: 'redfish',
      address: `${bmc.url}/redfish/v1/Systems/${bmc.systemId}`,
      credentialsSecret: { name: NOCA_SECRET },
    });
    const d = await rig.service.driverFor(node);
    await expect(d.status()).rejects.toThrow(/TLS certificate is not trusted.*ca\.crt/);
  });

  it('fails on a wrong password with HTTP 401, without showing it', async () => {
    const node = await rig.createNode(BADPW, {
      driver: 'redfish',
      address: bmc.url,
      credentialsSecret: { name: BADPW_SECRET },
    });
    const d = await rig.service.driverFor(node);
    const err = await d.on().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PowerError);
    expect((err as PowerError).kind).toBe('auth');
    expect((err as PowerError).message).toMatch(
      /refused the credentials in the Secret \(HTTP 401\)/,
    );
    const ev = await eventually(
      'a PowerFailed Event',
      async () => (await rig.events(BADPW)).find((e) => e.reason === 'PowerFailed'),
      30_000,
    );
    expect(ev.message).not.toContain('wrong-password');
  });
});
