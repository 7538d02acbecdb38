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
 *
 * Every step is journalled on the Node (`status.install`, ADR 0022) before it is taken, keyed by
 * the noderole run, so the jig is resumable: an operator killed mid-run re-adopts the same run
 * and `resumeStep` picks up where the journal says, never asking for a second power cycle once
 * the first is known to have happened or the installer has shown up.
 */
import type { Node } from '../../generated/crowbar.ts';
import type { Recorder } from '../events.ts';
import type { Jig, JigResult, JigRun } from '../jigs/types.ts';
import { sleep } from '../jigs/types.ts';
import type { CrowbarClient } from '../kube/client.ts';
import type { Logger } from '../log.ts';
import { failpoint } from '../failpoints.ts';

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
  /**
   * A resumed run whose journal says a power cycle was asked for but not that it was done waits
   * this long (from the journalled request) for the installer to fetch its files before it cycles
   * again (default 15 min).
   */
  rebootEvidenceMs?: number;
}

export type InstallRecord = NonNullable<NonNullable<Node['status']>['install']>;

/**
 * What a run does, given the journal on its Node (pure; ADR 0022):
 * - `request`: no record of this run, or it only got as far as asking for the boot environment:
 *   set it (idempotent: the same value does not bump the generation), await the acknowledgement,
 *   power cycle;
 * - `confirm`: the run asked for a power cycle and died before the driver answered: whether the
 *   machine restarted is unknown, so wait for the installer's sign of life (a per-node file
 *   fetch, journalled by the provisioner API) until `deadline`, and cycle only if none comes
 *   (nothing destructive can have started: d-i and autoinstall fetch their per-node file before
 *   they touch a disk);
 * - `done`: the cycle was done (or the installer already fetched its files or called back):
 *   doing anything again would restart a running installation.
 */
export type ResumeStep =
  | { step: 'request' }
  | { step: 'confirm'; generation: number; cycles: number; deadline: number }
  | { step: 'done'; phase: InstallRecord['phase'] };

export function resumeStep(
  rec: Readonly<InstallRecord> | undefined,
  runId: string,
  target: string,
  evidenceMs: number,
): ResumeStep {
  if (rec?.run !== runId || rec.target !== target) return { step: 'request' };
  switch (rec.phase) {
    case 'rebooting':
      return {
        step: 'confirm',
        generation: rec.generation ?? 0,
        cycles: rec.cycles ?? 0,
        deadline: Date.parse(rec.at ?? '') + evidenceMs || 0,
      };
    case 'rebooted':
    case 'fetched':
    case 'installed':
      return { step: 'done', phase: rec.phase };
    default:
      return { step: 'request' };
  }
}

