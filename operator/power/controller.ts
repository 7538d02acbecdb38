/**
 * The power hook the install flow calls: `powerDriverFor(node)` resolves the Node's
 * `spec.power` and its credentials Secret into a {@link PowerDriver} whose every action is logged
 * (without credentials), counted (`crowbar_power_actions_total`) and recorded as an Event on the
 * Node (`PowerOn`, `PowerOff`, `PowerCycle`, `NextBoot`; `PowerFailed` as a Warning).
 *
 *   const power = new PowerService({ core, recorder, log, registry, namespace, sshKey });
 *   const driver = await power.driverFor(node);   // rejects with a PowerError saying what to fix
 *   await driver.setNextBoot('network'); await driver.cycle();
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import { Counter, type Registry } from 'prom-client';
import type { Node } from '../../generated/crowbar.ts';
import type { Recorder } from '../events.ts';
import { firstAdminAddress } from '../jigs/script/protocol.ts';
import type { SshKeySource } from '../jigs/script/wiring.ts';
import { apiMessage, isNotFound } from '../kube/errors.ts';
import type { Logger } from '../log.ts';
import {
  CREDENTIAL_KEYS,
  PowerError,
  checkPowerSpec,
  redact,
  type BootDevice,
  type PowerAction,
  type PowerCredentials,
  type PowerDriver,
} from './driver.ts';
import { ipmiDriver, type ToolRunner } from './ipmi.ts';
import { labDriver } from './lab.ts';
import { redfishDriver } from './redfish.ts';
import { sshDriver } from './ssh.ts';

export interface PowerServiceOptions {
  core: Pick<CoreV1Api, 'readNamespacedSecret'>;
  recorder: Recorder;
  log: Logger;
  registry?: Registry;
  /** The operator's namespace: credentials Secrets are read there (RBAC allows no other). */
  namespace: string;
  /** Root's SSH key, for the ssh driver. */
  sshKey?: SshKeySource;
  /**
   * Where the ssh driver connects when `spec.power.address` is empty (the operator passes the
   * script jig's choice, which knows Network categories); default the first address on the
   * network named `admin`.
   */
  sshAddress?: (node: Readonly<Node>) => string | undefined;
  sshPort?: number;
  /** Tests only: what the ssh driver runs instead of a reboot (see SshPowerTarget.command). */
  sshRebootCommand?: string;
  /** For tests: where ipmitool is and how it runs. */
  ipmitool?: string;
  runTool?: ToolRunner;
  timeoutMs?: number;
}

const REASON: Record<Exclude<PowerAction, 'status'>, string> = {
  on: 'PowerOn',
  off: 'PowerOff',
  cycle: 'PowerCycle',
  setNextBoot: 'NextBoot',
};

/** What an Event says for a successful action. */
export function actionMessage(
  action: Exclude<PowerAction, 'status'>,
  driver: string,
  address: string | undefined,
  device?: BootDevice,
): string {
  const via = `${driver}${address ? ` (${address})` : ''}`;
  switch (action) {
    case 'on':
      return `powered on via ${via}`;
    case 'off':
      return `powered off via ${via}`;
    case 'cycle':
      return driver === 'ssh' ? `rebooted over SSH` : `power cycled via ${via}`;
    case 'setNextBoot':
      return `next boot from ${device ?? 'network'} via ${via}`;
  }
}

export class PowerService {
  private readonly actions: Counter;
  private readonly o: PowerServiceOptions;
  constructor(o: PowerServiceOptions) {
    this.o = o;
    this.actions = new Counter({
      name: 'crowbar_power_actions_total',
      help: 'Power actions asked of power drivers, by driver, action and outcome (ok, error).',
      labelNames: ['driver', 'action', 'outcome'],
      registers: o.registry ? [o.registry] : [],
    });
  }

  /** Reads the credentials Secret named by the Node; errors say how to create it. */
  async credentials(node: Node): Promise<PowerCredentials | undefined> {
    const ref = node.spec.power?.credentialsSecret;
    if (!ref) return undefined;
    const ns = ref.namespace ?? this.o.namespace;
    const where = `${ns}/${ref.name}`;
    if (ns !== this.o.namespace)
      throw new PowerError(
        'credentials',
        `power credentials Secret ${where} is outside the operator's namespace ${this.o.namespace}: create it there`,
      );
    let s;
    try {
      s = await this.o.core.readNamespacedSecret({ name: ref.name, namespace: ns });
    } catch (e) {
      if (isNotFound(e))
        throw new PowerError(
          'credentials',
          `power credentials Secret ${where} not found: kubectl create secret generic ${ref.name} -n ${ns} --from-literal=username=<user> --from-literal=password=<password>`,
        );
      throw new PowerError('credentials', `cannot read Secret ${where}: ${apiMessage(e)}`, {
        cause: e,
      });
    }
    const get = (k: string): string | undefined => {
      const b64 = s.data?.[k];
      return b64 === undefined ? s.stringData?.[k] : Buffer.from(b64, 'base64').toString('utf8');
    };
    const username = get(CREDENTIAL_KEYS.username);
    const password = get(CREDENTIAL_KEYS.password);
    if (!username || password === undefined)
      throw new PowerError(
        'credentials',
        `power credentials Secret ${where} needs the keys ${CREDENTIAL_KEYS.username} and ${CREDENTIAL_KEYS.password}`,
      );
    return { username, password, ca: get(CREDENTIAL_KEYS.ca) };
  }

