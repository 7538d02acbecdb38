/**
 * Validation of networks, hints and network updates (CROWBAR-MODEL §7.3, issue 5 "Admission and
 * bad input"): chiefly the rules the CRDs' CEL cannot express, because they compare ranges with
 * each other, look at other objects or do IPv6 arithmetic. The few CEL rules repeated here
 * (IPv4 range and router inside the subnet) keep the functions complete for callers that see
 * objects CEL never checked. Each problem names the field and says what to fix; the webhook
 * refuses with these messages and controllers report them in conditions.
 */
import type { NetworkSpec } from '../../generated/crowbar.ts';
import type { Family, Ip } from './address.ts';
import { formatIp, parseIp } from './address.ts';
import { hintKey } from './allocate.ts';
import type { NetworkView } from './network.ts';
import {
  defaultRangeName,
  findRange,
  resolvedV6Prefix,
  subnetOf,
  v6PrefixOf,
  wantsAutoPrefix,
} from './network.ts';
import type { Cidr, IpRange } from './ranges.ts';
import {
  cidrContains,
  cidrHostRange,
  cidrRange,
  cidrsOverlap,
  formatCidr,
  formatRange,
  parseCidr,
  rangeContains,
  rangeWithin,
  rangesOverlap,
} from './ranges.ts';
import type { Holding } from './taken.ts';
import { parseHeldAddress } from './taken.ts';

/** One thing to fix: the field (a path as the API server prints it) and the whole message. */
export interface Problem {
  readonly field: string;
  readonly message: string;
}

/** A recorded allocation on a network: holder, address and the range it was taken from. */
export interface AllocationRecord extends Holding {
  readonly range?: string | undefined;
}

/** Group of networks whose subnets must not overlap; the CRD defaults it to `default`. */
export function groupOf(spec: NetworkSpec): string {
  return spec.group ?? 'default';
}

function tryIp(text: string): Ip | undefined {
  try {
    return parseIp(text);
  } catch {
    return undefined;
  }
}

function tryCidr(text: string | undefined): Cidr | undefined {
  if (text === undefined) return undefined;
  try {
    return parseCidr(text);
  } catch {
    return undefined;
  }
}

/** `spec.v6prefix (fd00::/64)` or, for auto, `spec.v6prefix (auto, resolved to fd…::/64)`. */
function describeV6Prefix(network: NetworkView, prefix: Cidr): string {
  const text = formatCidr(prefix);
  return network.spec.v6prefix === undefined || network.spec.v6prefix === 'auto'
    ? `spec.v6prefix (auto, resolved to ${text})`
    : `spec.v6prefix (${text})`;
}

/** A parsed entry of spec.ranges, described as messages show it: `spec.ranges[1] (dhcp a-b)`. */
interface ParsedRange {
  readonly field: string;
  readonly label: string;
  readonly range: IpRange;
}

/**
 * Checks one network on its own (§7.3 range checks):
 * - each range's addresses parse, share a family, and first is not after last (IPv6 too; CEL
 *   compares IPv4 only);
 * - an IPv4 range lies in spec.subnet and holds neither its network nor its broadcast address
 *   (RFC 1122 §3.2.1.3; both are hosts on a /31, RFC 3021);
 * - an IPv6 range needs a v6prefix, lies in it, and does not hold the Subnet-Router anycast
 *   address (RFC 4291 §2.6.1). An `auto` prefix is checked once resolved (network.v6prefix);
 * - no two ranges share an address (Crowbar's `overlap` flag is not carried over);
 * - the router lies in the subnet or the /64 of its family.
 */
