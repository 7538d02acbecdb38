/**
 * A lab network of network namespaces, for tests and the lab: one "hub" namespace holding a
 * bridge, one namespace per node with a veth into the bridge, and one veth from the root
 * namespace into the bridge so that processes in the root namespace (the operator, the tests)
 * reach every node's address. Addresses come from a /24 in 10.251.0.0/16 that the lab picks
 * (one not already on this host).
 *
 *   root ns: <prefix>up = 10.251.S.1/24 ──veth──┐
 *   hub ns:  br0 ── up0, v<k>...                 │
 *   node ns: eth0 = 10.251.S.(10+k)/24 ──veth───┘ (via the hub's bridge)
 *
 * Everything global is a namespace whose name starts with the lab's unique prefix; the root-side
 * veth disappears with the hub namespace. Deleting the namespaces removes the whole lab. Each
 * lab writes an owner file (its pid and namespaces) so a later lab can reap labs whose runner was
 * killed before it could clean up. Nodes get no default route: they only reach the lab subnet.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { NetworkSpec } from '../../generated/crowbar.ts';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const OWNERS = '/run/crowbar-test-labs';
const IP = 'ip';

export interface ExecOut {
  stdout: string;
  stderr: string;
}

/** Runs a program (no shell) and resolves with its output; rejects with stderr on failure. */
export function run(bin: string, args: readonly string[], timeoutMs = 30_000): Promise<ExecOut> {
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      args,
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new Error(`${bin} ${args.join(' ')} failed: ${stderr.trim() || err.message}`, {
              cause: err,
            }),
          );
          return;
        }
        resolve({ stdout, stderr });
      },
    );
  });
}

/** Runs `bin args...` inside network namespace `ns` (`ip netns exec`, no shell). */
export function nsExec(
  ns: string,
  bin: string,
  args: readonly string[],
  timeoutMs = 30_000,
): Promise<ExecOut> {
  return run(IP, ['netns', 'exec', ns, bin, ...args], timeoutMs);
}

/** A machine on the lab bridge with a chosen MAC and no address: it asks DHCP for one. */
export interface LabMachine {
  name: string;
  /** The machine's network namespace. */
  ns: string;
  /** eth0's MAC. */
  mac: string;
  exec(bin: string, args: readonly string[], timeoutMs?: number): Promise<ExecOut>;
}

export interface LabNode {
  name: string;
  /** The node's network namespace. */
  ns: string;
  /** Its address on the lab subnet (no prefix length). */
  address: string;
  /** Its address with prefix length, as Node status.addresses carries it. */
  cidr: string;
  exec(bin: string, args: readonly string[], timeoutMs?: number): Promise<ExecOut>;
}

/**
 * The lab subnet as an unmanaged Network: a `host` range of .10-.250, so that machines get their
 * addresses only as their hints (or bindings) ask. The lab and the tests register it alike.
 */
export function labNetworkSpec(subnet: string, description?: string): NetworkSpec {
  const base = subnet.replace(/0\/24$/, '');
  return {
    category: 'unmanaged',
    ...(description === undefined ? {} : { description }),
    subnet,
    ranges: [{ name: 'host', first: `${base}10`, last: `${base}250` }],
  };
}

export interface LabNetwork {
  /** Unique prefix of every namespace of this lab (`cbt-<hex4>`). */
  prefix: string;
  hubNs: string;
  /** The lab /24, e.g. 10.251.37.0/24. */
  subnet: string;
  /** The root namespace's address on the lab (10.251.S.1). */
  hostAddress: string;
  nodes: ReadonlyMap<string, LabNode>;
  /** Adds a node namespace with the next free address. `name` is a short label (a-z0-9-). */
  addNode(name: string): Promise<LabNode>;
  /** Adds a namespace whose eth0 has `mac` and no address (a machine that boots by DHCP). */
  addMachine(name: string, mac: string): Promise<LabMachine>;
  /** Removes a node or a machine. */
  removeNode(name: string): Promise<void>;
  /** An address in the lab subnet that no node has (for unreachable-host tests). */
  unusedAddress(): string;
  destroy(): Promise<void>;
}

/** Namespaces of labs not yet destroyed, removed synchronously if the process exits first. */
const liveNamespaces = new Set<string>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.once('exit', () => {
    for (const ns of liveNamespaces) {
      try {
        execFileSync(IP, ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
      } catch {
        // reapStaleLabs() gets it next time
      }
    }
  });
}