/** Whether the installer of `runId` has shown up since its power cycle (fetched or called back). */
export function installerSeen(rec: Readonly<InstallRecord> | undefined, runId: string): boolean {
  return rec?.run === runId && (rec.phase === 'fetched' || rec.phase === 'installed');
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
  const poll = d.pollMs ?? 200;
  return {
    name: OS_INSTALL_JIG,
    // Its journal is on the Node (status.install): a re-adopted run resumes from it.
    resumable: true,
    async run(run: JigRun): Promise<JigResult> {
      const name = run.node.metadata.name ?? '';
      const runId = `${run.noderole.metadata.name ?? ''}.run-${String(run.number)}`;
      const ev = { kind: 'Node', name, uid: run.node.metadata.uid };
      const lines: string[] = [];
      const say = (reason: string, message: string): void => {
        lines.push(`${new Date().toISOString()} ${message}`);
        d.recorder.normal(ev, reason, message);
        log.info({ node: name, noderole: run.noderole.metadata.name, reason }, message);
      };
      const fail = (message: string): JigResult => ({
        ok: false,
        message,
        logTail: lines.join('\n'),
      });
      const journal = async (rec: Omit<InstallRecord, 'run' | 'target' | 'at'>): Promise<void> => {
        await d.client.mergePatchStatus(
          'Node',
          name,
          { status: { install: { run: runId, target, at: new Date().toISOString(), ...rec } } },
          d.fieldManager,
        );
      };
      const target = targetOs(run.input);
      if (typeof target !== 'string') return { ok: false, message: target.error };
      const ok = (generation: number): JigResult => ({
        ok: true,
        wall: { provisioner: { target_os: target, bootEnvGeneration: generation } },
        logTail: lines.join('\n'),
      });
      // The journal as the API server has it: a stale cache could miss the last step.
      const fresh = await d.client.get('Node', name);
      if (!fresh) return { ok: false, message: `node ${name} does not exist` };
      const evidenceMs = d.rebootEvidenceMs ?? 900_000;
      const plan = resumeStep(fresh.status?.install, runId, target, evidenceMs);
      let generation: number;
      let cycles = 0;
      if (plan.step === 'done') {
        say(
          'InstallResumed',
          `run ${String(run.number)} resumed after an operator restart: the machine was already restarted into ${target} (${plan.phase}); not restarting it again`,
        );
        return ok(fresh.status?.install?.generation ?? 0);
      }
      if (plan.step === 'confirm') {
        generation = plan.generation;
        cycles = plan.cycles;
        say(
          'InstallResumed',
          `run ${String(run.number)} resumed after an operator restart that interrupted its power cycle: waiting until ${new Date(plan.deadline).toISOString()} for the installer of ${target} to fetch its files`,
        );
        while (Date.now() < plan.deadline) {
          if (installerSeen(d.getNode(name)?.status?.install, runId)) {
            say(
              'InstallerSeen',
              `the installer of ${target} fetched its files: the interrupted power cycle happened; not restarting ${name} again`,
            );
            return ok(generation);
          }
          await sleep(poll, run.signal);
        }
        if (installerSeen((await d.client.get('Node', name))?.status?.install, runId))
          return ok(generation);
        say(
          'RebootUnconfirmed',
          `no sign of the installer of ${target} within ${String(Math.round(evidenceMs / 1000))} s of the interrupted power cycle: restarting ${name} again`,
        );
      } else {
        await journal({ phase: 'requested' });
        failpoint('os-install/requested');
        const patched = await d.client.mergePatch(
          'Node',
          name,
          { spec: { bootEnv: target } },
          d.fieldManager,
        );
        generation = patched.metadata.generation ?? 0;
        say(
          'InstallRequested',
          `boot environment set to ${target} (generation ${String(generation)})`,
        );
        failpoint('os-install/bootenv-set');
      }
      const deadline = Date.now() + (d.ackTimeoutMs ?? 600_000);
      while (!acknowledged(d.getNode(name), target, generation)) {
        if (Date.now() > deadline)
          return fail(
            `the DHCP/HTTP boot sidecar did not acknowledge boot environment ${target} of ${name} within ${String(Math.round((d.ackTimeoutMs ?? 600_000) / 1000))} s: is it running and serving the node's network? (kubectl get cbnode ${name} -o jsonpath='{.status.bootEnv}')`,
          );
        await sleep(poll, run.signal);
      }
      const by = d.getNode(name)?.status?.bootEnv?.by ?? 'the boot sidecar';
      say('BootEnvAcknowledged', `${by} serves ${target} to ${name}`);
      failpoint('os-install/acknowledged');
      // Journalled before the driver is called: a restart in between must not cycle blindly.
      await journal({ phase: 'rebooting', generation, cycles: cycles + 1 });
      failpoint('os-install/rebooting');
      try {
        const how = await d.rebooter.reboot(d.getNode(name) ?? run.node, run.signal);
        failpoint('os-install/cycled');
        say('Rebooting', `rebooting into ${target} (${how})`);
      } catch (e) {
        return fail(`cannot reboot ${name} into ${target}: ${(e as Error).message}`);
      }
      // The installer may already have journalled `fetched`: do not move the journal backwards.
      if (!installerSeen((await d.client.get('Node', name))?.status?.install, runId))
        await journal({ phase: 'rebooted', generation, cycles: cycles + 1 });
      failpoint('os-install/rebooted');
      return ok(generation);
    },
  };
}