export function validateNetwork(network: NetworkView): Problem[] {
  const problems: Problem[] = [];
  const subnet = subnetOf(network.spec);
  const prefix = v6PrefixOf(network);
  const parsed: ParsedRange[] = [];

  (network.spec.ranges ?? []).forEach((r, i) => {
    const field = `spec.ranges[${i}]`;
    const label = `${field} (${r.name} ${r.first}-${r.last})`;
    const first = tryIp(r.first);
    const last = tryIp(r.last);
    if (first === undefined || last === undefined) {
      const bad = first === undefined ? 'first' : 'last';
      problems.push({
        field: `${field}.${bad}`,
        message: `${label}: ${bad} must be a bare IPv4 or IPv6 address, e.g. 192.168.124.81`,
      });
      return;
    }
    if (first.family !== last.family) {
      problems.push({
        field,
        message: `${label} mixes IPv4 and IPv6: give first and last of one family`,
      });
      return;
    }
    if (first.value > last.value) {
      problems.push({ field, message: `${label} starts after it ends: swap first and last` });
      return;
    }
    const range: IpRange = { family: first.family, first: first.value, last: last.value };
    problems.push(...rangePlacement(network, field, label, range, subnet, prefix));
    for (const other of parsed) {
      if (rangesOverlap(range, other.range)) {
        problems.push({
          field,
          message: `${label} overlaps ${other.label}: give each range its own addresses`,
        });
      }
    }
    parsed.push({ field, label, range });
  });

  const router = network.spec.router;
  if (router !== undefined) {
    const field = 'spec.router.address';
    const ip = tryIp(router.address);
    if (ip === undefined) {
      problems.push({ field, message: `${field} (${router.address}) must be an IP address` });
    } else {
      const block = ip.family === 'ipv4' ? subnet : prefix;
      const blockName =
        ip.family === 'ipv4'
          ? `spec.subnet (${network.spec.subnet ?? 'unset'})`
          : prefix === undefined
            ? 'spec.v6prefix (unset)'
            : describeV6Prefix(network, prefix);
      const pending = ip.family === 'ipv6' && prefix === undefined && wantsAutoPrefix(network.spec);
      if (!pending && (block === undefined || !cidrContains(block, ip))) {
        problems.push({
          field,
          message: `${field} (${router.address}) lies outside ${blockName}: give a router address inside it`,
        });
      }
    }
  }
  return problems;
}

/** A range's place in its subnet or /64 (see {@link validateNetwork}). */
function rangePlacement(
  network: NetworkView,
  field: string,
  label: string,
  range: IpRange,
  subnet: Cidr | undefined,
  prefix: Cidr | undefined,
): Problem[] {
  if (range.family === 'ipv4') {
    if (subnet === undefined) return []; // CEL requires a subnet unless unmanaged.
    const all = cidrRange(subnet);
    const hosts = cidrHostRange(subnet);
    if (!rangeWithin(range, all)) {
      return [
        {
          field,
          message: `${label} lies outside spec.subnet (${formatCidr(subnet)}): keep it within ${formatRange(hosts)}`,
        },
      ];
    }
    if (!rangeWithin(range, hosts)) {
      return [
        {
          field,
          message: `${label} includes the network or broadcast address of spec.subnet (${formatCidr(subnet)}): keep it within ${formatRange(hosts)}`,
        },
      ];
    }
    return [];
  }
  if (prefix === undefined) {
    if (wantsAutoPrefix(network.spec)) return []; // checked once the auto prefix is resolved
    return [
      {
        field,
        message: `${label} is IPv6 but the network has no spec.v6prefix: set spec.v6prefix to a /64 or auto`,
      },
    ];
  }
  const hosts = cidrHostRange(prefix);
  if (!rangeWithin(range, cidrRange(prefix))) {
    return [
      {
        field,
        message: `${label} lies outside ${describeV6Prefix(network, prefix)}: keep it within ${formatRange(hosts)}`,
      },
    ];
  }
  if (!rangeWithin(range, hosts)) {
    return [
      {
        field,
        message: `${label} includes ${formatIp({ family: 'ipv6', value: prefix.network })}, the Subnet-Router anycast address of ${describeV6Prefix(network, prefix)}: start the range at ${formatIp({ family: 'ipv6', value: hosts.first })} or later`,
      },
    ];
  }
  return [];
}

