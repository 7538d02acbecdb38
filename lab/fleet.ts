/**
 * The lab's machines: each is a network namespace on a lab bridge with its own OpenSSH sshd
 * (test/harness/netns.ts and sshd.ts), reachable from this host at 10.251.S.(10+k). The fleet
 * registers each machine's address the way every address reaches a Node: an unmanaged Network
 * `lab-fleet` for the lab subnet, a `lab-fleet-v4addr` hint on the Node and its binding to
 * `network-lab-fleet`. Aliveness is then the operator's (ping + root SSH echo).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CrowbarClient } from '../operator/kube/client.ts';
import { isConflict } from '../operator/kube/errors.ts';
import {
  createLabNetwork,
  labNetworkSpec,
  reapStaleLabs,
  type LabNetwork,
} from '../test/harness/netns.ts';
import { generateKeyPair, startSshd, type KeyPair, type Sshd } from '../test/harness/sshd.ts';
import { waitFor } from '../test/harness/process.ts';

/**
 * Namespace prefix of the lab's fleet: `make lab-down` removes what carries it. One lab per
 * machine uses the default; a second one beside it (the lab's own integration test while a person
 * has `make lab` up) sets CROWBAR_LAB_PREFIX, as it sets CROWBAR_LAB_DIR.
 */
export const FLEET_PREFIX = process.env['CROWBAR_LAB_PREFIX'] ?? 'cblab';
export const FLEET_NETWORK = 'lab-fleet';
const FM = 'crowbar-lab';

export interface Fleet {
  lab: LabNetwork;
  /** Node name → its machine's sshd. */
  sshds: Map<string, Sshd>;
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
 * Creates one machine per node name and starts their sshds; with `resolver`, each machine's
 * resolver is the lab's host address (where `make lab` runs the DNS sidecar).
 */
export async function startFleet(
  nodes: readonly string[],
  key: KeyPair,
  dir: string,
  resolver?: FleetResolver,
): Promise<Fleet> {
  await reapStaleLabs();
  const lab = await createLabNetwork({ prefix: FLEET_PREFIX });
  const sshds = new Map<string, Sshd>();
  const stop = async (): Promise<void> => {
    for (const s of sshds.values()) await s.cleanup().catch(() => undefined);
    await lab.destroy();
  };
  try {
    for (const [i, name] of nodes.entries()) {
      const ln = await lab.addNode(`m${i + 1}`);
      // Before sshd starts: it (and every session) sees the file from its start.
      if (resolver) writeResolvConf(ln.ns, lab.hostAddress, resolver);
      const sshdDir = join(dir, `sshd-${ln.name}`);
      mkdirSync(sshdDir, { recursive: true });
      sshds.set(
        name,
        await startSshd({
          ns: ln.ns,
          address: ln.address,
          authorizedKeys: [key.publicKey],
          dir: sshdDir,
          quietRootShell: true,
        }),
      );
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { lab, sshds, stop };
}

/** The Network, hints and bindings that give each lab Node its machine's address. */
export async function registerFleet(client: CrowbarClient, fleet: Fleet): Promise<void> {
  const { lab } = fleet;
  try {
    await client.create(
      'Network',
      {
        metadata: { name: FLEET_NETWORK },
        spec: labNetworkSpec(
          lab.subnet,
          'The lab fleet: network namespaces on a bridge, one sshd each.',
        ),
      },
      FM,
    );
  } catch (e) {
    if (!isConflict(e)) throw e;
    await client.mergePatch('Network', FLEET_NETWORK, { spec: { subnet: lab.subnet } }, FM);
  }
  await waitFor(
    `role network-${FLEET_NETWORK}`,
    async () => (await client.get('Role', `network-${FLEET_NETWORK}`)) !== undefined,
    30_000,
  );
  for (const [node, sshd] of fleet.sshds) {
    await client.mergePatch(
      'Node',
      node,
      { spec: { hints: { [`${FLEET_NETWORK}-v4addr`]: sshd.address } } },
      FM,
    );
    try {
      await client.create(
        'NodeRole',
        {
          metadata: { name: `network-${FLEET_NETWORK}.${node}` },
          spec: { role: `network-${FLEET_NETWORK}`, node, deployment: 'system' },
        },
        FM,
      );
    } catch (e) {
      if (!isConflict(e)) throw e;
    }
  }
  await waitFor(
    'the lab machines to have their addresses on their Nodes',
    async () => {
      for (const [node, sshd] of fleet.sshds) {
        const n = await client.get('Node', node);
        if (!n?.status?.addresses?.some((a) => a.address.startsWith(`${sshd.address}/`))) {
          return false;
        }
      }
      return true;
    },
    60_000,
    250,
  );
}
