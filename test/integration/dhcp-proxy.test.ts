/**
 * proxyDHCP end to end (issue 10): dnsmasq, in its own namespace on the provisioning bridge, hands
 * out the addresses; the sidecar serves the same Network with `spec.dhcp.mode: proxy` and answers
 * the PXE client with boot information only (DHCP port 67, PXE port 4011). A BIOS VM (SeaBIOS +
 * iPXE option ROM, qemu TCG) takes its address from dnsmasq and its boot file from us, boots the
 * test kernel and initramfs over HTTP, and calls back from a dnsmasq address.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { eventually, testClient, uid } from '../harness/context.ts';
import { createDhcpLab, type DhcpLab } from '../harness/dhcp-lab.ts';
import { startProcess, type Started } from '../harness/process.ts';
import { setUpPxeTest, type PxeTest } from '../harness/pxe-test.ts';
import { qemuArgs } from '../harness/qemu.ts';

const u = uid();
const network = `cbdhcp-proxy-${u}`;
const domain = `proxy${u}.example.com`;
const FM = 'dhcp-proxy-test';
const BOOTENV = `proxytest${u}-install`;
const MAC = '52:54:00:e1:00:01';
const node = `bios.${domain}`;
let lab: DhcpLab;
let client: CrowbarClient;
let pxe: PxeTest;
let dnsmasq: Started | undefined;

beforeAll(async () => {
  client = testClient();
  lab = await createDhcpLab();
  pxe = await setUpPxeTest(lab, client, BOOTENV, FM);
  await client.create(
    'Network',
    {
      metadata: { name: network },
      spec: { category: 'admin', subnet: `${lab.net}.0/24`, dhcp: { mode: 'proxy' } },
    } as never,
    FM,
  );
  await client.create(
    'Node',
    { metadata: { name: node }, spec: { macs: [MAC], bootEnv: BOOTENV } },
    FM,
  );
  // The address server: dnsmasq alone in its namespace on the bridge, no DNS, no boot options.
  const d = await lab.addClient('dnsmasq', '52:54:00:e1:00:fe');
  await d.exec('ip', ['addr', 'add', `${lab.net}.9/24`, 'dev', 'eth0']);
  dnsmasq = startProcess(
    'ip',
    [
      'netns',
      'exec',
      d.ns,
      'dnsmasq',
      '--keep-in-foreground',
      '--no-daemon',
      '--port=0',
      '--no-resolv',
      '--no-hosts',
      '--interface=eth0',
      '--bind-interfaces',
      `--dhcp-range=${lab.net}.100,${lab.net}.150,255.255.255.0,10m`,
      `--dhcp-leasefile=${join(lab.dir, 'dnsmasq.leases')}`,
      `--pid-file=${join(lab.dir, 'dnsmasq.pid')}`,
      '--log-dhcp',
    ],
    join(lab.dir, 'dnsmasq.log'),
  );
  await lab.startSidecar({
    kubeconfig: inject('kubeconfig'),
    apiServer: inject('apiServer'),
    network,
  });
}, 400_000);

afterAll(async () => {
  await dnsmasq?.stop(5000);
  await lab.destroy();
  await client.delete('Node', node).catch(() => undefined);
  await client.delete('Network', network).catch(() => undefined);
  await client.delete('BootEnv', BOOTENV).catch(() => undefined);
});

const callback = () => pxe.callbackFrom(MAC);

it('a BIOS VM gets its address from dnsmasq and its boot information from our proxyDHCP, and boots', async () => {
  await lab.addTap('tapproxy');
  const serial = join(lab.dir, 'proxybios.serial');
  const qemu = lab.startInServerNs(
    'qemu-system-x86_64',
    qemuArgs({ name: 'proxybios', mac: MAC, tap: 'tapproxy', dir: lab.dir, noReboot: true }),
    serial,
  );
  try {
    const got = await eventually(
      'callback from the BIOS VM',
      () => callback() ?? (qemu.proc.exitCode !== null ? 'exited' : undefined),
      150_000,
      250,
    );
    const body = got === 'exited' ? callback() : got;
    const log = readFileSync(serial, 'utf8');
    expect(
      body,
      `no callback; serial:\n${log.split('\n').slice(-60).join('\n')}\nsidecar:\n${lab.log().slice(-3000)}`,
    ).toBeDefined();
    if (!body) return;
    // The address is dnsmasq's (its range), the boot was ours (our per-node kernel arguments).
    expect(body['ip']).toMatch(
      new RegExp(`^${lab.net.replaceAll('.', '\\.')}\\.(1[0-4]\\d|150)/24$`),
    );
    expect(body['id']).toBe(node);
    expect(body['cmdline']).toContain(`pxetest.callback=http://${lab.serverIp}:8081/callback`);
    // Our sidecar handed out no address: its replies were proxyDHCP (no yiaddr).
    expect(readFileSync(join(lab.dir, 'dnsmasq.leases'), 'utf8')).toContain(MAC);
    expect(lab.log()).not.toMatch(/"yiaddr":"(?!0\.0\.0\.0)/);
  } finally {
    await qemu.stop(5000);
  }
}, 200_000);
