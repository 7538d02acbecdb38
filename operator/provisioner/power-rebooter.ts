/**
 * The install flow's restart (§8.5 step 3): a Node with `spec.power` (ipmi, redfish, lab) is set
 * to boot from the network once and power cycled by its driver, so a machine whose installed
 * system hangs, or that has no sshd yet, is still restarted; any other Node is rebooted over SSH.
 * The `ssh` power driver is the SSH reboot itself, so it takes the SSH path too.
 */
import type { Node } from '../../generated/crowbar.ts';
import type { PowerDriverFor } from '../power/controller.ts';
import type { Rebooter } from './os-install.ts';

export function powerAwareRebooter(power: PowerDriverFor, ssh: Rebooter): Rebooter {
  return {
    async reboot(node: Readonly<Node>, signal: AbortSignal): Promise<string> {
      const spec = node.spec.power;
      if (spec === undefined || spec.driver === 'ssh') return ssh.reboot(node, signal);
      const driver = await power(node);
      signal.throwIfAborted();
      // Next boot from the network first: a machine whose firmware boots its disk first would
      // otherwise come back into the old system, never asking for the installer.
      if (driver.capabilities.has('setNextBoot')) await driver.setNextBoot('network');
      signal.throwIfAborted();
      await driver.cycle();
      return `power cycled via ${spec.driver}${spec.address ? ` (${spec.address})` : ''}`;
    },
  };
}
