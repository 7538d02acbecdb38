/**
 * A provisioning lab for end-to-end tests and bench-provision: a lab network (netns.ts: a hub namespace with a bridge,
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
import type { CrowbarClient } from '../../operator/kube/client.ts';
import { adminNetwork, DhcpSidecar, type SidecarRun } from './dhcp-sidecar.ts';
import { createLabNetwork, run, type LabNetwork } from './netns.ts';
import { startOperator, type OperatorProc } from './operator.ts';
import { issueLeaf, makeCa } from './pki.ts';
import { freePort, startProcess, type Started } from './process.ts';
import { generateKeyPair, type KeyPair } from './sshd.ts';

const ROOT = join(import.meta.dirname, '..', '..');
/** The discovery image's cache (build.sh's own default, CROWBAR_DISCOVERY_DIR overrides it). */
export const DISCOVERY_DIR =
  process.env['CROWBAR_DISCOVERY_DIR'] ?? join(homedir(), '.cache', 'crowbar', 'discovery');

/** The discovery image's files (tools/discovery-image/build.sh). */
export const DISCOVERY_FILES = ['vmlinuz', 'vmlinuz-virt', 'initrd.gz'] as const;

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
      for (const f of DISCOVERY_FILES)
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

/**
 * The discovery BootEnv's spec: the discovery image (tools/discovery-image) registering with the
 * provisioner API at `apiUrl`. One content for `make lab` (the sledgehammer BootEnv), the
 * provisioning tests and bench-provision, so they boot the same thing.
 */
export function discoveryBootEnv(apiUrl: string, extraArgs = ''): Record<string, unknown> {
  return {
    description: 'The discovery image (tools/discovery-image): registers the machine.',
    kernel: 'disc/vmlinuz',
    initrds: ['disc/initrd.gz'],
    // The image's cloud kernel for virtio NICs (ADR 0032); the agent sends a machine back to
    // the generic one when that kernel cannot see all its disks and NICs.
    variants: [{ name: 'virtio', nicVendors: ['1af4'], kernel: 'disc/vmlinuz-virt' }],
    // no_timer_check: TCG on a loaded machine can fail the kernel's IO-APIC timer check.
    // quiet, edd=off: no kernel chatter on the serial console and no BIOS disk probe before the
    // kernel unpacks, each CPU a TCG machine spends before the agent runs (ADR 0027).
    kernelArgs: `initrd={{initrd}} console=ttyS0,115200 no_timer_check quiet edd=off crowbar.mac={{mac}} crowbar.variant={{variant}} crowbar.api=${apiUrl}${extraArgs ? ` ${extraArgs}` : ''}`,
  };
}

export interface ProvisioningOptions {
  client: CrowbarClient;
  kubeconfig: string;
  /** The API server's URL (the sidecar reaches it through its relay). */
  apiServer: string;
  fieldManager: string;
  /** Names this set-up's CA and is the operator's identity prefix. */
  name: string;
  network: string;
  domain: string;
  /** The provisioning Network's host range (last octets); the pool is .100-.150. */
  hostRange?: [number, number];
  /**
   * The discovery BootEnv this set-up creates and the operator and sidecar use; none for
   * labs whose machines never network-boot (the node API then serves plain HTTP: those machines
   * have no boot sidecar's CA).
   */
  discovery?: { bootEnv: string; kernelArgs?: string };
}

/** A provisioning lab with its Network, node API PKI and discovery BootEnv made. */
export interface Provisioning {
  lab: ProvLab;
  /** The operator's SSH key (root on the machines). */
  key: KeyPair;
  apiPort: number;
  /** The node API as the machines reach it. */
  apiUrl: string;
  /** The node API's CA certificate file (TLS only: with `discovery`). */
  apiCa: string;
  /**
   * Starts the operator with this lab's flags and `args` after them; resolves once it has made
   * the Network's role (it leads and its controllers run).
   */
  startOperator(o: {
    identity: string;
    args?: string[];
    env?: NodeJS.ProcessEnv;
  }): Promise<OperatorProc>;
  /**
   * Starts the boot sidecar on the lab bridge for the Network, with the discovery BootEnv, the
   * node API's CA, and router advertisements without M/O (no DHCPv6 server on this link: iPXE
   * stops its IPv6 configuration at them instead of waiting 15.75 s, ADR 0027; `ra: false`
   * leaves them out, to measure the difference); `args` after.
   */
  startSidecar(args?: string[], ra?: boolean): Promise<Started>;
  /** Deletes the discovery BootEnv and the Network, then destroys the lab. */
  destroy(): Promise<void>;
}