/**
 * Checks that the network's subnet and /64 overlap no other network's of the same group
 * (issue 5; networks of one group share a node's interfaces, §7.8). `others` may include the
 * network itself (same name), which is skipped.
 */
export function validateGroupSubnets(
  network: NetworkView,
  others: readonly NetworkView[],
): Problem[] {
  const problems: Problem[] = [];
  const group = groupOf(network.spec);
  const subnet = subnetOf(network.spec);
  const prefix = v6PrefixOf(network);
  for (const other of others) {
    if (other.name === network.name || groupOf(other.spec) !== group) continue;
    const otherSubnet = subnetOf(other.spec);
    if (subnet !== undefined && otherSubnet !== undefined && cidrsOverlap(subnet, otherSubnet)) {
      problems.push({
        field: 'spec.subnet',
        message: `spec.subnet (${formatCidr(subnet)}) overlaps network ${other.name}'s subnet ${formatCidr(otherSubnet)} in group ${group}: choose a subnet no other network of the group uses, or set spec.group`,
      });
    }
    const otherPrefix = v6PrefixOf(other);
    if (prefix !== undefined && otherPrefix !== undefined && cidrsOverlap(prefix, otherPrefix)) {
      problems.push({
        field: 'spec.v6prefix',
        message: `${describeV6Prefix(network, prefix)} overlaps network ${other.name}'s v6 prefix ${formatCidr(otherPrefix)} in group ${group}: choose another /64 or use auto`,
      });
    }
  }
  return problems;
}

/** A node as hint validation sees it. */
export interface HintedNode {
  readonly name: string;
  readonly admin?: boolean | undefined;
  readonly hints?: Readonly<Record<string, unknown>> | undefined;
}

/**
 * Checks the node's address hints (`<network>-v4addr`, `<network>-v6addr`) against the networks
 * they name: each must be a bare address of its family inside the range the node is given
 * addresses from (§7.4: `admin` for admin nodes when present, else `host`; `host-v6`), or, on an
 * unmanaged network without that range, inside the subnet. Hints naming networks that do not
 * exist yet are left alone: the network may be created later.
 */
export function validateHints(node: HintedNode, networks: readonly NetworkView[]): Problem[] {
  const problems: Problem[] = [];
  for (const network of networks) {
    for (const family of ['ipv4', 'ipv6'] as const) {
      const key = hintKey(network.name, family);
      const raw = node.hints?.[key];
      if (raw === undefined) continue;
      const field = `spec.hints[${JSON.stringify(key)}]`;
      const ip = typeof raw === 'string' ? tryIp(raw) : undefined;
      if (ip?.family !== family) {
        const example = family === 'ipv4' ? '192.168.124.81' : 'fd00::81';
        problems.push({
          field,
          message: `${field} (${JSON.stringify(raw)}) must be a bare ${family} address such as ${example}`,
        });
        continue;
      }
      const problem = hintPlacement(network, node, family, ip, field);
      if (problem !== undefined) problems.push(problem);
    }
  }
  return problems;
}

function hintPlacement(
  network: NetworkView,
  node: HintedNode,
  family: Family,
  ip: Ip,
  field: string,
): Problem | undefined {
  const rangeName = defaultRangeName(network, family, node.admin === true);
  const range = findRange(network, family, rangeName);
  const shown = `${field} (${formatIp(ip)})`;
  if (range !== undefined) {
    if (rangeContains(range.range, ip)) return undefined;
    return {
      field,
      message: `${shown} is outside network ${network.name}'s range ${rangeName} (${formatRange(range.range)}): give an address inside it or remove the hint`,
    };
  }
  if (network.spec.category !== 'unmanaged') return undefined; // allocation reports NoSuchRange
  const block = family === 'ipv4' ? subnetOf(network.spec) : v6PrefixOf(network);
  if (block === undefined || cidrContains(block, ip)) return undefined;
  return {
    field,
    message: `${shown} is outside network ${network.name}'s ${family === 'ipv4' ? 'subnet' : 'v6 prefix'} ${formatCidr(block)}: give an address inside it or remove the hint`,
  };
}

