/**
 * The allocation decision of CROWBAR-MODEL §7.4 (Crowbar's `NetworkRange#allocate`) as a pure
 * function: which address a node gets on a network, or why it gets none. Writing the decision is
 * the caller's job; it creates a NetworkAllocation named {@link allocationName}, and when that
 * create fails with AlreadyExists (another writer won the address) it re-reads and decides again.
 */
import type { Family, Ip } from './address.ts';
import { formatIp, hostmask, parseIp } from './address.ts';
import { allocationName } from './name.ts';
import type { NetworkView, ResolvedRange } from './network.ts';
import { defaultRangeName, findRange, prefixLengthOf, subnetOf, v6PrefixOf } from './network.ts';
import {
  cidrContains,
  firstFree,
  formatRange,
  parseIpWithPrefix,
  rangeContains,
} from './ranges.ts';
import type { TakenView } from './taken.ts';
import { interfaceId } from './v6.ts';

/** The node as allocation sees it. */
export interface NodeAllocView {
  /** The node's name, its FQDN. */
  readonly name: string;
  /** An admin node takes IPv4 addresses from the `admin` range when there is one (§7.4). */
  readonly admin?: boolean | undefined;
  /** node.spec.hints; `<network>-v4addr` and `<network>-v6addr` ask for an address. */
  readonly hints?: Readonly<Record<string, unknown>> | undefined;
  /**
   * The node's address, with prefix length, on the admin-category network of the same group and
   * the same family (e.g. `192.168.124.81/24`), when it has one: its host part is tried first
   * (§7.4 step 5, "octet-aligned" addresses).
   */
  readonly adminAddress?: string | undefined;
}

/** What to allocate and what is already taken on the network. */
export interface AllocationRequest {
  readonly network: NetworkView;
  readonly node: NodeAllocView;
  readonly family: Family;
  /** The range to allocate from; by default {@link defaultRangeName}. */
  readonly range?: string | undefined;
  /** Addresses taken on this network (both families) and their holders. */
  readonly taken: TakenView;
}

/** Where an address came from, in the order §7.4 tries them. */
export type AllocationSource =
  | 'existing'
  | 'hint'
  | 'admin-host-part'
  | 'interface-id'
  | 'interface-id-next-free'
  | 'first-free';

/** An address for the node. `kind: 'existing'` means it already holds it: nothing to write. */
export interface AllocationChoice {
  readonly kind: 'allocate' | 'existing';
  readonly ip: Ip;
  /** The address with the network's prefix length, as stored: `192.168.124.81/24`. */
  readonly address: string;
  readonly family: Family;
  readonly range: string;
  readonly source: AllocationSource;
  /** The NetworkAllocation object name that holds the address. */
  readonly name: string;
}

/** No address, and that is fine: an unmanaged network without hint, a network without IPv6. */
export interface NoAllocation {
  readonly kind: 'none';
  readonly message: string;
}

/** Reasons an allocation is refused; CamelCase for use as condition reasons. */
export type AllocationErrorReason =
  'NoSuchRange' | 'HintInvalid' | 'HintOutsideRange' | 'HintTaken' | 'RangeFull';

/** No address, and the user has something to fix: the message says what. */
export interface AllocationError {
  readonly kind: 'error';
  readonly reason: AllocationErrorReason;
  readonly message: string;
}

export type AllocationDecision = AllocationChoice | NoAllocation | AllocationError;

/** The hint key asking for an address on a network (§7.2: `hint-<net>-v4addr` maps to this). */
export function hintKey(network: string, family: Family): string {
  return `${network}-${family === 'ipv4' ? 'v4' : 'v6'}addr`;
}

/** Decides the node's address of `family` on the network (§7.4 steps 1 to 6). */
export function decideAllocation(req: AllocationRequest): AllocationDecision {
  const { network, node, family, taken } = req;
  const rangeName = req.range ?? defaultRangeName(network, family, node.admin === true);
  const range = findRange(network, family, rangeName);
  const unmanaged = network.spec.category === 'unmanaged';
  const key = hintKey(network.name, family);
  const rawHint = node.hints?.[key];
  const where = `network ${network.name} range ${rangeName}`;

  if (range === undefined) {
    if (unmanaged) {
      return rawHint === undefined ? noHint(network.name, key) : unmanagedHint(req, rangeName, key);
    }
    if (family === 'ipv6' && req.range === undefined) {
      // findRange derives host-v6 from the /64, so there is neither a range nor a prefix.
      return { kind: 'none', message: `network ${network.name} has no IPv6 prefix` };
    }
    return {
      kind: 'error',
      reason: 'NoSuchRange',
      message: `${where} does not exist: add an ${family} range named ${rangeName} to spec.ranges of network ${network.name}`,
    };
  }

  // §7.4 step 1: the node already holds an address in this range.
  const held = taken.heldBy(node.name, family).find((ip) => rangeContains(range.range, ip));
  if (held !== undefined) return choose(network, range, held, 'existing');

  // Steps 2 and 4: a hint wins, when it is in the range and not another node's.
  if (rawHint !== undefined) {
    const hint = parseHint(rawHint, family, key, node.name);
    if (typeof hint === 'string') return { kind: 'error', reason: 'HintInvalid', message: hint };
    if (!rangeContains(range.range, hint)) {
      return {
        kind: 'error',
        reason: 'HintOutsideRange',
        message: `node ${node.name} hint ${key}=${formatIp(hint)} is outside ${where} (${formatRange(range.range)}): give an address inside it or remove the hint`,
      };
    }
    const holder = taken.holder(hint);
    if (holder !== undefined && holder !== node.name) {
      return {
        kind: 'error',
        reason: 'HintTaken',
        message: `node ${node.name} hint ${key}=${formatIp(hint)} is already allocated to node ${holder} on network ${network.name}: give another address or remove the hint`,
      };
    }
    return choose(network, range, hint, 'hint');
  }

  // Step 3: an unmanaged network allocates nothing without a hint.
  if (unmanaged) return noHint(network.name, key);

  const sorted = taken.sorted(family);
  if (family === 'ipv4') {
    // Step 5: the host part of the node's admin address, so its addresses share the last octet.
    const aligned = alignedCandidate(network, node.adminAddress);
    if (
      aligned !== undefined &&
      rangeContains(range.range, aligned) &&
      taken.holder(aligned) === undefined
    ) {
      return choose(network, range, aligned, 'admin-host-part');
    }
  } else {
    // §7.5: the md5 interface ID; if another node holds that address (two names whose md5 share
    // their last 64 bits), step to the next free address after it, wrapping within the range.
    const prefix = v6PrefixOf(network);
    if (prefix !== undefined) {
      const wanted: Ip = { family, value: prefix.network | interfaceId(node.name) };
      if (rangeContains(range.range, wanted)) {
        const value = firstFree(range.range, sorted, wanted.value);
        if (value === undefined) return full(where, range);
        const source = value === wanted.value ? 'interface-id' : 'interface-id-next-free';
        return choose(network, range, { family, value }, source);
      }
    }
  }

  // Step 6: the lowest free address.
  const value = firstFree(range.range, sorted);
  if (value === undefined) return full(where, range);
  return choose(network, range, { family, value }, 'first-free');
}

