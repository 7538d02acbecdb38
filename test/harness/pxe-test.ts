/**
 * The PXE test image in a DHCP lab (dhcp-pxe and dhcp-proxy tests): builds it (cached in
 * ~/.cache/crowbar/pxe-test, build-pxe-image.sh), puts its kernel and initrd under the sidecar's
 * file root at pxetest/, starts the callback receiver (pxe-callback.ts) in the server namespace
 * on port 8081 and creates the BootEnv that boots it with that callback URL.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import type { DhcpLab } from './dhcp-lab.ts';

export const PXE_TEST_IMAGE = join(homedir(), '.cache', 'crowbar', 'pxe-test');

export interface PxeTest {
  /** callbacks.jsonl: one line per callback. */
  callbacks: string;
  /** The first callback body from the VM with `mac`, if any yet. */
  callbackFrom(mac: string): Record<string, string> | undefined;
}

export async function setUpPxeTest(
  lab: DhcpLab,
  client: CrowbarClient,
  bootEnv: string,
  fieldManager: string,
): Promise<PxeTest> {
  execFileSync(join(import.meta.dirname, 'build-pxe-image.sh'), [PXE_TEST_IMAGE], {
    stdio: 'ignore',
    timeout: 300_000,
  });
  mkdirSync(join(lab.fileRoot, 'pxetest'));
  for (const f of ['vmlinuz', 'initrd.gz'])
    copyFileSync(join(PXE_TEST_IMAGE, f), join(lab.fileRoot, 'pxetest', f));
  const callbacks = join(lab.dir, 'callbacks.jsonl');
  lab.startInServerNs(
    process.execPath,
    [join(import.meta.dirname, 'pxe-callback.ts'), lab.serverIp, '8081', callbacks],
    join(lab.dir, 'callback.log'),
  );
  await client.create(
    'BootEnv',
    {
      metadata: { name: bootEnv },
      spec: {
        kernel: 'pxetest/vmlinuz',
        initrds: ['pxetest/initrd.gz'],
        kernelArgs:
          'initrd={{initrd}} console=ttyS0,115200 pxetest.callback=http://{{server}}:8081/callback pxetest.id={{name}}',
      },
    },
    fieldManager,
  );
  return {
    callbacks,
    callbackFrom(mac) {
      if (!existsSync(callbacks)) return undefined;
      for (const line of readFileSync(callbacks, 'utf8').split('\n')) {
        if (line.trim() === '') continue;
        try {
          const body = JSON.parse(line) as Record<string, string>;
          if (body['mac'] === mac) return body;
        } catch {
          // a torn line: not ours to judge
        }
      }
      return undefined;
    },
  };
}
