import { describe, expect, it } from 'vitest';
import type { Node } from '../../generated/crowbar.ts';
import type { BootDevice, PowerAction, PowerDriver } from '../power/driver.ts';
import { installPower, powerRebooter } from './power-rebooter.ts';

const node = (power?: Node['spec']['power']): Node => ({
  apiVersion: 'crowbar.dev/v1alpha1',
  kind: 'Node',
  metadata: { name: 'n1.example' },
  spec: power === undefined ? { bootEnv: 'x-install' } : { bootEnv: 'x-install', power },
});

function recording(
  caps: PowerAction[],
  name: PowerDriver['name'] = 'ipmi',
): { calls: string[]; asked: Node[]; driverFor: (n: Node) => Promise<PowerDriver> } {
  const calls: string[] = [];
  const asked: Node[] = [];
  const driver: PowerDriver = {
    name,
    capabilities: new Set(caps),
    on: () => Promise.resolve(void calls.push('on')),
    off: () => Promise.resolve(void calls.push('off')),
    cycle: () => Promise.resolve(void calls.push('cycle')),
    status: () => Promise.resolve('on'),
    setNextBoot: (d: BootDevice) => Promise.resolve(void calls.push(`next:${d}`)),
  };
  return {
    calls,
    asked,
    driverFor: (n) => {
      asked.push(n);
      return Promise.resolve(driver);
    },
  };
}

describe('powerRebooter', () => {
  const signal = new AbortController().signal;

  it('gives a node without spec.power the ssh driver, and keeps the rest of the node', async () => {
    expect(installPower(node())).toEqual({ driver: 'ssh' });
    expect(installPower(node({ driver: 'lab', address: '/q' }))).toEqual({
      driver: 'lab',
      address: '/q',
    });
    const r = recording(['cycle'], 'ssh');
    const how = await powerRebooter(r.driverFor).reboot(node(), signal);
    expect(r.asked).toHaveLength(1);
    expect(r.asked[0]?.spec).toEqual({ bootEnv: 'x-install', power: { driver: 'ssh' } });
    expect(r.calls).toEqual(['cycle']);
    expect(how).toBe('rebooted over SSH; the Node has no spec.power');
  });

  it('reboots a node whose spec.power is ssh through that driver', async () => {
    const r = recording(['cycle'], 'ssh');
    const how = await powerRebooter(r.driverFor).reboot(node({ driver: 'ssh' }), signal);
    expect(r.calls).toEqual(['cycle']);
    expect(how).toBe('rebooted over SSH');
  });

  it('sets network boot, then cycles, through the node power driver', async () => {
    const r = recording(['on', 'off', 'cycle', 'status', 'setNextBoot']);
    const how = await powerRebooter(r.driverFor).reboot(
      node({ driver: 'ipmi', address: '127.0.0.1:623' }),
      signal,
    );
    expect(r.calls).toEqual(['next:network', 'cycle']);
    expect(how).toBe('power cycled via ipmi (127.0.0.1:623)');
  });

  it('cycles a driver that cannot set the next boot device', async () => {
    const r = recording(['cycle'], 'lab');
    await powerRebooter(r.driverFor).reboot(node({ driver: 'lab', address: '/run/q' }), signal);
    expect(r.calls).toEqual(['cycle']);
  });

  it('does nothing once the run is cancelled', async () => {
    const r = recording(['cycle', 'setNextBoot']);
    const ac = new AbortController();
    ac.abort(new Error('run cancelled'));
    await expect(
      powerRebooter(r.driverFor).reboot(node({ driver: 'ipmi', address: 'b' }), ac.signal),
    ).rejects.toThrow(/run cancelled/);
    expect(r.calls).toEqual([]);
  });

  it('fails with the driver error (no SSH fallback: the site asked for its BMC)', async () => {
    const r = powerRebooter(() => Promise.reject(new Error('credentials Secret x missing')));
    await expect(
      r.reboot(node({ driver: 'redfish', address: 'https://bmc' }), signal),
    ).rejects.toThrow(/credentials Secret x missing/);
  });
});
