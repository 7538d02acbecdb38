/**
 * The install flow's restart (§8.5 step 3), always through the PowerService: every Node gets its
 * power driver (`spec.power`), and a Node without one gets the `ssh` driver, the reboot through
 * its running system (the discovery image's sshd, with root's key and the host key recorded on
 * the Node). A driver that can pick the next boot device is set to boot from the network once
 * before the cycle, so a machine whose firmware boots its disk first still asks for the
 * installer; a machine whose system hangs, or that has no sshd yet, is restarted by its BMC.
 * Every power action is an Event on the Node (PowerCycle, NextBoot; PowerFailed as a Warning).
 */
import type { Node } from '../../generated/crowbar.ts';
import type { PowerDriverFor } from '../power/controller.ts';
import type { Rebooter } from './os-install.ts';

/** The power spec the install flow uses for `node`: its own, or the ssh driver. */
export function installPower(node: Readonly<Node>): NonNullable<Node['spec']['power']> {
  return node.spec.power ?? { driver: 'ssh' };
}

export function powerRebooter(power: PowerDriverFor): Rebooter {
  return {
    async reboot(node: Readonly<Node>, signal: AbortSignal): Promise<string> {
      const spec = installPower(node);
      const driver = await power({ ...node, spec: { ...node.spec, power: spec } });
      signal.throwIfAborted();
      if (driver.capabilities.has('setNextBoot')) await driver.setNextBoot('network');
      signal.throwIfAborted();
      await driver.cycle();
      if (spec.driver === 'ssh')
        return node.spec.power
          ? 'rebooted over SSH'
          : 'rebooted over SSH; the Node has no spec.power';
      return `power cycled via ${spec.driver}${spec.address ? ` (${spec.address})` : ''}`;
    },
  };
}
