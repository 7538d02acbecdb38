/**
 * The ipmi power driver: `ipmitool -I lanplus` against the machine's BMC. The password goes to
 * ipmitool through its environment (`-E` reads IPMI_PASSWORD), never its command line, so it does
 * not show in `ps` or in an error that quotes the command.
 */
import { execFile } from 'node:child_process';
import {
  PowerError,
  redact,
  type BootDevice,
  type PowerAction,
  type PowerCredentials,
  type PowerDriver,
  type PowerState,
} from './driver.ts';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a program without a shell; never rejects (the result says how it ended). */
export type ToolRunner = (
  bin: string,
  args: readonly string[],
  env: Readonly<Record<string, string>>,
  timeoutMs: number,
) => Promise<ToolResult>;

export const runTool: ToolRunner = (bin, args, env, timeoutMs) =>
  new Promise((resolve) => {
    execFile(
      bin,
      args,
      { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; killed?: boolean }) | null;
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : -1) : 0,
          stdout,
          stderr: e && typeof e.code !== 'number' && !stderr ? e.message : stderr,
          timedOut: e?.killed === true,
        });
      },
    );
  });

export interface IpmiTarget {
  /** host, host:port or [v6]:port (default port 623). */
  address: string;
  credentials: PowerCredentials;
  /** ipmitool binary; default `ipmitool` on PATH. */
  ipmitool?: string;
  /** Per-command deadline; default 30 s (ipmitool retries inside it). */
  timeoutMs?: number;
  run?: ToolRunner;
}

/** Splits an ipmi address into host and port. */
export function parseIpmiAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9][-A-Za-z0-9.]*))(?::([0-9]{1,5}))?$/.exec(
    address,
  );
  const host = m?.[1] ?? m?.[2];
  const port = m?.[3] === undefined ? 623 : Number(m[3]);
  if (!host || port < 1 || port > 65535)
    throw new PowerError(
      'config',
      `ipmi address ${JSON.stringify(address)} is not host, host:port or [ipv6]:port`,
    );
  return { host, port };
}

/** The ipmitool arguments for one action (no password: it travels in IPMI_PASSWORD). */
export function ipmitoolArgs(
  address: string,
  username: string,
  command: readonly string[],
  cipherSuite: number = CIPHER_SUITES[0],
): string[] {
  const { host, port } = parseIpmiAddress(address);
  // -N/-R: 2 s per try, 3 tries: a dead BMC fails in seconds, not ipmitool's default minute.
  return [
    '-I',
    'lanplus',
    '-H',
    host,
    '-p',
    String(port),
    '-U',
    username,
    '-E',
    '-N',
    '2',
    '-R',
    '3',
    '-C',
    String(cipherSuite),
    ...command,
  ];
}

/**
 * RMCP+ cipher suites tried in order (IPMI 2.0 §22.15.2): 17 (HMAC-SHA256, AES-128), then 3
 * (HMAC-SHA1, AES-128) for BMCs without SHA-256. Naming them skips ipmitool's own discovery,
 * which waits out its full retry budget on BMCs that do not answer Get Channel Cipher Suites.
 */
export const CIPHER_SUITES = [17, 3] as const;

/** ipmitool's complaint when a session could not be opened with a cipher suite. */
const SESSION_FAILED =
  /invalid (authentication|integrity|confidentiality) algorithm|Unable to establish/i;

/** `Chassis Power is on|off` → the state. */
export function parsePowerStatus(stdout: string): PowerState {
  const m = /Chassis Power is (on|off)/i.exec(stdout);
  return m?.[1] ? (m[1].toLowerCase() as PowerState) : 'unknown';
}

/** ipmitool's complaint → an error kind and a message that says what to check. */
export function classifyIpmiFailure(stderr: string): { kind: PowerError['kind']; hint: string } {
  if (/RAKP 2 HMAC|Invalid user name|unauthorized name|password/i.test(stderr))
    return { kind: 'auth', hint: 'the BMC refused the user name or password in the Secret' };
  if (/Unable to establish|Error: Unable|No response|timeout|Get Auth Capabilities/i.test(stderr))
    return {
      kind: 'unreachable',
      hint: 'the BMC opened no session: check spec.power.address and the username and password in the Secret',
    };
  if (/Insufficient privilege/i.test(stderr))
    return { kind: 'auth', hint: 'the BMC user lacks operator/administrator privilege' };
  return { kind: 'refused', hint: 'the BMC refused the command' };
}

const BOOTDEV: Record<BootDevice, string> = { network: 'pxe', disk: 'disk' };

export function ipmiDriver(t: IpmiTarget): PowerDriver {
  const run = t.run ?? runTool;
  const bin = t.ipmitool ?? 'ipmitool';
  const timeoutMs = t.timeoutMs ?? 30_000;
  let suite = 0;
  const call = async (action: PowerAction, command: readonly string[]): Promise<string> => {
    let r: ToolResult;
    for (;;) {
      const cs = CIPHER_SUITES[suite] ?? CIPHER_SUITES[0];
      const args = ipmitoolArgs(t.address, t.credentials.username, command, cs);
      r = await run(bin, args, { IPMI_PASSWORD: t.credentials.password }, timeoutMs);
      if (r.code === 0 || r.timedOut || !SESSION_FAILED.test(r.stderr)) break;
      if (suite + 1 >= CIPHER_SUITES.length) {
        suite = 0; // next call starts from the strongest suite again
        break;
      }
      suite += 1;
    }
    if (r.timedOut)
      throw new PowerError(
        'timeout',
        `ipmi ${action} on ${t.address}: ipmitool did not finish in ${timeoutMs} ms`,
      );
    if (r.code !== 0) {
      const tail = redact(r.stderr.trim() || r.stdout.trim(), t.credentials).slice(-400);
      const c = classifyIpmiFailure(r.stderr);
      throw new PowerError(c.kind, `ipmi ${action} on ${t.address} failed: ${c.hint} (${tail})`);
    }
    return r.stdout;
  };
  const status = async (): Promise<PowerState> =>
    parsePowerStatus(await call('status', ['chassis', 'power', 'status']));
  return {
    name: 'ipmi',
    capabilities: new Set<PowerAction>(['on', 'off', 'cycle', 'status', 'setNextBoot']),
    on: async () => {
      await call('on', ['chassis', 'power', 'on']);
    },
    off: async () => {
      await call('off', ['chassis', 'power', 'off']);
    },
    // IPMI 2.0 §28.3: a power cycle of a machine that is off has no effect on many BMCs;
    // powering it on is what the caller means.
    cycle: async () => {
      if ((await status()) === 'off') await call('cycle', ['chassis', 'power', 'on']);
      else await call('cycle', ['chassis', 'power', 'cycle']);
    },
    status,
    setNextBoot: async (device) => {
      await call('setNextBoot', ['chassis', 'bootdev', BOOTDEV[device]]);
    },
  };
}