/** `192.168.124.81 (node1), 192.168.124.82 (node2) and 3 more`. */
function examples(list: readonly { ip: Ip; node: string }[]): string {
  const shown = list.slice(0, 3).map((a) => `${formatIp(a.ip)} (${a.node})`);
  const more = list.length > shown.length ? ` and ${list.length - shown.length} more` : '';
  return `${shown.join(', ')}${more}`;
}

/**
 * Checks an update of a network that holds allocations (issue 5: "changing a subnet that has
 * allocations"): the subnet and the /64 may not change while addresses of their family are
 * allocated, and an edit of spec.ranges may not leave an allocation outside the range it was
 * taken from. `statusPrefix` is the resolved auto prefix, unchanged by a spec update.
 */
export function validateNetworkUpdate(
  name: string,
  old: NetworkSpec,
  next: NetworkSpec,
  allocations: readonly AllocationRecord[],
  statusPrefix?: string,
): Problem[] {
  const problems: Problem[] = [];
  const held = allocations.flatMap((a) => {
    try {
      return [{ ...a, ip: parseHeldAddress(a.address) }];
    } catch {
      return [];
    }
  });
  const ofFamily = (f: Family) => held.filter((a) => a.ip.family === f);
  const unbind = `unbind network-${name} from those nodes first, or create a new network`;

  const v4 = ofFamily('ipv4');
  if (v4.length > 0 && !sameBlock(old.subnet, next.subnet)) {
    problems.push({
      field: 'spec.subnet',
      message: `spec.subnet cannot change from ${old.subnet ?? 'unset'} to ${next.subnet ?? 'unset'} while ${v4.length} IPv4 addresses are allocated on network ${name} (${examples(v4)}): ${unbind}`,
    });
  }
  const v6 = ofFamily('ipv6');
  const oldPrefix = resolvedV6Prefix(old, statusPrefix);
  const newPrefix = resolvedV6Prefix(next, statusPrefix);
  if (v6.length > 0 && !sameBlock(oldPrefix, newPrefix)) {
    problems.push({
      field: 'spec.v6prefix',
      message: `spec.v6prefix cannot change from ${oldPrefix ?? 'unset'} to ${newPrefix ?? 'unset'} while ${v6.length} IPv6 addresses are allocated on network ${name} (${examples(v6)}): ${unbind}`,
    });
  }
  if (problems.length > 0) return problems; // the ranges follow the subnet; fix that first

  const view: NetworkView = { name, spec: next, v6prefix: statusPrefix };
  const byRange = new Map<string, typeof held>();
  for (const a of held) {
    if (a.range === undefined) continue;
    const range = findRange(view, a.ip.family, a.range);
    if (range !== undefined && rangeContains(range.range, a.ip)) continue;
    byRange.set(a.range, [...(byRange.get(a.range) ?? []), a]);
  }
  for (const [rangeName, stranded] of byRange) {
    const exists = (next.ranges ?? []).some((r) => r.name === rangeName);
    problems.push({
      field: 'spec.ranges',
      message: `${exists ? `range ${rangeName} no longer contains` : `range ${rangeName} is removed but holds`} ${stranded.length} allocated addresses (${examples(stranded)}): keep them in range ${rangeName}, or unbind network-${name} from those nodes first`,
    });
  }
  return problems;
}

/** Same CIDR block, comparing values (so `fd00:0::/64` equals `fd00::/64`), else the text. */
function sameBlock(a: string | undefined, b: string | undefined): boolean {
  const ca = tryCidr(a);
  const cb = tryCidr(b);
  if (ca === undefined || cb === undefined) return a === b;
  return (
    ca.family === cb.family && ca.network === cb.network && ca.prefixLength === cb.prefixLength
  );
}
