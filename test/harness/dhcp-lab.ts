/**
 * A provisioning network for DHCP tests: a server namespace holding a bridge (the sidecar's
 * interface) and client namespaces each joined to it by a veth with a chosen MAC. Nothing is
 * connected to the host's network; the sidecar reaches the test API server through the Unix
 * socket relay (dhcp-sidecar/relay.ts). Every namespace is named cbdhcp-<hex>-..., removed on
 * destroy() and, if the runner dies, by the exit hook.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DhcpSidecar } from './dhcp-sidecar.ts';
import { deleteNamespace, nsExec, run, type ExecOut } from './netns.ts';
import { startProcess, type Started } from './process.ts';

const live = new Set<string>();
let hooked = false;

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const ns of live) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
      } catch {
        // already gone
      }
    }
  });
}

export interface DhcpClientNs {
  ns: string;
  mac: string;
  exec(bin: string, args: readonly string[], timeoutMs?: number): Promise<ExecOut>;
}

export interface SidecarOptions {
  kubeconfig: string;
  apiServer: string;
  network: string;
  extraArgs?: string[];
}

export interface DhcpLab {
  id: string;
  serverNs: string;
  /** e.g. 10.252.7 */
  net: string;
  serverIp: string;
  dir: string;
  fileRoot: string;
  addClient(name: string, mac: string): Promise<DhcpClientNs>;
  /** A tap device on the bridge, for a qemu VM run inside the server namespace. */
  addTap(name: string): Promise<void>;
  startSidecar(o: SidecarOptions): Promise<Started>;
  /** Starts a process inside the server namespace, stopped by destroy(). */
  startInServerNs(bin: string, args: string[], log: string): Started;
  /** The sidecar's log so far (for failure messages). */
  log(): string;
  /** GET from inside a client namespace with curl; returns stdout. */
  curl(client: DhcpClientNs, args: readonly string[]): Promise<string>;
  destroy(): Promise<void>;
}

/**
 * A per-run IPv6 hextet from a lab's id, as addresses print it: four digits, the first 8-f. The id
 * itself (random hex) printed `06a6` where the address reads `6a6`, so one run in sixteen compared
 * the wrong text.
 */
export function idHextet(id: string): string {
  return (0x8000 | (parseInt(id, 16) & 0x7fff)).toString(16);
}

export async function createDhcpLab(): Promise<DhcpLab> {
  hook();
  const id = randomBytes(2).toString('hex');
  const serverNs = `cbdhcp-${id}-s`;
  const net = `10.252.${1 + (randomBytes(1)[0]! % 250)}`;
  const serverIp = `${net}.1`;
  const dir = mkdtempSync(join(tmpdir(), `cbdhcp-${id}-`));
  const fileRoot = join(dir, 'files');
  mkdirSync(fileRoot);
  const namespaces = [serverNs];
  const procs: Started[] = [];
  const sidecar = new DhcpSidecar({ ns: serverNs, serverIp, dir, fileRoot, id: `sidecar-${id}` });
  const extra: Started[] = [];
  live.add(serverNs);
  await run('ip', ['netns', 'add', serverNs]);
  await run('ip', ['-n', serverNs, 'link', 'set', 'lo', 'up']);
  await run('ip', ['-n', serverNs, 'link', 'add', 'br0', 'type', 'bridge', 'forward_delay', '0']);
  await run('ip', ['-n', serverNs, 'addr', 'add', `${serverIp}/24`, 'dev', 'br0']);
  await run('ip', ['-n', serverNs, 'link', 'set', 'br0', 'up']);
  let k = 0;
  const lab: DhcpLab = {
    id,
    serverNs,
    net,
    serverIp,
    dir,
    fileRoot,
    async addClient(name, mac) {
      const ns = `cbdhcp-${id}-${name}`;
      const port = `p${k++}`;
      namespaces.push(ns);
      live.add(ns);
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await run('ip', [
        '-n',
        serverNs,
        'link',
        'add',
        port,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        ns,
      ]);
      await run('ip', ['-n', serverNs, 'link', 'set', port, 'master', 'br0', 'up']);
      await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', mac, 'up']);
      return { ns, mac, exec: (bin, args, t) => nsExec(ns, bin, args, t) };
    },
    async addTap(name) {
      await run('ip', ['-n', serverNs, 'tuntap', 'add', 'dev', name, 'mode', 'tap']);
      await run('ip', ['-n', serverNs, 'link', 'set', name, 'master', 'br0', 'up']);
    },
    async startSidecar(o) {
      const p = await sidecar.start({ ...o, args: o.extraArgs ?? [] });
      procs.push(p);
      return p;
    },
    startInServerNs(bin, args, log) {
      const p = startProcess('ip', ['netns', 'exec', serverNs, bin, ...args], log);
      extra.push(p);
      return p;
    },
    log: () => sidecar.log(),
    async curl(client, args) {
      return (await client.exec('curl', ['-sS', '-m', '20', ...args], 30_000)).stdout;
    },
    async destroy() {
      for (const p of [...extra, ...procs]) await p.stop(5000);
      sidecar.close();
      for (const ns of namespaces.reverse()) {
        await deleteNamespace(ns);
        live.delete(ns);
      }
      // Keep the last sidecar log for post-mortems of a failed run.
      try {
        copyFileSync(join(dir, 'sidecar.log'), join(tmpdir(), 'cbdhcp-last-sidecar.log'));
      } catch {
        // no log
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return lab;
}
