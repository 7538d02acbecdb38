/**
 * Pure decisions of the network controllers (CROWBAR-MODEL §7): the role a Network gets, the data
 * a network noderole hands to jigs, a Network's status, a node's addresses, and the cluster's
 * RFC 4193 global ID and subnet ID claims. Plain data in, plain data out; randomness is injected.
 */
import { condition } from '../../kube/condition.ts';
import type {
  Network,
  NetworkAllocation,
  NetworkSpec,
  NetworkStatus,
  NodeRole,
  NodeStatus,
  RoleSpec,
} from '../../../generated/crowbar.ts';
import type { Family, NetworkView, Problem, RangeUsage } from '../../ipam/index.ts';
import {
  autoPrefix,
  cidrOf,
  formatCidr,
  isGlobalId,
  MAX_SUBNET_ID,
  nextSubnetId,
  parseCidr,
  parseIpWithPrefix,
  randomGlobalId,
  resolvedV6Prefix,
  validateGroupSubnets,
  validateNetwork,
  validateNetworkUpdate,
  wantsAutoPrefix,
} from '../../ipam/index.ts';
import type { Condition } from '../../kube/condition.ts';

/** Prefix of the role that binds a node to a network (§7.2: `network-<name>`). */
export const NETWORK_ROLE_PREFIX = 'network-';

/** Annotation on the system Deployment holding the cluster's 40-bit RFC 4193 global ID. */
export const GLOBAL_ID_ANNOTATION = 'crowbar.dev/ula-global-id';
/** Annotation on the system Deployment: JSON map of network name to its RFC 4193 subnet ID. */
export const SUBNET_IDS_ANNOTATION = 'crowbar.dev/ula-subnet-ids';

/** Finalizer on a NetworkAllocation: the address stays held until its binding or node is gone. */
export const ALLOCATION_FINALIZER = 'crowbar.dev/address-held';

/** The role binding a node to `network` (§7.2). */
export function networkRoleName(network: string): string {
  return `${NETWORK_ROLE_PREFIX}${network}`;
}

/** The network a role binds to, or undefined for roles that are not network roles. */
export function networkOfRole(role: string): string | undefined {
  return role.startsWith(NETWORK_ROLE_PREFIX) ? role.slice(NETWORK_ROLE_PREFIX.length) : undefined;
}

/** The NodeRole name of a node's binding to a network: `<role>.<node>`. */
export function networkNodeRoleName(network: string, node: string): string {
  return `${networkRoleName(network)}.${node}`;
}

/** Network and node of a network NodeRole name; network names hold no `.` (CRD pattern). */
export function parseNetworkNodeRoleName(
  name: string,
): { network: string; node: string } | undefined {
  const dot = name.indexOf('.');
  if (dot < 0) return undefined;
  const network = networkOfRole(name.slice(0, dot));
  return network === undefined ? undefined : { network, node: name.slice(dot + 1) };
}

/** §7.2 `network.to_template`: the network's settings, as the role's template carries them. */
export function networkSettings(spec: NetworkSpec, v6prefix: string | undefined) {
  return {
    category: spec.category,
    group: spec.group ?? 'default',
    conduit: spec.conduit ?? '1g0',
    vlan: spec.vlan ?? 0,
    useVlan: spec.useVlan ?? false,
    useBridge: spec.useBridge ?? false,
    useTeam: spec.useTeam ?? false,
    teamMode: spec.teamMode ?? 5,
    subnet: spec.subnet ?? null,
    v6prefix: v6prefix ?? null,
    router: spec.router ? { address: spec.router.address, pref: spec.router.pref ?? 65536 } : null,
  };
}

/**
 * The Role `network-<name>` (§7.2): implicit and a milestone; run by the noop jig, since the
 * operator does the allocation itself and a script role below it configures interfaces from the
 * data the noderole hands down. Template `{crowbar: {network: {<name>: settings}}}`.
 */
export function networkRoleSpec(network: Readonly<Network>): RoleSpec {
  const name = network.metadata.name ?? '';
  return {
    description: `Binds a node to network ${name} and allocates its addresses there (created by the operator).`,
    jig: 'noop',
    flags: ['implicit', 'milestone'],
    template: {
      crowbar: {
        network: {
          [name]: networkSettings(
            network.spec,
            resolvedV6Prefix(network.spec, network.status?.v6prefix),
          ),
        },
      },
    },
  };
}

/** One address of a node on a network, as handed to jigs. */
export interface AddressEntry {
  /** With prefix length, as allocated: `192.168.124.81/24`. */
  readonly address: string;
  readonly ip: string;
  readonly prefixLength: number;
  readonly family: Family;
  readonly range: string;
}