/**
 * The set-up the provisioning tests and bench-provision share: the lab, the operator's key, the
 * node API's port and PKI (its leaf names the lab's host address), the admin Network and the
 * discovery BootEnv. The caller adds its own objects, then starts the operator and the sidecar.
 */
export async function setUpProvisioning(o: ProvisioningOptions): Promise<Provisioning> {
  const lab = await createProvLab({ discovery: o.discovery !== undefined });
  try {
    const key = await generateKeyPair(lab.dir, 'root');
    const apiPort = await freePort();
    const tls = o.discovery !== undefined;
    const apiUrl = `${tls ? 'https' : 'http'}://${lab.hostIp}:${String(apiPort)}`;
    let apiCa = '';
    let tlsArgs = ['--api-allow-plain-http=true'];
    if (tls) {
      // The node API over HTTPS, as everywhere: its CA reaches the VMs with their kernel (ADR 0019).
      const pki = join(lab.dir, 'api-pki');
      apiCa = makeCa(pki, `/CN=${o.name}-node-api-ca`).crt;
      const leaf = issueLeaf(pki, 'node-api', '/CN=localhost', true, [lab.hostIp]);
      tlsArgs = [`--api-tls-cert=${leaf.crt}`, `--api-tls-key=${leaf.key}`];
    }
    const [h0, h1] = o.hostRange ?? [160, 199];
    await o.client.create(
      'Network',
      adminNetwork(o.network, lab.net, { dhcp: [100, 150], host: [h0, h1] }),
      o.fieldManager,
    );
    if (o.discovery)
      await o.client.create(
        'BootEnv',
        {
          metadata: { name: o.discovery.bootEnv },
          spec: discoveryBootEnv(apiUrl, o.discovery.kernelArgs),
        },
        o.fieldManager,
      );
    const disc = o.discovery ? [`--discovery-bootenv=${o.discovery.bootEnv}`] : [];
    return {
      lab,
      key,
      apiPort,
      apiUrl,
      apiCa,
      async startOperator(s) {
        const op = await startOperator({
          kubeconfig: o.kubeconfig,
          logDir: lab.dir,
          identity: s.identity,
          args: [
            `--ssh-key-file=${key.path}`,
            `--api-addr=${lab.hostIp}:${String(apiPort)}`,
            ...tlsArgs,
            `--domain=${o.domain}`,
            `--provision-network=${o.network}`,
            ...disc,
            `--provisioner-url=${apiUrl}`,
            ...(s.args ?? []),
          ],
          ...(s.env ? { env: s.env } : {}),
        });
        for (let t = 0; !(await o.client.get('Role', `network-${o.network}`)); t++) {
          if (t > 600) {
            await op.stop();
            throw new Error(`role network-${o.network} did not appear within 60 s; see ${op.log}`);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
        return op;
      },
      startSidecar(args = [], ra = true) {
        return lab.startSidecar({
          kubeconfig: o.kubeconfig,
          apiServer: o.apiServer,
          network: o.network,
          args: [
            ...(o.discovery ? ['--discovery-bootenv', o.discovery.bootEnv] : []),
            ...(tls ? ['--api-ca-file', apiCa] : []),
            ...(ra ? ['--ra-interface', 'br0', '--ra-no-dhcp6'] : []),
            ...args,
          ],
        });
      },
      async destroy() {
        try {
          if (o.discovery)
            await o.client.delete('BootEnv', o.discovery.bootEnv).catch(() => undefined);
          await o.client.delete('Network', o.network).catch(() => undefined);
        } finally {
          await lab.destroy();
        }
      },
    };
  } catch (e) {
    await lab.destroy();
    throw e;
  }
}
