/**
 * Shared pieces of the power driver tests: a PowerService on the real API server, a log sink, the
 * BMC drivers' boot scenario against a qemu VM and their Events-without-secrets check.
 */
import { CoreV1Api } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { Node } from '../../generated/crowbar.ts';
import { EventRecorder } from '../../operator/events.ts';
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { PowerService } from '../../operator/power/controller.ts';
import type { PowerDriver, PowerState } from '../../operator/power/driver.ts';
import { expect } from 'vitest';
import { eventually } from './context.ts';
import { firstBootLine } from './ipmi-bmc.ts';

export const POWER_NS = 'default';

export interface PowerRig {
  service: PowerService;
  core: CoreV1Api;
  /** Every log line the service wrote (debug level and up). */
  logs: string[];
  registry: Registry;
  createSecret(name: string, data: Record<string, string>): Promise<void>;
  deleteSecret(name: string): Promise<void>;
  createNode(name: string, power: NonNullable<Node['spec']['power']>): Promise<Node>;
  /** Events on the Node: reason and message, oldest first. */
  events(node: string): Promise<{ reason: string; type: string; message: string }[]>;
}

export function powerRig(
  client: CrowbarClient,
  extra: Partial<ConstructorParameters<typeof PowerService>[0]> = {},
): PowerRig {
  const core = client.kc.makeApiClient(CoreV1Api);
  const logs: string[] = [];
  const log = pino(
    { level: 'debug' },
    {
      write: (s: string) => {
        logs.push(s);
      },
    },
  );
  const registry = new Registry();
  const recorder = new EventRecorder(client.kc, registry, log, {
    namespace: POWER_NS,
    component: 'crowbar-operator',
  });
  const service = new PowerService({
    core,
    recorder,
    log,
    registry,
    namespace: POWER_NS,
    ...extra,
  });
  return {
    service,
    core,
    logs,
    registry,
    createSecret: async (name, data) => {
      await core.createNamespacedSecret({
        namespace: POWER_NS,
        body: { metadata: { name }, stringData: data },
      });
    },
    deleteSecret: async (name) => {
      await core.deleteNamespacedSecret({ name, namespace: POWER_NS }).catch(() => undefined);
    },
    createNode: async (name, power) =>
      client.create('Node', { metadata: { name }, spec: { power } }, 'power-test'),
    events: async (node) => {
      const l = await core.listNamespacedEvent({
        namespace: POWER_NS,
        fieldSelector: `involvedObject.name=${node}`,
      });
      return l.items
        .sort((a, b) =>
          String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)),
        )
        .map((e) => ({ reason: e.reason ?? '', type: e.type ?? '', message: e.message ?? '' }));
    },
  };
}

/** What the power tests' simulated BMCs (ipmi-bmc.ts, sushy.ts) tell of their qemu VM. */
export interface VmBmc {
  vmRunning(): boolean;
  /** One entry per power on: its boot order (n = network, c = disk). */
  boots(): string[];
}

/**
 * The BMC drivers' shared scenario against a BMC wired to a qemu VM: from off, next boot from
 * the network and on (SeaBIOS boots the NIC's ROM), off, next boot from the disk and on (it boots
 * the disk: the network boot was for one boot only), next boot network and a cycle, off.
 * After each action it polls the driver's status until it shows the new state: ipmi_sim powers
 * on after a one-second timer on a cycle, and the Redfish emulator applies a change only when
 * the system is next read.
 */
export async function bootScenario(driver: PowerDriver, bmc: VmBmc, serial: string): Promise<void> {
  const settle = async (want: PowerState): Promise<void> => {
    await eventually(`power ${want}`, async () => (await driver.status()) === want, 60_000, 250);
  };
  expect(await driver.status()).toBe('off');
  expect(bmc.vmRunning()).toBe(false);

  await driver.setNextBoot('network');
  await driver.on();
  await settle('on');
  await eventually('the VM to run', () => bmc.vmRunning(), 30_000);
  expect(bmc.boots()).toEqual(['n']);
  // SeaBIOS tried the NIC's iPXE ROM first: a network boot.
  expect(await eventually('the VM to boot', () => firstBootLine(serial), 60_000)).toBe('ROM');

  await driver.off();
  await settle('off');
  await eventually('the VM to stop', () => !bmc.vmRunning(), 30_000);

  // The boot device was for one boot only; disk now, and explicitly.
  await driver.setNextBoot('disk');
  await driver.on();
  await settle('on');
  await eventually('the VM to start', () => bmc.boots().length === 2, 30_000);
  expect(bmc.boots()).toEqual(['n', 'c']);
  expect(await eventually('the VM to boot', () => firstBootLine(serial), 60_000)).toBe('Hard Disk');

  await driver.setNextBoot('network');
  await driver.cycle();
  await settle('on');
  await eventually('the VM to restart', () => bmc.boots().length === 3, 30_000);
  expect(bmc.boots()[2]).toBe('n');

  await driver.off();
  await settle('off');
  await eventually('the VM to stop', () => !bmc.vmRunning(), 30_000);
}

/**
 * Waits for the PowerOn, PowerOff, PowerCycle and NextBoot Events on `node` and checks that no
 * Event, the Node, nor any log line of the service holds one of `secrets`. Returns the Events.
 */
export async function eventsWithoutSecrets(
  rig: PowerRig,
  client: CrowbarClient,
  node: string,
  secrets: readonly string[],
): Promise<{ reason: string; type: string; message: string }[]> {
  const events = await eventually(
    'the Events',
    async () => {
      const ev = await rig.events(node);
      const reasons = new Set(ev.map((e) => e.reason));
      return ['PowerOn', 'PowerOff', 'PowerCycle', 'NextBoot'].every((r) => reasons.has(r)) && ev;
    },
    30_000,
  );
  const n = await client.get('Node', node);
  const text = [JSON.stringify(events), JSON.stringify(n), rig.logs.join('')].join('\n');
  expect(rig.logs.some((l) => l.includes('power action done'))).toBe(true);
  for (const s of secrets) expect(text).not.toContain(s);
  return events;
}
