/**
 * The ssh power driver: a reboot through the node's own sshd, with the script jig's SSH plumbing
 * (root's key, trust-on-first-use host keys). It can only reboot a running machine: power on,
 * power off (it could not come back) and the next boot device need a BMC.
 */
import { SshError, connect, exec } from '../jigs/script/ssh.ts';
import { PowerError, unsupported, type PowerAction, type PowerDriver } from './driver.ts';

/**
 * Detached so the command returns before the machine goes down (the reply is not lost): a
 * subshell that ignores SIGHUP (the session's end) waits a second, then reboots. Plain POSIX sh:
 * the discovery image's busybox has no `nohup`, and no systemd.
 */
export const REBOOT_COMMAND =
  '/bin/sh -c \'( trap "" HUP; sleep 1; systemctl reboot 2>/dev/null || reboot ) >/dev/null 2>&1 </dev/null & echo rebooting\'';

export interface SshPowerTarget {
  node: string;
  /** The node's admin address. */
  host: string | undefined;
  port?: number;
  privateKey: () => Promise<Buffer>;
  expectedHostKey?: string | undefined;
  timeoutMs?: number;
  /**
   * Replaces {@link REBOOT_COMMAND}. For tests only: their sshd "machines" are network
   * namespaces of the test host, where a real reboot would reboot the host.
   */
  command?: string;
}

export function sshDriver(t: SshPowerTarget): PowerDriver {
  const why = 'it reboots through the running OS; set spec.power to a BMC driver (ipmi, redfish)';
  return {
    name: 'ssh',
    capabilities: new Set<PowerAction>(['cycle']),
    on: () => unsupported('ssh', 'on', why),
    off: () => unsupported('ssh', 'off', why),
    status: () => unsupported('ssh', 'status', why),
    setNextBoot: () => unsupported('ssh', 'setNextBoot', why),
    cycle: async () => {
      if (!t.host)
        throw new PowerError(
          'config',
          `node ${t.node} has no admin address in status.addresses to reboot it over SSH`,
        );
      let session;
      try {
        session = await connect({
          node: t.node,
          host: t.host,
          ...(t.port === undefined ? {} : { port: t.port }),
          privateKey: await t.privateKey(),
          expectedHostKey: t.expectedHostKey,
          readyTimeoutMs: t.timeoutMs ?? 10_000,
        });
      } catch (e) {
        const kind =
          e instanceof SshError && (e.kind === 'auth' || e.kind === 'host-key')
            ? 'auth'
            : 'unreachable';
        throw new PowerError(kind, `ssh reboot of ${t.node}: ${(e as Error).message}`, {
          cause: e,
        });
      }
      try {
        const r = await exec(session, t.command ?? REBOOT_COMMAND, { maxStdout: 4096 });
        if (r.code !== 0)
          throw new PowerError(
            'refused',
            `ssh reboot of ${t.node} exited ${String(r.code)}: ${r.stderr.toString().trim()}`,
          );
      } finally {
        session.close();
      }
    },
  };
}