/** An allocation's address as an {@link AddressEntry}. */
export function addressEntry(a: Readonly<NetworkAllocation>): AddressEntry {
  const parsed = parseIpWithPrefix(a.spec.address);
  return {
    address: a.spec.address,
    ip: a.spec.address.slice(0, a.spec.address.indexOf('/')),
    prefixLength: parsed.prefixLength,
    family: a.spec.family,
    range: a.spec.range,
  };
}

/** Path under status.wall where the network noderole hands its data down: `crowbar.network.<n>`. */
export function wallOf(
  nr: Readonly<NodeRole>,
  network: string,
): Record<string, unknown> | undefined {
  const crowbar = nr.status?.wall?.['crowbar'];
  if (!isObj(crowbar)) return undefined;
  const net = crowbar['network'];
  if (!isObj(net)) return undefined;
  const mine = net[network];
  return isObj(mine) ? mine : undefined;
}

/** The addresses a network noderole's wall records (`crowbar.network.<n>.addresses`). */
export function wallAddresses(nr: Readonly<NodeRole>, network: string): string[] {
  const list = wallOf(nr, network)?.['addresses'];
  return Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : [];
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The data a network noderole hands its children (§7.6, `crowbar.network.<net>`): the sorted
 * addresses with prefix length, each address in detail (family, prefix length, range, and the
 * router of its family, §7.6 "router {pref, address} if the router is the same family"), and the
 * network's conduit, VLAN, teaming and bridge settings, so a script can configure interfaces.
 */
export function networkWall(
  network: NetworkView,
  entries: readonly AddressEntry[],
): Record<string, unknown> {
  const settings = networkSettings(network.spec, resolvedV6Prefix(network.spec, network.v6prefix));
  const routerFamily =
    network.spec.router === undefined
      ? undefined
      : network.spec.router.address.includes(':')
        ? 'ipv6'
        : 'ipv4';
  const sorted = [...entries].sort(compareEntries);
  return {
    ...settings,
    addresses: sorted.map((e) => e.address),
    details: sorted.map((e) => ({
      address: e.ip,
      prefixLength: e.prefixLength,
      family: e.family,
      range: e.range,
      router: e.family === routerFamily ? settings.router : null,
    })),
  };
}

/** v4 before v6, then by address text. */
function compareEntries(a: AddressEntry, b: AddressEntry): number {
  if (a.family !== b.family) return a.family === 'ipv4' ? -1 : 1;
  return a.address < b.address ? -1 : a.address > b.address ? 1 : 0;
}

/** Structural equality of JSON values, ignoring object key order and keys whose value is null. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => sameJson(x, b[i]));
  }
  if (isObj(a) && isObj(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) if (!sameJson(a[k] ?? null, b[k] ?? null)) return false;
    return true;
  }
  return a === b || ((a ?? null) === null && (b ?? null) === null);
}

/**
 * Which of a binding's allocations are its addresses (ADR 0025): per family, the one its wall
 * names, else the earliest created (ties, i.e. two replicas racing within one second: the lowest
 * name). `owned` are the allocations owned by the binding's NodeRole (its uid). Every reader
 * applies this same rule, so the allocation's create is the commit point: a second allocation of
 * one family exists only when two replicas raced, and it is an extra the allocator releases once
 * the wall names the chosen one.
 */
export function bindingAddresses(
  owned: readonly Readonly<NetworkAllocation>[],
  wall: readonly string[],
): { chosen: Readonly<NetworkAllocation>[]; extras: Readonly<NetworkAllocation>[] } {
  const chosen: Readonly<NetworkAllocation>[] = [];
  const extras: Readonly<NetworkAllocation>[] = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    const mine = owned.filter((a) => a.spec.family === family);
    if (mine.length === 0) continue;
    const named = mine.find((a) => wall.includes(a.spec.address));
    const pick = named ?? mine.reduce((best, a) => (earlier(a, best) ? a : best));
    chosen.push(pick);
    for (const a of mine) if (a !== pick) extras.push(a);
  }
  return { chosen, extras };
}

/** Created before `b`; within one second (the API server's resolution), the lower name. */
function earlier(a: Readonly<NetworkAllocation>, b: Readonly<NetworkAllocation>): boolean {
  const ta = created(a);
  const tb = created(b);
  if (ta !== tb && !Number.isNaN(ta) && !Number.isNaN(tb)) return ta < tb;
  return (a.metadata.name ?? '') < (b.metadata.name ?? '');
}

/** Typed as a Date by client-node, but a string as the custom objects API returns it. */
function created(a: Readonly<NetworkAllocation>): number {
  const t: unknown = a.metadata.creationTimestamp;
  return t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : Number.NaN;
}

