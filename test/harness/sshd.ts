/**
 * A real OpenSSH sshd for a lab node: runs `sshd -D -e -f <config>` inside the node's network
 * namespace, listening on the node's address, with its own ed25519 host key and an
 * authorized_keys file for root, all in a temp directory. Stop, restart and host-key rotation are
 * there for aliveness and TOFU tests.
 */
import { createConnection } from 'node:net';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './netns.ts';
import { startProcess, waitFor, type Started } from './process.ts';

const SSHD = '/usr/sbin/sshd';
const KEYGEN = 'ssh-keygen';

export interface KeyPair {
  /** Private key file (OpenSSH format). */
  path: string;
  privateKey: Buffer;
  /** The `ssh-ed25519 AAAA... comment` line. */
  publicKey: string;
  /** `SHA256:...` as `ssh-keygen -l` prints it. */
  fingerprint: string;
}

/** Generates an unencrypted ed25519 key pair at `<dir>/<name>`. */
export async function generateKeyPair(dir: string, name: string): Promise<KeyPair> {
  const path = join(dir, name);
  rmSync(path, { force: true });
  rmSync(`${path}.pub`, { force: true });
  await run(KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path]);
  const { stdout } = await run(KEYGEN, ['-l', '-E', 'sha256', '-f', `${path}.pub`]);
  const fingerprint = stdout.split(' ')[1] ?? '';
  return {
    path,
    privateKey: readFileSync(path),
    publicKey: readFileSync(`${path}.pub`, 'utf8').trim(),
    fingerprint,
  };
}

export interface SshdOptions {
  /** Network namespace to run in (a LabNode's ns). */
  ns: string;
  /** Address to listen on (a LabNode's address). */
  address: string;
  port?: number;
  /** Public key lines allowed to log in as root. */
  authorizedKeys: readonly string[];
  /** Working directory; a fresh temp dir by default (removed by `cleanup`). */
  dir?: string;
  /** Extra sshd_config lines. */
  extraConfig?: readonly string[];
  /**
   * Hide root's ~/.bashrc from this sshd's sessions (an empty file bind-mounted over it in the
   * private mount namespace `ip netns exec` makes). sshd runs every command through root's login
   * shell, and bash sources ~/.bashrc under sshd; on hosts where it runs `pyenv init` that costs
   * ~0.5 s per session and would dominate jig timings. Only this sshd's sessions are affected.
   */
  quietRootShell?: boolean;
}

export interface Sshd {
  ns: string;
  address: string;
  port: number;
  dir: string;
  logPath: string;
  /** The current host key. */
  hostKey: KeyPair;
  running(): boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** New host key, sshd restarted; resolves with the new fingerprint. */
  rotateHostKey(): Promise<string>;
  log(): string;
  /** Stops sshd and removes its directory. */
  cleanup(): Promise<void>;
}

let versionCache: [number, number] | undefined;

async function sshdVersion(): Promise<[number, number]> {
  if (versionCache) return versionCache;
  // `sshd -V` prints the version on stderr and exits non-zero on older releases.
  const out = await run(SSHD, ['-V']).then(
    (r) => r.stderr + r.stdout,
    (e: unknown) => (e as Error).message,
  );
  const m = /OpenSSH_(\d+)\.(\d+)/.exec(out);
  versionCache = m ? [Number(m[1]), Number(m[2])] : [0, 0];
  return versionCache;
}

/** Waits until something at address:port speaks SSH (sends its banner). */
export function sshBanner(address: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: address, port, timeout: timeoutMs });
    const done = (v: boolean): void => {
      sock.destroy();
      resolve(v);
    };
    sock.once('data', (d: Buffer) => {
      done(d.toString('latin1').startsWith('SSH-'));
    });
    sock.once('timeout', () => {
      done(false);
    });
    sock.once('error', () => {
      done(false);
    });
  });
}

/** Starts sshd for a lab node and waits until it answers. */
export async function startSshd(o: SshdOptions): Promise<Sshd> {
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  chmodSync('/run/sshd', 0o755);
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'cbt-sshd-'));
  const port = o.port ?? 22;
  const logPath = join(dir, 'sshd.log');
  const config = join(dir, 'sshd_config');
  const authorized = join(dir, 'authorized_keys');
  writeFileSync(authorized, o.authorizedKeys.map((k) => `${k}\n`).join(''), { mode: 0o600 });
  let hostKey = await generateKeyPair(dir, 'ssh_host_ed25519_key');
  const [major, minor] = await sshdVersion();
  const lines = [
    `ListenAddress ${o.address}:${port}`,
    `HostKey ${hostKey.path}`,
    `AuthorizedKeysFile ${authorized}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'UseDNS no',
    'PrintMotd no',
    'LogLevel VERBOSE',
    'LoginGraceTime 30',
    'MaxStartups 200:30:400',
    'MaxSessions 32',
    'Subsystem sftp internal-sftp',
    // OpenSSH 9.8 penalises sources that fail auth; tests fail auth on purpose.
    ...(major > 9 || (major === 9 && minor >= 8) ? ['PerSourcePenalties no'] : []),
    ...(o.extraConfig ?? []),
  ];
  writeFileSync(config, `${lines.join('\n')}\n`);
  await run(SSHD, ['-t', '-f', config]);

  let proc: Started | undefined;
  const running = (): boolean =>
    proc !== undefined && proc.proc.exitCode === null && proc.proc.signalCode === null;

  const start = async (): Promise<void> => {
    if (running()) return;
    const rc = '/root/.bashrc';
    const quiet = o.quietRootShell === true && existsSync(rc);
    if (quiet) writeFileSync(join(dir, 'empty-bashrc'), '');
    const args = quiet
      ? [
          'netns',
          'exec',
          o.ns,
          '/bin/sh',
          '-c',
          'mount --bind "$1" "$2" && exec "$0" -D -e -f "$3"',
          SSHD,
          join(dir, 'empty-bashrc'),
          rc,
          config,
        ]
      : ['netns', 'exec', o.ns, SSHD, '-D', '-e', '-f', config];
    proc = startProcess('ip', args, logPath);
    const p = proc;
    await waitFor(
      `sshd on ${o.address}:${port} in ${o.ns}`,
      async () => {
        if (p.proc.exitCode !== null)
          throw new Error(`sshd exited: ${readFileSync(logPath, 'utf8')}`);
        return sshBanner(o.address, port);
      },
      10_000,
      50,
    );
  };
  const stop = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (p) await p.stop(5000);
    // Wait until nothing listens any more (bounded).
    await waitFor(
      `sshd on ${o.address}:${port} to stop`,
      async () => !(await sshBanner(o.address, port, 300)),
      5000,
      50,
    );
  };

  await start();
  const sshd: Sshd = {
    ns: o.ns,
    address: o.address,
    port,
    dir,
    logPath,
    get hostKey() {
      return hostKey;
    },
    running,
    start,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    rotateHostKey: async () => {
      await stop();
      hostKey = await generateKeyPair(dir, 'ssh_host_ed25519_key');
      await start();
      return hostKey.fingerprint;
    },
    log: () => {
      try {
        return readFileSync(logPath, 'utf8');
      } catch {
        return '';
      }
    },
    cleanup: async () => {
      await stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return sshd;
}
