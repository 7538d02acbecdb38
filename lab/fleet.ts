/**
 * The lab's machines: each is a network namespace on the lab bridge (test/harness/netns.ts) whose
 * eth0 carries its Node's MAC and no address. The lab's admin Network is the bridge's /24, so the
 * machines boot as bare metal does: their Nodes are bound to `network-admin`, the allocator gives
 * each an admin address, and the DHCP sidecar on the bridge hands that reservation to the
 * machine's DHCP client (busybox udhcpc, kept running so it renews). Only then does the machine's
 * OpenSSH sshd start on the leased address, and aliveness is the operator's (ping + root SSH echo).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CrowbarClient } from '../operator/kube/client.ts';
import { isConflict } from '../operator/kube/errors.ts';
import {
  createLabNetwork,
  reapStaleLabs,
  type LabMachine,
  type LabNetwork,
} from '../test/harness/netns.ts';
import { generateKeyPair, startSshd, type KeyPair, type Sshd } from '../test/harness/sshd.ts';
import { startProcess, waitFor, type Started } from '../test/harness/process.ts';

/**
 * Namespace prefix of the lab's fleet: `make lab-down` removes what carries it. One lab per
 * machine uses the default; a second one beside it (the lab's own integration test while a person
 * has `make lab` up) sets CROWBAR_LAB_PREFIX, as it sets CROWBAR_LAB_DIR.
 */
export const FLEET_PREFIX = process.env['CROWBAR_LAB_PREFIX'] ?? 'cblab';
/** The Network the fleet boots from: the lab examples' admin network, on the lab bridge. */
export const ADMIN_NETWORK = 'admin';
/** The address block the lab examples are written for; the lab serves them on its bridge's /24. */
export const EXAMPLE_PREFIX = '192.168.124.';
const FM = 'crowbar-lab';

/** What a machine's DHCP client was given (udhcpc's environment for `bound`/`renew`). */
export interface Lease {
  ip: string;
  mask: string;
  router: string;
  dns: string;
  hostname: string;
  domain: string;
  serverid: string;
  lease: string;
}

export interface Fleet {
  lab: LabNetwork;
  /** Node name → its machine. */
  machines: Map<string, LabMachine>;
  /** Node name → its machine's sshd (once booted). */
  sshds: Map<string, Sshd>;
  /** Node name → the lease its DHCP client holds (once booted). */
  leases: Map<string, Lease>;
  /** The machines' DHCP clients (stopped with the fleet). */
  dhcpClients: Started[];
  stop(): Promise<void>;
}

/** Root's key for the lab (the operator gets it with --ssh-key-file). */
export async function labKey(dir: string): Promise<KeyPair> {
  mkdirSync(dir, { recursive: true });
  return generateKeyPair(dir, 'id_ed25519');
}

/** The resolver the lab machines use: the DNS sidecar on the lab's host address, port 53. */
export interface FleetResolver {
  /** The cluster domain, the machines' search domain. */
  search: string;
}

/**
 * A machine's /etc/resolv.conf: `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf over it
 * for every process it starts there (sshd, and so every SSH session), so the machine's own resolver
 * (getent, dig without @, the jigs' scripts) asks the DNS sidecar. resolv.conf has no port: the
 * sidecar must listen on 53.
 */
function writeResolvConf(ns: string, nameserver: string, r: FleetResolver): void {
  const dir = join('/etc/netns', ns);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'resolv.conf'), `nameserver ${nameserver}\nsearch ${r.search}\n`);
}

/**
 * The lab examples with their admin network moved onto the lab bridge: every address written as
 * 192.168.124.x becomes <bridge /24>.x (subnet, router = the host's end of the bridge, ranges,
 * hints), so the allocations the operator makes are addresses the machines can use.
 */
export function onLabSubnet<T>(objs: T[], subnet: string): T[] {
  const base = subnet.replace(/0\/24$/, '');
  if (!/^\d+\.\d+\.\d+\.$/.test(base)) throw new Error(`lab subnet ${subnet} is not a /24`);
  return objs.map((o) => JSON.parse(JSON.stringify(o).replaceAll(EXAMPLE_PREFIX, base)) as T);
}

/**
 * Creates one machine (namespace, bridge port, MAC) per node; nothing runs on them yet. With
 * `resolver`, each machine's resolver is the lab's host address (where `make lab` runs the DNS
 * sidecar).
 */
