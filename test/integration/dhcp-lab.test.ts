/**
 * dhcp-sidecar/lab.ts, as `make lab` would use it: the sidecar on the lab network's bridge (in the
 * hub namespace), serving an unknown machine from the discovery pool.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inject } from 'vitest';
import { startLabDhcpSidecar, type LabSidecar } from '../../dhcp-sidecar/lab.ts';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { testClient, uid } from '../harness/context.ts';
import { createLabNetwork, type LabNetwork } from '../harness/netns.ts';

let lab: LabNetwork;
let sidecar: LabSidecar | undefined;
let client: CrowbarClient;
let dir: string;
const network = `cbdhcp-lab-${uid()}`;

beforeAll(async () => {
  client = testClient();
  dir = mkdtempSync(join(tmpdir(), 'cbdhcp-lab-'));
  lab = await createLabNetwork();
  const base = lab.subnet.replace(/0\/24$/, '');
  await client.create(
    'Network',
    {
      metadata: { name: network },
      spec: {
        category: 'admin',
        subnet: lab.subnet,
        ranges: [{ name: 'dhcp', first: `${base}200`, last: `${base}210` }],
      },
    } as never,
    'dhcp-lab-test',
  );
  sidecar = await startLabDhcpSidecar({
    ns: lab.hubNs,
    bridge: 'br0',
    serverCidr: `${base}2/24`,
    network,
    kubeconfig: inject('kubeconfig'),
    apiServer: inject('apiServer'),
    dir,
  });
});

afterAll(async () => {
  await sidecar?.stop();
  await lab.destroy();
  await client.delete('Network', network).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

it('serves an unknown machine on the lab bridge from the discovery pool', async () => {
  const node = await lab.addNode('pxe1');
  await node.exec('ip', ['-4', 'addr', 'flush', 'dev', 'eth0']);
  const { stdout, stderr } = await node.exec(
    'busybox',
    ['udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '5', '-T', '1', '-s', '/bin/true'],
    30_000,
  );
  expect(`${stdout}${stderr}`).toMatch(
    /lease of 10\.251\.\d+\.2(0\d|10) obtained from 10\.251\.\d+\.2,/,
  );
});