/** Node status.addresses entries. */
export type NodeAddress = NonNullable<NodeStatus['addresses']>[number];

/** A node's addresses, per network, sorted by network, then v4 before v6, then address. */
export function nodeAddresses(allocations: readonly Readonly<NetworkAllocation>[]): NodeAddress[] {
  return allocations
    .map((a) => ({ network: a.spec.network, address: a.spec.address, family: a.spec.family }))
    .sort((a, b) =>
      a.network !== b.network
        ? a.network < b.network
          ? -1
          : 1
        : a.family !== b.family
          ? a.family === 'ipv4'
            ? -1
            : 1
          : a.address < b.address
            ? -1
            : a.address > b.address
              ? 1
              : 0,
    );
}

/**
 * The spec the network's allocations were made under, as far as they tell: an allocation records
 * its address with the prefix length of its subnet (`192.168.124.81/24`), so the subnet and /64
 * it was taken from can be read back. Lets {@link networkProblems} report "changing a subnet with
 * allocations" without keeping the old spec anywhere else.
 */
export function allocatedSpec(
  spec: NetworkSpec,
  allocations: readonly Readonly<NetworkAllocation>[],
): { subnet: string | undefined; v6prefix: string | undefined } {
  const blockOf = (family: Family): string | undefined => {
    const a = allocations.find((x) => x.spec.family === family);
    if (a === undefined) return undefined;
    try {
      return formatCidr(cidrOf(parseIpWithPrefix(a.spec.address)));
    } catch {
      return undefined;
    }
  };
  return { subnet: blockOf('ipv4') ?? spec.subnet, v6prefix: blockOf('ipv6') };
}

/**
 * Everything wrong with a network (issue 5 "Admission and bad input"): its own ranges and router
 * (validateNetwork), subnets or /64s overlapping another network of its group
 * (validateGroupSubnets), and a subnet, /64 or range changed under existing allocations
 * (validateNetworkUpdate, against the spec the allocations were made under).
 */
export function networkProblems(
  network: NetworkView,
  others: readonly NetworkView[],
  allocations: readonly Readonly<NetworkAllocation>[],
): Problem[] {
  const problems = [...validateNetwork(network), ...validateGroupSubnets(network, others)];
  if (allocations.length > 0) {
    const was = allocatedSpec(network.spec, allocations);
    const resolved = resolvedV6Prefix(network.spec, network.v6prefix);
    const old: NetworkSpec = {
      ...network.spec,
      ...(was.subnet !== undefined ? { subnet: was.subnet } : {}),
      ...(was.v6prefix !== undefined ? { v6prefix: was.v6prefix } : {}),
    };
    const next: NetworkSpec = {
      ...network.spec,
      ...(resolved !== undefined ? { v6prefix: resolved } : {}),
    };
    problems.push(
      ...validateNetworkUpdate(
        network.name,
        old,
        next,
        allocations.map((a) => ({
          address: a.spec.address,
          node: a.spec.node,
          range: a.spec.range,
        })),
        network.v6prefix,
      ),
    );
  }
  return problems;
}

export type { Condition } from '../../kube/condition.ts';

/** The Network's `Valid` condition from its problems; the transition time moves only on change. */
export function validCondition(
  problems: readonly Problem[],
  previous: Condition | undefined,
  generation: number | undefined,
  now: Date,
): Condition {
  const ok = problems.length === 0;
  const status = ok ? 'True' : 'False';
  const message = ok ? 'the network is valid' : problems.map((p) => p.message).join('; ');
  return condition(
    previous ? [previous] : undefined,
    { type: 'Valid', status, reason: ok ? 'Valid' : 'Invalid', message },
    now,
    generation,
  );
}

/** The Network's status: resolved /64, subnet ID, counts and usage, the Valid condition. */
export function networkStatus(args: {
  network: Readonly<Network>;
  v6prefix: string | undefined;
  subnetId: number | undefined;
  allocated: number;
  usage: readonly RangeUsage[];
  problems: readonly Problem[];
  now: Date;
}): NetworkStatus {
  const { network, now } = args;
  const previous = network.status?.conditions?.find((c) => c.type === 'Valid');
  const generation = network.metadata.generation;
  return {
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    ...(args.v6prefix !== undefined ? { v6prefix: args.v6prefix } : {}),
    ...(args.subnetId !== undefined ? { subnetId: args.subnetId } : {}),
    allocated: args.allocated,
    usage: args.usage.map((u) => ({ range: u.range, allocated: u.allocated, size: u.size })),
    conditions: [validCondition(args.problems, previous, generation, now)],
  };
}

/** True when the written status would change nothing (transition times aside). */
export function sameNetworkStatus(cur: NetworkStatus | undefined, next: NetworkStatus): boolean {
  return sameJson(cur ?? {}, next);
}

