/**
 * The Node CRD's spec.power on the real API server: good specs are stored (with insecure
 * defaulted), bad ones refused with a message naming what to fix. And the ubuntu-24.04-install
 * BootEnv, as operator/bootenvs/ubuntu.ts builds it, is accepted by the BootEnv CRD.
 */
import { CustomObjectsApi } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import { UBUNTU_2404_INSTALL, ubuntuInstallBootEnv } from '../../operator/bootenvs/ubuntu.ts';
import { apiCode, apiMessage } from '../../operator/kube/errors.ts';
import { testClient, uid } from '../harness/context.ts';

const client = testClient();
const api = client.kc.makeApiClient(CustomObjectsApi);
const id = uid();
const made: string[] = [];

async function create(name: string, power: unknown): Promise<Node> {
  const n = (await api.createClusterCustomObject({
    group: 'crowbar.dev',
    version: 'v1alpha1',
    plural: 'nodes',
    body: { apiVersion: 'crowbar.dev/v1alpha1', kind: 'Node', metadata: { name }, spec: { power } },
  })) as Node;
  made.push(name);
  return n;
}

afterAll(async () => {
  for (const n of made) await client.delete('Node', n);
});

describe('spec.power', () => {
  it.each([
    ['ssh', { driver: 'ssh' }],
    ['ipmi', { driver: 'ipmi', address: '10.1.2.3:623', credentialsSecret: { name: 'bmc-a' } }],
    ['ipmi6', { driver: 'ipmi', address: '[fd00::5]:623', credentialsSecret: { name: 'bmc-a' } }],
    [
      'redfish',
      {
        driver: 'redfish',
        address: 'https://bmc.example.com:8443/redfish/v1/Systems/1',
        credentialsSecret: { name: 'bmc-b', namespace: 'crowbar-system' },
      },
    ],
    ['lab', { driver: 'lab', address: '/run/crowbar-lab/vm1/qmp.sock' }],
  ])('stores a good %s spec', async (what, power) => {
    const n = await create(`pow-ok-${what}-${id}.lab.example.com`, power);
    expect(n.spec.power).toEqual({ insecure: false, ...power });
  });

  it.each([
    ['an unknown driver', { driver: 'amt' }, /Unsupported value: "amt"/],
    [
      'ipmi without an address',
      { driver: 'ipmi', credentialsSecret: { name: 'x' } },
      /spec.power.address is required/,
    ],
    [
      'ipmi without credentials',
      { driver: 'ipmi', address: 'bmc1' },
      /credentialsSecret is required/,
    ],
    [
      'an ipmi address with options in it',
      { driver: 'ipmi', address: '-H evil', credentialsSecret: { name: 'x' } },
      /ipmi address must be host, host:port/,
    ],
    [
      'redfish over http',
      { driver: 'redfish', address: 'http://bmc', credentialsSecret: { name: 'x' } },
      /redfish address must be an https:\/\/ URL/,
    ],
    [
      'redfish with a password in the URL',
      { driver: 'redfish', address: 'https://root:pw@bmc', credentialsSecret: { name: 'x' } },
      /with no user name in it/,
    ],
    [
      'a relative lab socket',
      { driver: 'lab', address: 'qmp.sock' },
      /absolute path of the VM's QMP/,
    ],
    [
      'insecure for ipmi',
      { driver: 'ipmi', address: 'bmc', credentialsSecret: { name: 'x' }, insecure: true },
      /insecure applies to the redfish driver only/,
    ],
  ])('refuses %s', async (_what, power, re) => {
    try {
      await create(`pow-bad-${uid()}.lab.example.com`, power);
    } catch (e) {
      expect(apiCode(e)).toBe(422);
      expect(apiMessage(e)).toMatch(re);
      return;
    }
    throw new Error(`the API server accepted ${JSON.stringify(power)}`);
  });
});

describe('ubuntu-24.04-install BootEnv', () => {
  it('is accepted by the BootEnv CRD as built', async () => {
    const spec = ubuntuInstallBootEnv({
      sshAuthorizedKeys: [
        'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx6cmG1P5m3Q6mSx4lJ8o0S3Wv7e1cZ8Y8y2b3mXq8B op',
      ],
    });
    // A name of this run's own (another test may hold ubuntu-24.04-install on this API server).
    const name = UBUNTU_2404_INSTALL.replace(/-install$/, `-${id}-install`);
    const b = await client.create('BootEnv', { metadata: { name }, spec }, 'power-test');
    try {
      expect(b.spec.files?.map((f) => f.name)).toEqual(['user-data', 'meta-data', 'vendor-data']);
      expect(b.spec.kernelArgs).toContain('autoinstall ds=nocloud;s={{http}}/nodes/{{mac}}/');
    } finally {
      await client.delete('BootEnv', name);
    }
  });
});
