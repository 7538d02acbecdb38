/**
 * The `os-install` jig of the built-in destructive role `provisioner-os-install` (ARCHITECTURE.md
 * "Provisioning, without the races"; CROWBAR-MODEL.md §8.5 with acknowledgements instead of
 * sleeps):
 *
 * 1. set the Node's desired boot environment (`spec.bootEnv`) to the installer, `target_os` from
 *    the run's data (the role's template says `debian-12-install`);
 * 2. wait until the DHCP/HTTP boot sidecar has acknowledged exactly that on the Node's status
 *    (`status.bootEnv.applied` = target, `generation` >= the generation of our write): only then
 *    would the machine's next network boot get the installer;
 * 3. restart the machine through its power driver (./power-rebooter.ts: `spec.power`, or the
 *    `ssh` driver's reboot for a Node without one).
 *
 * The installer then fetches its per-node files from the provisioner API and calls back when it
 * is done (./api.ts); the role is destructive, so when the installed node comes back alive the
 * annealer does not run this again, and the roles below it run on the installed system.
 * Each step is an Event on the Node and a line in the run's log.
 */
import type { Node } from '../../generated/crowbar.ts';
import type { Recorder } from '../events.ts';
import type { Jig, JigResult, JigRun } from '../jigs/types.ts';
import { sleep } from '../jigs/types.ts';
import type { CrowbarClient } from '../kube/client.ts';
import type { Logger } from '../log.ts';

export const OS_INSTALL_JIG = 'os-install';
export const OS_INSTALL_ROLE = 'provisioner-os-install';
const INSTALL_BOOTENV = /^[a-z0-9][-a-z0-9.]*-install$/;

/** How the machine is restarted into its new boot environment. */
export interface Rebooter {
  /** Restarts `node`; resolves once the restart was asked for (not when it is done). */
  reboot(node: Readonly<Node>, signal: AbortSignal): Promise<string>;
}

export interface OsInstallDeps {
  client: CrowbarClient;
  /** The Node as the informer cache has it now. */
  getNode(name: string): Readonly<Node> | undefined;
  rebooter: Rebooter;
  recorder: Recorder;
  fieldManager: string;
  log: Logger;
  /** How long to wait for the sidecar's acknowledgement (default 10 min). */
  ackTimeoutMs?: number;
  /** Poll period of the cache while waiting (default 200 ms). */
  pollMs?: number;
}

/** The installer boot environment of a run's data, or a message saying what is wrong. */
export function targetOs(input: Record<string, unknown>): string | { error: string } {
  const t = input['target_os'];
  if (typeof t !== 'string' || !INSTALL_BOOTENV.test(t) || t.length > 63)
    return {
      error: `target_os must name an installer boot environment such as debian-12-install, got ${JSON.stringify(t)}`,
    };
  return t;
}

/** Whether the sidecar has applied `target` for the spec generation `generation` or later. */
export function acknowledged(node: Readonly<Node> | undefined, target: string, generation: number) {
  const b = node?.status?.bootEnv;
  return b?.applied === target && (b.generation ?? 0) >= generation;
}

export function osInstallJig(d: OsInstallDeps): Jig {
  const log = d.log.child({ jig: OS_INSTALL_JIG });
  return {
    name: OS_INSTALL_JIG,
    async run(run: JigRun): Promise<JigResult> {
      const name = run.node.metadata.name ?? '';
      const ev = { kind: 'Node', name, uid: run.node.metadata.uid };
      const lines: string[] = [];
      const say = (reason: string, message: string): void => {
        lines.push(`${new Date().toISOString()} ${message}`);
        d.recorder.normal(ev, reason, message);
        log.info({ node: name, noderole: run.noderole.metadata.name, reason }, message);
      };
      const target = targetOs(run.input);
      if (typeof target !== 'string') return { ok: false, message: target.error };
      const patched = await d.client.mergePatch(
        'Node',
        name,
        { spec: { bootEnv: target } },
        d.fieldManager,
      );
      const generation = patched.metadata.generation ?? 0;
      say('InstallRequested', `boot environment set to ${target} (generation ${generation})`);
      const deadline = Date.now() + (d.ackTimeoutMs ?? 600_000);
      while (!acknowledged(d.getNode(name), target, generation)) {
        if (Date.now() > deadline)
          return {
            ok: false,
            message: `the DHCP/HTTP boot sidecar did not acknowledge boot environment ${target} of ${name} within ${Math.round((d.ackTimeoutMs ?? 600_000) / 1000)} s: is it running and serving the node's network? (kubectl get cbnode ${name} -o jsonpath='{.status.bootEnv}')`,
            logTail: lines.join('\n'),
          };
        await sleep(d.pollMs ?? 200, run.signal);
      }
      const by = d.getNode(name)?.status?.bootEnv?.by ?? 'the boot sidecar';
      say('BootEnvAcknowledged', `${by} serves ${target} to ${name}`);
      try {
        const how = await d.rebooter.reboot(d.getNode(name) ?? run.node, run.signal);
        say('Rebooting', `rebooting into ${target} (${how})`);
      } catch (e) {
        return {
          ok: false,
          message: `cannot reboot ${name} into ${target}: ${(e as Error).message}`,
          logTail: lines.join('\n'),
        };
      }
      return {
        ok: true,
        wall: { provisioner: { target_os: target, bootEnvGeneration: generation } },
        logTail: lines.join('\n'),
      };
    },
  };
}