export async function startFleet(
  macs: ReadonlyMap<string, string>,
  resolver?: FleetResolver,
): Promise<Fleet> {
  await reapStaleLabs();
  const lab = await createLabNetwork({ prefix: FLEET_PREFIX });
  const machines = new Map<string, LabMachine>();
  const sshds = new Map<string, Sshd>();
  const clients: Started[] = [];
  const stop = async (): Promise<void> => {
    for (const s of sshds.values()) await s.cleanup().catch(() => undefined);
    for (const c of clients) await c.stop(5000).catch(() => undefined);
    await lab.destroy();
  };
  const fleet: Fleet = { lab, machines, sshds, leases: new Map(), dhcpClients: clients, stop };
  try {
    for (const [i, [name, mac]] of [...macs].entries()) {
      const machine = await lab.addMachine(`m${i + 1}`, mac);
      // Before sshd starts (bootFleet): it, and every session, sees the file from its start.
      if (resolver) writeResolvConf(machine.ns, lab.hostAddress, resolver);
      machines.set(name, machine);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return fleet;
}

/**
 * Binds `network-admin` to each fleet node and waits until each Node carries its admin IPv4
 * address (the allocation the DHCP sidecar will hand out). Returns node → address.
 */
export async function registerFleet(
  client: CrowbarClient,
  fleet: Fleet,
): Promise<Map<string, string>> {
  await waitFor(
    `role network-${ADMIN_NETWORK}`,
    async () => (await client.get('Role', `network-${ADMIN_NETWORK}`)) !== undefined,
    30_000,
  );
  for (const node of fleet.machines.keys()) {
    try {
      await client.create(
        'NodeRole',
        {
          metadata: { name: `network-${ADMIN_NETWORK}.${node}` },
          spec: { role: `network-${ADMIN_NETWORK}`, node, deployment: 'system' },
        },
        FM,
      );
    } catch (e) {
      if (!isConflict(e)) throw e;
    }
  }
  const addresses = new Map<string, string>();
  await waitFor(
    'the lab machines to have their admin addresses on their Nodes',
    async () => {
      for (const node of fleet.machines.keys()) {
        const n = await client.get('Node', node);
        const a = n?.status?.addresses?.find(
          (x) => x.network === ADMIN_NETWORK && /^\d+\.\d+\.\d+\.\d+\//.test(x.address),
        );
        if (!a) return false;
        addresses.set(node, a.address.split('/')[0] ?? '');
      }
      return true;
    },
    60_000,
    250,
  );
  return addresses;
}

/** udhcpc's script: configure the leased address (nothing else: the machines share /etc). */
const UDHCPC_SCRIPT = `#!/bin/sh
# Called by busybox udhcpc with deconfig|bound|renew|leasefail|nak (LEASE_FILE from the lab).
case "$1" in
  bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    printf 'ip=%s\\nmask=%s\\nrouter=%s\\ndns=%s\\nhostname=%s\\ndomain=%s\\nserverid=%s\\nlease=%s\\n' \\
      "$ip" "$mask" "$router" "$dns" "$hostname" "$domain" "$serverid" "$lease" > "$LEASE_FILE.tmp"
    mv "$LEASE_FILE.tmp" "$LEASE_FILE"
    ;;
esac
exit 0
`;

function readLease(file: string): Lease | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const kv = new Map(
    text
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
  );
  const g = (k: string): string => kv.get(k) ?? '';
  if (g('ip') === '') return undefined;
  return {
    ip: g('ip'),
    mask: g('mask'),
    router: g('router'),
    dns: g('dns'),
    hostname: g('hostname'),
    domain: g('domain'),
    serverid: g('serverid'),
    lease: g('lease'),
  };
}

/**
 * Boots the fleet: each machine's DHCP client (busybox udhcpc, foreground, renewing) asks the DHCP
 * sidecar on the bridge for an address; once it holds a lease, the machine's sshd starts on it.
 * Resolves when every machine has a lease and an sshd.
 */
export async function bootFleet(
  fleet: Fleet,
  key: KeyPair,
  dir: string,
  pidFile?: string,
): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const script = join(dir, 'udhcpc.sh');
  writeFileSync(script, UDHCPC_SCRIPT, { mode: 0o755 });
  await Promise.all(
    [...fleet.machines].map(async ([node, m]) => {
      const leaseFile = join(dir, `lease-${m.name}`);
      fleet.dhcpClients.push(
        startProcess(
          'ip',
          ['netns', 'exec', m.ns, 'busybox', 'udhcpc', '-f', '-i', 'eth0', '-s', script],
          join(dir, `udhcpc-${m.name}.log`),
          { env: { ...process.env, LEASE_FILE: leaseFile }, ...(pidFile ? { pidFile } : {}) },
        ),
      );
      let lease: Lease | undefined;
      await waitFor(
        `${node}'s machine to get a DHCP lease (see ${dir}/udhcpc-${m.name}.log)`,
        () => Promise.resolve((lease = readLease(leaseFile)) !== undefined),
        30_000,
      );
      if (!lease) throw new Error(`no lease for ${node}`);
      fleet.leases.set(node, lease);
      const sshdDir = join(dir, `sshd-${m.name}`);
      mkdirSync(sshdDir, { recursive: true });
      fleet.sshds.set(
        node,
        await startSshd({
          ns: m.ns,
          address: lease.ip,
          authorizedKeys: [key.publicKey],
          dir: sshdDir,
          quietRootShell: true,
        }),
      );
    }),
  );
}
