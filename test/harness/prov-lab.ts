/**
 * A provisioning lab for end-to-end tests: a lab network (netns.ts: a hub namespace with a bridge,
 * the root namespace on it at .1 so the operator reaches the machines and they reach its API),
 * the DHCP/TFTP/HTTP boot sidecar in the hub namespace at .2 (reaching the API server through the
 * Unix-socket relay), tap devices on the bridge for qemu VMs run in the hub namespace, and the
 * discovery image (tools/discovery-image/build.sh, cached in ~/.cache/crowbar/discovery) under
 * the sidecar's file root at disc/. Namespaces are named pro-<hex>-...; destroy() removes all.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DhcpSidecar, type SidecarRun } from './dhcp-sidecar.ts';
import { createLabNetwork, run, type LabNetwork } from './netns.ts';
import { startProcess, type Started } from './process.ts';

const ROOT = join(import.meta.dirname, '..', '..');
/** The discovery image's cache (build.sh's own default, CROWBAR_DISCOVERY_DIR overrides it). */
export const DISCOVERY_DIR =
  process.env['CROWBAR_DISCOVERY_DIR'] ?? join(homedir(), '.cache', 'crowbar', 'discovery');

/** Builds the discovery image unless cached (same recipe as `make discovery-image`). */
export function buildDiscoveryImage(): void {
  execFileSync(join(ROOT, 'tools', 'discovery-image', 'build.sh'), [DISCOVERY_DIR], {
    stdio: 'ignore',
    timeout: 300_000,
  });
}

export interface ProvLab {
  id: string;
  lab: LabNetwork;
  /** e.g. 10.251.7 */
  net: string;
  /** The operator's address on the bridge (the root namespace's end). */
  hostIp: string;
  /** The sidecar's address. */
  serverIp: string;
  dir: string;
  fileRoot: string;
  addTap(name: string): Promise<void>;
  startSidecar(o: SidecarRun): Promise<Started>;
  startInHub(bin: string, args: string[], log: string): Started;
  sidecarLog(): string;
  destroy(): Promise<void>;
}

/**
 * `discovery: false` leaves the discovery image out of the file root, for tests whose machines
 * never network-boot (the install-flow chaos test's are namespaces with a BMC).
 */
export async function createProvLab(o: { discovery?: boolean } = {}): Promise<ProvLab> {
  const id = randomBytes(2).toString('hex');
  const lab = await createLabNetwork({ prefix: `pro-${id}` });
  const net = lab.hostAddress.replace(/\.1$/, '');
  const serverIp = `${net}.2`;
  const dir = mkdtempSync(join(tmpdir(), `pro-${id}-`));
  const fileRoot = join(dir, 'files');
  mkdirSync(join(fileRoot, 'disc'), { recursive: true });
  const procs: Started[] = [];
  const sidecar = new DhcpSidecar({
    ns: lab.hubNs,
    serverIp,
    dir,
    fileRoot,
    id: `sidecar-pro-${id}`,
  });
  try {
    await run('ip', ['-n', lab.hubNs, 'addr', 'add', `${serverIp}/24`, 'dev', 'br0']);
    if (o.discovery ?? true)
      for (const f of ['vmlinuz', 'initrd.gz'])
        copyFileSync(join(DISCOVERY_DIR, f), join(fileRoot, 'disc', f));
  } catch (e) {
    await lab.destroy();
    throw e;
  }
  const p: ProvLab = {
    id,
    lab,
    net,
    hostIp: lab.hostAddress,
    serverIp,
    dir,
    fileRoot,
    async addTap(name) {
      await run('ip', ['-n', lab.hubNs, 'tuntap', 'add', 'dev', name, 'mode', 'tap']);
      await run('ip', ['-n', lab.hubNs, 'link', 'set', name, 'master', 'br0', 'up']);
    },
    async startSidecar(o) {
      const s = await sidecar.start(o);
      procs.push(s);
      return s;
    },
    startInHub(bin, args, log) {
      const s = startProcess('ip', ['netns', 'exec', lab.hubNs, bin, ...args], log);
      procs.push(s);
      return s;
    },
    sidecarLog: () => sidecar.log(),
    async destroy() {
      try {
        for (const s of procs.reverse()) await s.stop(5000);
        sidecar.close();
      } finally {
        try {
          await lab.destroy();
        } finally {
          for (const f of ['sidecar.log'])
            try {
              copyFileSync(join(dir, f), join(tmpdir(), `pro-last-${f}`));
            } catch {
              // none
            }
          rmSync(dir, { recursive: true, force: true });
        }
      }
    },
  };
  return p;
}
