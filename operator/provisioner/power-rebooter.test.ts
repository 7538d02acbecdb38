import { describe, expect, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import type { BootDevice, PowerAction, PowerDriver } from '../power/driver.ts';
import { powerAwareRebooter } from './power-rebooter.ts';

const node = (power?: Node['spec']['power']): Node => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Node',
  metadata: { name: 'n1.example' },
  spec: power === undefined ? {} : { power },
});

function recording(caps: PowerAction[]): { calls: string[]; driver: PowerDriver } {
  const calls: string[] = [];
  const driver: PowerDriver = {
    name: 'ipmi',
    capabilities: new Set(caps),
    on: () => Promise.resolve(void calls.push('on')),
    off: () => Promise.resolve(void calls.push('off')),
    cycle: () => Promise.resolve(void calls.push('cycle')),
    status: () => Promise.resolve('on'),
    setNextBoot: (d: BootDevice) => Promise.resolve(void calls.push(`next:${d}`)),
  };
  return { calls, driver };
}

describe('powerAwareRebooter', () => {
  const ssh = { reboot: () => Promise.resolve('rebooted over SSH') };
  const signal = new AbortController().signal;

  it('reboots over SSH a node with no power driver, or the ssh one, and asks no driver', async () => {
    const asked: string[] = [];
    const r = powerAwareRebooter((n) => {
      asked.push(n.metadata.name ?? '');
      return Promise.reject(new Error('not asked'));
    }, ssh);
    expect(await r.reboot(node(), signal)).toBe('rebooted over SSH');
    expect(await r.reboot(node({ driver: 'ssh' }), signal)).toBe('rebooted over SSH');
    expect(asked).toEqual([]);
  });

  it('sets network boot, then cycles, through the node power driver', async () => {
    const { calls, driver } = recording(['on', 'off', 'cycle', 'status', 'setNextBoot']);
    const r = powerAwareRebooter(() => Promise.resolve(driver), ssh);
    const how = await r.reboot(node({ driver: 'ipmi', address: '127.0.0.1:623' }), signal);
    expect(calls).toEqual(['next:network', 'cycle']);
    expect(how).toBe('power cycled via ipmi (127.0.0.1:623)');
  });

  it('cycles a driver that cannot set the next boot device', async () => {
    const { calls, driver } = recording(['cycle']);
    const r = powerAwareRebooter(() => Promise.resolve(driver), ssh);
    await r.reboot(node({ driver: 'lab', address: '/run/qmp.sock' }), signal);
    expect(calls).toEqual(['cycle']);
  });

  it('fails with the driver error (no SSH fallback: the site asked for its BMC)', async () => {
    const r = powerAwareRebooter(
      () => Promise.reject(new Error('credentials Secret x missing')),
      ssh,
    );
    await expect(
      r.reboot(node({ driver: 'redfish', address: 'https://bmc' }), signal),
    ).rejects.toThrow(/credentials Secret x missing/);
  });
});
