/** Where the zone model's input comes from: the API server (informers) or a file (tests, bench). */
import type { AllocationIn, NetworkIn, NodeIn } from '../zones.ts';
import type { Network, NetworkAllocation, Node } from '../../generated/crowbar.ts';

export interface Snapshot {
  networks: NetworkIn[];
  allocations: AllocationIn[];
  /** Nodes with DNS aliases (spec.aliases); the others are left out. */
  nodes: NodeIn[];
}

export interface Backend {
  /** Loads the initial state and starts watching; `onChange` is called after every change. */
  start(onChange: () => void): Promise<void>;
  /** The current state (read-only copies of what the backend holds). */
  snapshot(): Snapshot;
  /** True once the initial state is loaded and the watch is healthy. */
  ready(): boolean;
  stop(): Promise<void>;
}

/** The zone model's view of a Network: its IPv4 subnet and its resolved IPv6 /64. */
export function networkIn(n: Readonly<Network>): NetworkIn {
  const spec = n.spec as Partial<Network['spec']> | undefined;
  const specV6 = spec?.v6prefix;
  return {
    name: n.metadata.name ?? '',
    category: spec?.category ?? 'general',
    subnet: spec?.subnet,
    v6prefix: n.status?.v6prefix ?? (specV6 && specV6 !== 'auto' ? specV6 : undefined),
  };
}

export function allocationIn(a: Readonly<NetworkAllocation>): AllocationIn | undefined {
  const s = a.spec as Partial<NetworkAllocation['spec']> | undefined;
  if (!s?.network || !s.node || !s.address || !s.family) return undefined;
  return { network: s.network, node: s.node, address: s.address, family: s.family };
}

/** The zone model's view of a Node: its name and aliases; undefined when it has none. */
export function nodeIn(n: Readonly<Node>): NodeIn | undefined {
  const aliases = (n.spec as Partial<Node['spec']> | undefined)?.aliases;
  if (!n.metadata.name || !Array.isArray(aliases) || aliases.length === 0) return undefined;
  return { name: n.metadata.name, aliases: aliases.filter((a) => typeof a === 'string') };
}