function choose(
  network: NetworkView,
  range: ResolvedRange,
  ip: Ip,
  source: AllocationSource,
): AllocationChoice {
  return {
    kind: source === 'existing' ? 'existing' : 'allocate',
    ip,
    address: `${formatIp(ip)}/${range.prefixLength}`,
    family: ip.family,
    range: range.name,
    source,
    name: allocationName(network.name, ip),
  };
}

function full(where: string, range: ResolvedRange): AllocationError {
  return {
    kind: 'error',
    reason: 'RangeFull',
    message: `${where} (${formatRange(range.range)}) is out of addresses: widen the range or unbind the network from nodes that no longer need it`,
  };
}

function noHint(network: string, key: string): NoAllocation {
  return {
    kind: 'none',
    message: `network ${network} is unmanaged: it allocates only addresses asked for with the hint ${key}`,
  };
}

/** The hint as an address of the family, or a message saying what is wrong with it. */
function parseHint(raw: unknown, family: Family, key: string, node: string): Ip | string {
  const example = family === 'ipv4' ? '192.168.124.81' : 'fd00::81';
  const fix = `node ${node} hint ${key}=${JSON.stringify(raw)} must be a bare ${family} address such as ${example}`;
  if (typeof raw !== 'string') return fix;
  try {
    const ip = parseIp(raw);
    return ip.family === family ? ip : fix;
  } catch {
    return fix;
  }
}

/**
 * On an unmanaged network without the named range the hint is taken as given (Crowbar records
 * such addresses), as long as it lies in the subnet when there is one and no one else holds it.
 */
function unmanagedHint(req: AllocationRequest, rangeName: string, key: string): AllocationDecision {
  const { network, node, family, taken } = req;
  const single = (ip: Ip): ResolvedRange => ({
    name: rangeName,
    range: { family, first: ip.value, last: ip.value },
    prefixLength: prefixLengthOf(network, family),
  });
  const held = taken.heldBy(node.name, family)[0];
  if (held !== undefined) return choose(network, single(held), held, 'existing');
  const hint = parseHint(node.hints?.[key], family, key, node.name);
  if (typeof hint === 'string') return { kind: 'error', reason: 'HintInvalid', message: hint };
  const block = family === 'ipv4' ? subnetOf(network.spec) : v6PrefixOf(network);
  if (block !== undefined && !cidrContains(block, hint)) {
    return {
      kind: 'error',
      reason: 'HintOutsideRange',
      message: `node ${node.name} hint ${key}=${formatIp(hint)} is outside network ${network.name}: give an address inside its subnet or remove the hint`,
    };
  }
  const holder = taken.holder(hint);
  if (holder !== undefined && holder !== node.name) {
    return {
      kind: 'error',
      reason: 'HintTaken',
      message: `node ${node.name} hint ${key}=${formatIp(hint)} is already allocated to node ${holder} on network ${network.name}: give another address or remove the hint`,
    };
  }
  return choose(network, single(hint), hint, 'hint');
}

/**
 * §7.4 step 5, Crowbar's `first.with_host(admin.host)`: this network's subnet with the host part
 * of the node's admin address, when that host part fits the subnet.
 */
function alignedCandidate(network: NetworkView, adminAddress: string | undefined): Ip | undefined {
  const subnet = subnetOf(network.spec);
  if (adminAddress === undefined || subnet === undefined) return undefined;
  let admin;
  try {
    admin = parseIpWithPrefix(adminAddress);
  } catch {
    return undefined;
  }
  if (admin.ip.family !== 'ipv4') return undefined;
  const host = admin.ip.value & hostmask('ipv4', admin.prefixLength);
  if ((host & hostmask('ipv4', subnet.prefixLength)) !== host) return undefined;
  return { family: 'ipv4', value: subnet.network | host };
}