  /** The bare driver for a Node (no Events): what {@link driverFor} wraps. */
  async rawDriverFor(
    node: Node,
  ): Promise<{ driver: PowerDriver; creds: PowerCredentials | undefined }> {
    const c = checkPowerSpec(node);
    if (!c.ok) throw new PowerError('config', c.message);
    const p = c.power;
    const creds = await this.credentials(node);
    const timeouts = this.o.timeoutMs === undefined ? {} : { timeoutMs: this.o.timeoutMs };
    switch (p.driver) {
      case 'ipmi':
        return {
          driver: ipmiDriver({
            address: p.address ?? '',
            credentials: creds as PowerCredentials,
            ...timeouts,
            ...(this.o.ipmitool === undefined ? {} : { ipmitool: this.o.ipmitool }),
            ...(this.o.runTool === undefined ? {} : { run: this.o.runTool }),
          }),
          creds,
        };
      case 'redfish':
        return {
          driver: redfishDriver({
            address: p.address ?? '',
            credentials: creds as PowerCredentials,
            insecure: p.insecure === true,
            ...timeouts,
          }),
          creds,
        };
      case 'lab':
        return { driver: labDriver({ socket: p.address ?? '', ...timeouts }), creds };
      case 'ssh': {
        const key = this.o.sshKey;
        const name = node.metadata.name ?? '';
        return {
          driver: sshDriver({
            node: name,
            host: p.address ?? (this.o.sshAddress ?? firstAdminAddress)(node),
            ...(this.o.sshPort === undefined ? {} : { port: this.o.sshPort }),
            privateKey: () =>
              key
                ? key.get()
                : Promise.reject(
                    new PowerError('config', 'the operator has no SSH key (--ssh-key-secret)'),
                  ),
            expectedHostKey: node.status?.sshHostKey,
            ...(this.o.sshRebootCommand === undefined ? {} : { command: this.o.sshRebootCommand }),
          }),
          creds,
        };
      }
    }
  }

  /**
   * The driver for `node`, with every action logged, counted and recorded as an Event on the
   * Node. Rejects with a {@link PowerError} (Event `PowerFailed`) when `spec.power` or its Secret
   * is unusable.
   */
  async driverFor(node: Node): Promise<PowerDriver> {
    const name = node.metadata.name ?? '';
    const target = {
      kind: 'Node',
      apiVersion: 'crowbar.dev/v1alpha1',
      name,
      uid: node.metadata.uid,
    };
    const driverName = node.spec.power?.driver ?? 'none';
    const address = node.spec.power?.address;
    const log = this.o.log.child({ node: name, driver: driverName });
    let built;
    try {
      built = await this.rawDriverFor(node);
    } catch (e) {
      const msg = (e as Error).message;
      this.o.recorder.warning(target, 'PowerFailed', msg);
      log.warn({ err: { message: msg } }, 'power driver unusable');
      throw e;
    }
    const { driver, creds } = built;
    const wrap =
      <A extends unknown[], R>(
        action: PowerAction,
        fn: (...a: A) => Promise<R>,
      ): ((...a: A) => Promise<R>) =>
      async (...a: A) => {
        const device = action === 'setNextBoot' ? (a[0] as BootDevice) : undefined;
        log.debug({ action, device }, 'power action');
        try {
          const r = await fn(...a);
          this.actions.inc({ driver: driverName, action, outcome: 'ok' });
          if (action !== 'status') {
            const m = actionMessage(action, driverName, address, device);
            this.o.recorder.normal(target, REASON[action], m);
            log.info({ action, device }, 'power action done');
          }
          return r;
        } catch (e) {
          this.actions.inc({ driver: driverName, action, outcome: 'error' });
          // Driver errors are already free of credentials; redact once more for anything a
          // lower layer (a tool's output, a library's message) may have quoted.
          const msg = redact((e as Error).message, creds);
          this.o.recorder.warning(target, 'PowerFailed', `${action}: ${msg}`);
          log.warn({ action, err: { message: msg } }, 'power action failed');
          throw e;
        }
      };
    return {
      name: driver.name,
      capabilities: driver.capabilities,
      on: wrap('on', () => driver.on()),
      off: wrap('off', () => driver.off()),
      cycle: wrap('cycle', () => driver.cycle()),
      status: wrap('status', () => driver.status()),
      setNextBoot: wrap('setNextBoot', (d: BootDevice) => driver.setNextBoot(d)),
    };
  }
}

/** What the install flow holds: the Node's power driver, or a PowerError saying what to fix. */
export type PowerDriverFor = (node: Node) => Promise<PowerDriver>;

/** The install flow's hook: `const powerDriverFor = powerHook(service)`. */
export function powerHook(service: PowerService): PowerDriverFor {
  return (node) => service.driverFor(node);
}