interface Owner {
  pid: number;
  namespaces: string[];
}

function ownerPath(prefix: string): string {
  return join(OWNERS, `${prefix}.json`);
}

function writeOwner(prefix: string, namespaces: string[]): void {
  mkdirSync(OWNERS, { recursive: true });
  const o: Owner = { pid: process.pid, namespaces };
  writeFileSync(ownerPath(prefix), JSON.stringify(o));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kills every process in `ns` and deletes it; quiet when it is already gone. */
export async function deleteNamespace(ns: string): Promise<void> {
  try {
    const { stdout } = await run(IP, ['netns', 'pids', ns]);
    for (const p of stdout.split('\n').map((s) => Number(s.trim()))) {
      if (Number.isInteger(p) && p > 1 && p !== process.pid) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  } catch {
    // no such namespace
  }
  try {
    await run(IP, ['netns', 'del', ns]);
  } catch (e) {
    if (!/No such file|not found|Invalid/.test((e as Error).message)) throw e;
  }
  // Files `ip netns exec` bind-mounts over /etc (a lab machine's resolv.conf) go with it.
  rmSync(join('/etc/netns', ns), { recursive: true, force: true });
}

/** Removes labs left behind by runners that died (their owner pid is gone). */
export async function reapStaleLabs(): Promise<string[]> {
  let files: string[];
  try {
    files = readdirSync(OWNERS).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const reaped: string[] = [];
  for (const f of files) {
    const path = join(OWNERS, f);
    let o: Owner;
    try {
      o = JSON.parse(readFileSync(path, 'utf8')) as Owner;
    } catch {
      continue;
    }
    if (pidAlive(o.pid)) continue;
    const prefix = f.replace(/\.json$/, '');
    await run(IP, ['link', 'del', `${prefix}up`]).catch(() => undefined);
    for (const ns of o.namespaces) await deleteNamespace(ns);
    rmSync(path, { force: true });
    reaped.push(prefix);
  }
  return reaped;
}

/** A 10.251.S.0/24 with S not used by any address or route on this host. */
async function pickSubnet(): Promise<number> {
  const { stdout: addrs } = await run(IP, ['-4', '-o', 'addr', 'show']);
  const { stdout: routes } = await run(IP, ['-4', 'route', 'show', 'table', 'all']);
  const used = new Set<number>();
  for (const m of `${addrs}\n${routes}`.matchAll(/\b10\.251\.(\d+)\./g)) used.add(Number(m[1]));
  const free = Array.from({ length: 254 }, (_, i) => i + 1).filter((s) => !used.has(s));
  if (free.length === 0) throw new Error('no free /24 left in 10.251.0.0/16 for a lab network');
  return free[randomBytes(1)[0]! % free.length]!;
}

/** Creates a lab network. Always pair with `destroy()` (in afterAll or a finally). */
export async function createLabNetwork(opts: { prefix?: string } = {}): Promise<LabNetwork> {
  await reapStaleLabs();
  const prefix = opts.prefix ?? `cbt-${randomBytes(2).toString('hex')}`;
  if (!/^[a-z0-9-]{1,10}$/.test(prefix))
    throw new Error(`lab prefix ${prefix} must be 1-10 of [a-z0-9-]`);
  const hubNs = `${prefix}-hub`;
  const uplink = `${prefix}up`; // root-namespace interface: at most 15 characters
  const namespaces = [hubNs];
  const nodes = new Map<string, LabNode>();
  const used = new Set<number>();
  writeOwner(prefix, namespaces);
  hookExit();
  liveNamespaces.add(hubNs);
  const s = await pickSubnet();
  const net = `10.251.${s}`;
  let destroyed = false;

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    const errors: unknown[] = [];
    // The namespace's own teardown is asynchronous; deleting the root-side veth is not.
    await run(IP, ['link', 'del', uplink]).catch(() => undefined);
    for (const ns of [...namespaces].reverse()) {
      try {
        await deleteNamespace(ns);
        liveNamespaces.delete(ns);
      } catch (e) {
        errors.push(e);
      }
    }
    rmSync(ownerPath(prefix), { force: true });
    if (errors.length > 0) throw new AggregateError(errors, `lab ${prefix}: cleanup failed`);
  };

  try {
    await run(IP, ['netns', 'add', hubNs]);
    await run(IP, ['-n', hubNs, 'link', 'set', 'lo', 'up']);
    await run(IP, ['-n', hubNs, 'link', 'add', 'br0', 'type', 'bridge']);
    await run(IP, ['-n', hubNs, 'link', 'set', 'br0', 'up']);
    await run(IP, ['link', 'add', uplink, 'type', 'veth', 'peer', 'name', 'up0', 'netns', hubNs]);
    await run(IP, ['-n', hubNs, 'link', 'set', 'up0', 'master', 'br0', 'up']);
    await run(IP, ['addr', 'add', `${net}.1/24`, 'dev', uplink]);
    await run(IP, ['link', 'set', uplink, 'up']);
  } catch (e) {
    await destroy().catch(() => undefined);
    throw e;
  }

  /** Port index of each node and machine on the bridge (veth v<k>; nodes get .10+k). */
  const slots = new Map<string, number>();
  const machines = new Map<string, LabMachine>();

  /** A namespace named after `name` joined to the bridge by a veth; eth0 up, no address. */
  const plug = async (name: string, mac?: string): Promise<{ ns: string; k: number }> => {
    if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(name))
      throw new Error(`lab node name ${name} must be [a-z0-9-]`);
    if (slots.has(name)) throw new Error(`lab node ${name} exists`);
    let k = 0;
    while (used.has(k)) k++;
    if (k > 230) throw new Error('lab network is full (231 nodes)');
    used.add(k);
    slots.set(name, k);
    const ns = `${prefix}-${name}`;
    const port = `v${k}`;
    namespaces.push(ns);
    liveNamespaces.add(ns);
    writeOwner(prefix, namespaces);
    await run(IP, ['netns', 'add', ns]);
    await run(IP, ['-n', ns, 'link', 'set', 'lo', 'up']);
    await run(IP, [
      '-n',
      hubNs,
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
    await run(IP, ['-n', hubNs, 'link', 'set', port, 'master', 'br0', 'up']);
    if (mac !== undefined) await run(IP, ['-n', ns, 'link', 'set', 'eth0', 'address', mac]);
    await run(IP, ['-n', ns, 'link', 'set', 'eth0', 'up']);
    return { ns, k };
  };

  const addNode = async (name: string): Promise<LabNode> => {
    const { ns, k } = await plug(name);
    const address = `${net}.${10 + k}`;
    await run(IP, ['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    const node: LabNode = {
      name,
      ns,
      address,
      cidr: `${address}/24`,
      exec: (bin, args, timeoutMs) => nsExec(ns, bin, args, timeoutMs),
    };
    nodes.set(name, node);
    return node;
  };

  const addMachine = async (name: string, mac: string): Promise<LabMachine> => {
    const { ns } = await plug(name, mac);
    const m: LabMachine = {
      name,
      ns,
      mac,
      exec: (bin, args, timeoutMs) => nsExec(ns, bin, args, timeoutMs),
    };
    machines.set(name, m);
    return m;
  };

  const removeNode = async (name: string): Promise<void> => {
    const n = nodes.get(name) ?? machines.get(name);
    const k = slots.get(name);
    if (!n || k === undefined) return;
    await deleteNamespace(n.ns); // the hub-side veth goes with it
    nodes.delete(name);
    machines.delete(name);
    slots.delete(name);
    used.delete(k);
    namespaces.splice(namespaces.indexOf(n.ns), 1);
    liveNamespaces.delete(n.ns);
    writeOwner(prefix, namespaces);
  };

  return {
    prefix,
    hubNs,
    subnet: `${net}.0/24`,
    hostAddress: `${net}.1`,
    nodes,
    addNode,
    addMachine,
    removeNode,
    unusedAddress: () => `${net}.250`,
    destroy,
  };
}

/** Creates a lab with one node, runs `fn`, and always destroys the lab. */
export async function withNodeNamespace<T>(
  name: string,
  fn: (node: LabNode, lab: LabNetwork) => Promise<T>,
): Promise<T> {
  const lab = await createLabNetwork();
  try {
    return await fn(await lab.addNode(name), lab);
  } finally {
    await lab.destroy();
  }
}