/** Whether the Network needs an auto /64 resolved (RFC 4193; the admin network by default). */
export function needsUla(spec: NetworkSpec): boolean {
  return wantsAutoPrefix(spec);
}

/** The cluster's claims as stored in the system Deployment's annotations. */
export interface UlaClaims {
  readonly globalId: string | undefined;
  readonly subnetIds: Readonly<Record<string, number>>;
}

/** Reads the claims; malformed values read as absent (and are rewritten by the next claim). */
export function readUlaClaims(
  annotations: Readonly<Record<string, string>> | undefined,
): UlaClaims {
  const gid = annotations?.[GLOBAL_ID_ANNOTATION];
  const subnetIds: Record<string, number> = {};
  try {
    const parsed: unknown = JSON.parse(annotations?.[SUBNET_IDS_ANNOTATION] ?? '{}');
    if (isObj(parsed)) {
      for (const [k, v] of Object.entries(parsed)) {
        if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_SUBNET_ID)
          subnetIds[k] = v;
      }
    }
  } catch {
    // Malformed: treated as no claims.
  }
  return { globalId: gid !== undefined && isGlobalId(gid) ? gid : undefined, subnetIds };
}

/** The outcome of {@link planUlaClaim}: the prefix, and the annotations to write when any. */
export interface UlaClaimPlan {
  readonly globalId: string;
  readonly subnetId: number;
  readonly prefix: string;
  /** Annotations to merge into the system Deployment; undefined when nothing changes. */
  readonly write: Record<string, string> | undefined;
}

/**
 * The global ID and subnet ID an `auto` prefix was built from (the inverse of autoPrefix), or
 * undefined for any other prefix.
 */
export function splitAutoPrefix(
  prefix: string,
): { globalId: string; subnetId: number } | undefined {
  let c;
  try {
    c = parseCidr(prefix);
  } catch {
    return undefined;
  }
  if (c.family !== 'ipv6' || c.prefixLength !== 64) return undefined;
  const top64 = c.network >> 64n;
  if (top64 >> 56n !== 0xfdn) return undefined;
  const subnetId = Number(top64 & 0xffffn);
  if (subnetId < 1) return undefined;
  return {
    globalId: ((top64 >> 16n) & 0xff_ffff_ffffn).toString(16).padStart(10, '0'),
    subnetId,
  };
}

/**
 * Claims a subnet ID for `network` (§7.5; RFC 4193 §3.1): the cluster's global ID, drawn once
 * when absent, and the network's subnet ID: its existing claim, else the one its recorded
 * status.v6prefix was built from (so a lost annotation does not move its prefix; the global ID
 * is recovered from it the same way) when no other network holds it, else the lowest free ID. The caller writes `write` with a resourceVersion
 * precondition, so two replicas can neither draw two global IDs nor give one ID to two networks.
 */
export function planUlaClaim(
  claims: UlaClaims,
  network: string,
  recorded: string | undefined,
  randomBytes: (n: number) => Uint8Array,
): UlaClaimPlan {
  const fromStatus = recorded === undefined ? undefined : splitAutoPrefix(recorded);
  const preferred = fromStatus?.subnetId;
  const globalId = claims.globalId ?? fromStatus?.globalId ?? randomGlobalId(randomBytes);
  const held = claims.subnetIds[network];
  let subnetId: number;
  if (held !== undefined) subnetId = held;
  else {
    const others = Object.entries(claims.subnetIds)
      .filter(([n]) => n !== network)
      .map(([, id]) => id);
    subnetId =
      preferred !== undefined &&
      preferred >= 1 &&
      preferred <= MAX_SUBNET_ID &&
      !others.includes(preferred)
        ? preferred
        : nextSubnetId(others);
  }
  const changed = claims.globalId === undefined || held === undefined;
  return {
    globalId,
    subnetId,
    prefix: autoPrefix(globalId, subnetId),
    write: changed
      ? {
          [GLOBAL_ID_ANNOTATION]: globalId,
          [SUBNET_IDS_ANNOTATION]: JSON.stringify(
            sortedRecord({ ...claims.subnetIds, [network]: subnetId }),
          ),
        }
      : undefined,
  };
}

/** The claims without `network`'s, as annotations, or undefined when it holds none. */
export function planUlaRelease(
  claims: UlaClaims,
  network: string,
): Record<string, string> | undefined {
  if (claims.subnetIds[network] === undefined) return undefined;
  const rest = Object.fromEntries(Object.entries(claims.subnetIds).filter(([n]) => n !== network));
  return { [SUBNET_IDS_ANNOTATION]: JSON.stringify(sortedRecord(rest)) };
}

function sortedRecord(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
