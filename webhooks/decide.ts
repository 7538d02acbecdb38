/**
 * Admission decisions for Crowbar's kinds: what the CRD schema and its CEL rules cannot check
 * because it needs other objects. Pure: a request and a snapshot of the cluster in, a verdict
 * out. Every refusal says what to do instead.
 *
 * The rules come from CROWBAR-MODEL.md: §1.2 (constraints enforced at bind time), §1.3 (role
 * requires are late-bound and must stay acyclic), §1.4 (proposed data is editable only while
 * proposed; test_if_destroyable), §1.5 (the system deployment is never proposed or destroyed; a
 * deployment with children is not destroyed).
 *
 * Networks and node hints are judged by the IPAM validators (operator/ipam/validate.ts, issue 5
 * "Admission and bad input") through the Network controller's own `networkProblems`, so the
 * webhook refuses exactly what the controller would report as `Valid=False`.
 */
import { dataProblem } from './limits.ts';
import { isDeepStrictEqual } from 'node:util';
import type {
  BootEnv,
  Deployment,
  Network,
  NetworkAllocation,
  Node,
  NodeRole,
  Role,
} from '../generated/crowbar.ts';
import { GROUP } from '../generated/crowbar.ts';
import { planBind } from '../operator/annealer/binding.ts';
import { findCycles } from '../operator/annealer/role-graph.ts';
import {
  SYSTEM_DEPLOYMENT,
  buildWorld,
  childrenIndex,
  compareNames,
  toRoleView,
  type NodeRoleView,
  type World,
} from '../operator/annealer/world.ts';
import { NetworkController } from '../operator/controllers/network/network.ts';
import { networkProblems } from '../operator/controllers/network/plan.ts';
import { validateHints, type Problem } from '../operator/ipam/validate.ts';
import { allow, deny, type AdmissionRequest, type Decision } from './admission.ts';
import type { WatchedKind } from './state.ts';

/** The cluster as the webhook sees it: every object of each kind, as read from the API. */
export interface ClusterSnapshot {
  readonly roles: readonly Role[];
  readonly noderoles: readonly NodeRole[];
  readonly nodes: readonly Node[];
  readonly deployments: readonly Deployment[];
  readonly networks: readonly Network[];
  readonly networkallocations: readonly NetworkAllocation[];
  readonly bootenvs: readonly BootEnv[];
}

/** At most this many names are listed in a message; the rest are counted. */
export const MAX_NAMED = 5;

/** `a, b, c` or `a, b, c, d, e and 7 more`. */
export function nameList(names: readonly string[], max = MAX_NAMED): string {
  const shown = names.slice(0, max).join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

type Resource = 'roles' | 'noderoles' | 'deployments' | 'networks' | 'nodes';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const isStringArray = (v: unknown): boolean =>
  Array.isArray(v) && v.every((x) => typeof x === 'string');

/** What a field this webhook reads must hold, when present (and whether it must be). */
type FieldCheck = readonly [
  field: string,
  kind: 'string' | 'strings' | 'object' | 'boolean' | ((x: unknown) => boolean),
  required: boolean,
];

/**
 * Whether the object holds, in the types the schema gives them, the fields the decisions read.
 * The API server validates against the CRD schema before calling validating webhooks, so this
 * fails only for a hand-made request, which is refused with 400 instead of throwing.
 */
function shaped(
  v: unknown,
  spec: readonly FieldCheck[],
  status: readonly FieldCheck[] = [],
): boolean {
  if (!isRecord(v) || !isRecord(v['metadata']) || !isRecord(v['spec'])) return false;
  if (typeof v['metadata']['name'] !== 'string') return false;
  if (v['status'] !== undefined && !isRecord(v['status'])) return false;
  const fits = (obj: Record<string, unknown>, checks: readonly FieldCheck[]): boolean =>
    checks.every(([field, kind, required]) => {
      const x = obj[field];
      if (x === undefined) return !required;
      if (kind === 'string') return typeof x === 'string';
      if (kind === 'strings') return isStringArray(x);
      if (kind === 'boolean') return typeof x === 'boolean';
      if (kind === 'object') return isRecord(x);
      return kind(x);
    });
  return fits(v['spec'], spec) && fits(isRecord(v['status']) ? v['status'] : {}, status);
}

const ROLE_SPEC: readonly FieldCheck[] = [
  ['jig', 'string', true],
  ['requires', 'strings', false],
  ['conflicts', 'strings', false],
  ['provides', 'strings', false],
  ['flags', 'strings', false],
];
const NODEROLE_SPEC: readonly FieldCheck[] = [
  ['node', 'string', true],
  ['role', 'string', true],
  ['deployment', 'string', true],
  ['data', 'object', false],
];
const NODEROLE_STATUS: readonly FieldCheck[] = [['state', 'string', false]];
const DEPLOYMENT_SPEC: readonly FieldCheck[] = [
  ['state', 'string', false],
  ['parent', 'string', false],
];

/** An object holding these fields as strings (a spec.ranges entry, spec.router). */
const stringsIn =
  (...fields: readonly string[]) =>
  (x: unknown): boolean =>
    isRecord(x) && fields.every((f) => typeof x[f] === 'string');
const NETWORK_SPEC: readonly FieldCheck[] = [
  ['category', 'string', true],
  ['group', 'string', false],
  ['subnet', 'string', false],
  ['v6prefix', 'string', false],
  ['ranges', (x) => Array.isArray(x) && x.every(stringsIn('name', 'first', 'last')), false],
  ['router', stringsIn('address'), false],
];
const NETWORK_STATUS: readonly FieldCheck[] = [['v6prefix', 'string', false]];
const NODE_SPEC: readonly FieldCheck[] = [
  ['admin', 'boolean', false],
  ['hints', 'object', false],
  ['bootEnv', 'string', false],
];

const asRole = (v: unknown): Role | undefined => (shaped(v, ROLE_SPEC) ? (v as Role) : undefined);
const asNodeRole = (v: unknown): NodeRole | undefined =>
  shaped(v, NODEROLE_SPEC, NODEROLE_STATUS) ? (v as NodeRole) : undefined;
const asDeployment = (v: unknown): Deployment | undefined =>
  shaped(v, DEPLOYMENT_SPEC) ? (v as Deployment) : undefined;
const asNetwork = (v: unknown): Network | undefined =>
  shaped(v, NETWORK_SPEC, NETWORK_STATUS) ? (v as Network) : undefined;
const asNode = (v: unknown): Node | undefined => (shaped(v, NODE_SPEC) ? (v as Node) : undefined);

/**
 * Decides one admission request against a snapshot of the cluster. Requests for other groups,
 * for subresources (such as /status) and for operations without a rule are allowed.
 */
/**
 * The kinds a decision on `request` reads from its snapshot: what a fresh re-check lists (the
 * rest comes from the cache). A kind missing here is only read from the cache, never wrong.
 * Keep it in step with the decide* functions below.
 */
export function reads(
  request: Pick<AdmissionRequest, 'resource' | 'operation'>,
): readonly WatchedKind[] {
  const op = request.operation;
  switch (request.resource.resource as Resource) {
    case 'roles':
      return op === 'DELETE' ? ['NodeRole'] : ['Role'];
    case 'noderoles':
      // The noderole graph (buildWorld) is built from all four, deletes included.
      return op === 'UPDATE' || op === 'CONNECT' ? [] : ['Role', 'Node', 'Deployment', 'NodeRole'];
    case 'deployments':
      return op === 'DELETE' ? ['Deployment', 'NodeRole'] : [];
    case 'networks':
      return ['Network', 'NetworkAllocation'];
    case 'nodes':
      // Address hints (Network), aliases (Node), the boot environment (BootEnv).
      return op === 'DELETE' ? ['Node'] : ['Network', 'Node', 'BootEnv'];
    default:
      return [];
  }
}

export function decide(request: AdmissionRequest, snapshot: ClusterSnapshot): Decision {
  if (request.resource.group !== GROUP || request.subResource !== undefined) return allow;
  const resource = request.resource.resource as Resource;
  const op = request.operation;
  const target = op === 'DELETE' ? request.oldObject : request.object;
  const malformed = (kind: string): Decision =>
    deny(`the request carries no valid ${kind} object; send a complete object`, 400);
  // Free-form data first: the checks below compare and serialize it.
  if ((op === 'CREATE' || op === 'UPDATE') && isRecord(target) && isRecord(target['spec'])) {
    const spec = target['spec'];
    const test = spec['test'];
    const fields: [string, unknown][] = [
      ['spec.data', spec['data']],
      ['spec.template', spec['template']],
      ['spec.hints', spec['hints']],
      ['spec.test.wall', isRecord(test) ? test['wall'] : undefined],
    ];
    for (const [where, value] of fields) {
      const problem = dataProblem(value, where);
      if (problem !== undefined) {
        const meta = target['metadata'];
        const name = isRecord(meta) && typeof meta['name'] === 'string' ? meta['name'] : '';
        return deny(`${resource.replace(/s$/, '')} ${name}: ${problem}`);
      }
    }
  }
  switch (resource) {
    case 'roles': {
      if (op === 'DELETE') {
        const name = nameOf(request);
        return name === undefined ? malformed('Role') : decideRoleDelete(name, snapshot);
      }
      if (op !== 'CREATE' && op !== 'UPDATE') return allow;
      const role = asRole(target);
      if (!role) return malformed('Role');
      const old = op === 'UPDATE' ? asRole(request.oldObject) : undefined;
      return decideRoleWrite(role, old, snapshot);
    }
    case 'noderoles': {
      if (op === 'CONNECT') return allow;
      const nr = asNodeRole(target);
      if (op === 'DELETE') {
        const name = nr?.metadata.name ?? request.name;
        return name === undefined ? malformed('NodeRole') : decideNodeRoleDelete(name, snapshot);
      }
      if (!nr) return malformed('NodeRole');
      if (op === 'CREATE') return decideNodeRoleCreate(nr, snapshot);
      const old = asNodeRole(request.oldObject);
      return old ? decideNodeRoleUpdate(nr, old) : malformed('NodeRole');
    }
    case 'deployments': {
      if (op === 'DELETE') {
        const name = nameOf(request);
        return name === undefined
          ? malformed('Deployment')
          : decideDeploymentDelete(name, snapshot);
      }
      if (op !== 'UPDATE' && op !== 'CREATE') return allow;
      const dep = asDeployment(target);
      return dep ? decideDeploymentWrite(dep) : malformed('Deployment');
    }
    case 'networks': {
      if (op !== 'CREATE' && op !== 'UPDATE') return allow;
      const net = asNetwork(target);
      if (!net) return malformed('Network');
      const old = op === 'UPDATE' ? asNetwork(request.oldObject) : undefined;
      if (op === 'UPDATE' && !old) return malformed('Network');
      return decideNetworkWrite(net, old, snapshot);
    }
    case 'nodes': {
      if (op === 'DELETE') {
        const name = nameOf(request);
        return name === undefined ? malformed('Node') : decideNodeDelete(name, snapshot);
      }
      if (op !== 'CREATE' && op !== 'UPDATE') return allow;
      const node = asNode(target);
      if (!node) return malformed('Node');
      const old = op === 'UPDATE' ? asNode(request.oldObject) : undefined;
      if (op === 'UPDATE' && !old) return malformed('Node');
      return decideNodeWrite(node, old, snapshot);
    }
    default:
      return allow;
  }
}

function nameOf(request: AdmissionRequest): string | undefined {
  const old = request.oldObject;
  if (isRecord(old) && isRecord(old['metadata']) && typeof old['metadata']['name'] === 'string') {
    return old['metadata']['name'];
  }
  return request.name;
}

function sameSet(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  const x = new Set(a ?? []);
  const y = new Set(b ?? []);
  return x.size === y.size && [...x].every((v) => y.has(v));
}

/**
 * §1.3 enforce_acyclic: a role's requires must not close a cycle. A require naming a role that
 * does not exist yet is allowed (late binding); the cycle, if any, is caught when that role is
 * created with its own requires. An update that leaves requires alone is not re-judged, so a role
 * already in a cycle (made while the webhook was down) can still be edited to break it.
 */
function decideRoleWrite(role: Role, old: Role | undefined, snapshot: ClusterSnapshot): Decision {
  if (old && sameSet(old.spec.requires, role.spec.requires)) return allow;
  const roles = new Map(snapshot.roles.map((r) => [r.metadata.name ?? '', toRoleView(r)]));
  const cycles = findCycles(roles, toRoleView(role));
  if (cycles.length === 0) return allow;
  const name = role.metadata.name ?? '';
  return deny(
    `spec.requires of role ${name} would close a dependency cycle: ${cycles.join('; ')}. ` +
      `Remove the require of one of these roles on the next so that no role depends on itself`,
  );
}

/** A role stays while bindings of it exist: they would name a role that is gone. */
function decideRoleDelete(name: string, snapshot: ClusterSnapshot): Decision {
  const bound = snapshot.noderoles
    .filter((nr) => nr.spec.role === name)
    .map((nr) => nr.metadata.name ?? '')
    .sort(compareNames);
  if (bound.length === 0) return allow;
  return deny(
    `role ${name} is still bound by ${bound.length} noderole(s) (${nameList(bound)}); ` +
      `delete those noderoles first (kubectl get noderoles -o wide shows each one's role)`,
  );
}

/**
 * §1.2 constraints enforced at bind time and §6.1 binding, by the same planner the operator's
 * binder runs: the role, node and deployment exist; the role (and every role it needs bound) is
 * not abstract and has no unresolved requires; no conflict or provides clash on the node.
 */
function decideNodeRoleCreate(nr: NodeRole, snapshot: ClusterSnapshot): Decision {
  const { role, node, deployment } = nr.spec;
  const world = buildWorld(snapshot);
  const prefix = `cannot bind role ${role} to node ${node}`;
  if (!world.roles.has(role)) {
    return deny(`${prefix}: role ${role} does not exist; create the Role first`);
  }
  if (!world.nodes.has(node)) {
    return deny(
      `${prefix}: node ${node} does not exist; create the Node (named by its FQDN) first`,
    );
  }
  if (!world.deployments.has(deployment)) {
    return deny(
      `${prefix}: deployment ${deployment} does not exist; create it first (spec.parent: ${SYSTEM_DEPLOYMENT} for a top-level one)`,
    );
  }
  const plan = planBind(world, { role, node, deployment });
  return plan.ok ? allow : deny(plan.reason);
}

/**
 * §1.4: proposed data is editable only while the noderole is proposed; committed data is what
 * runs use. Other spec fields (available, retry) and metadata may change at any time; the CRD
 * makes node, role and deployment immutable.
 */
function decideNodeRoleUpdate(nr: NodeRole, old: NodeRole): Decision {
  const state = old.status?.state;
  if (state === undefined || state === 'proposed') return allow;
  // Proposing it in the same update is proposing first: runs read committed data only, and the
  // edit is committed when spec.proposed goes back to false.
  if (nr.spec.proposed === true) return allow;
  if (isDeepStrictEqual(old.spec.data ?? {}, nr.spec.data ?? {})) return allow;
  return deny(
    `noderole ${nr.metadata.name ?? ''} is ${state}: spec.data can change only while it is proposed; ` +
      `set spec.proposed: true on it (in the same update or before), edit spec.data, then set spec.proposed: false to commit and run it again ` +
      `(or propose all of node ${nr.spec.node}'s noderoles with spec.proposed: true on the Node, or deployment ${nr.spec.deployment}'s with spec.state: proposed)`,
  );
}

/** The noderole's transitive children (§1.4 node_role_all_pcms), nearest first. */
function transitiveChildren(name: string, world: World): NodeRoleView[] {
  const index = childrenIndex(world.noderoles);
  const seen = new Set<string>([name]);
  const out: NodeRoleView[] = [];
  const queue = [name];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    for (const child of index.get(next) ?? []) {
      if (seen.has(child)) continue;
      seen.add(child);
      queue.push(child);
      const view = world.noderoles.get(child);
      if (view) out.push(view);
    }
  }
  return out;
}

/**
 * §1.4 test_if_destroyable: deletable if it has no children, or all its transitive children are
 * on its node, or all of them are proposed and have never run. Otherwise the children that have
 * run or are committed must go first (deepest first, as Crowbar destroys them: cohort DESC).
 */
function decideNodeRoleDelete(name: string, snapshot: ClusterSnapshot): Decision {
  const world = buildWorld(snapshot);
  const children = transitiveChildren(name, world);
  if (children.length === 0) return allow;
  const self = world.noderoles.get(name);
  const node = self?.node ?? name.slice(name.indexOf('.') + 1);
  if (children.every((c) => c.node === node)) return allow;
  const live = children.filter((c) => c.state !== 'proposed' || c.runCount > 0);
  if (live.length === 0) return allow;
  const ordered = live
    .sort((a, b) => b.cohort - a.cohort || compareNames(a.name, b.name))
    .map((c) => `${c.name} (${c.state}, ${c.runCount} run(s))`);
  return deny(
    `noderole ${name} has ${live.length} live child noderole(s) that depend on it: ${nameList(ordered)}; ` +
      `delete those children first (deepest first), then delete ${name}`,
  );
}

/** §1.5: the system deployment "cannot be placed into proposed" (CEL checks this too). */
function decideDeploymentWrite(dep: Deployment): Decision {
  if (dep.metadata.name === SYSTEM_DEPLOYMENT && dep.spec.state === 'proposed') {
    return deny(
      `the system deployment cannot be proposed: it is always committed; ` +
        `create a child deployment (spec.parent: ${SYSTEM_DEPLOYMENT}) and propose that instead`,
    );
  }
  return allow;
}

/** §1.5 before_destroy: refused for the system deployment or one with children. */
function decideDeploymentDelete(name: string, snapshot: ClusterSnapshot): Decision {
  if (name === SYSTEM_DEPLOYMENT) {
    return deny(
      `the system deployment cannot be deleted: it is the root of the deployment tree, where new nodes land`,
    );
  }
  const noderoles = snapshot.noderoles
    .filter((nr) => nr.spec.deployment === name)
    .map((nr) => nr.metadata.name ?? '')
    .sort(compareNames);
  const children = snapshot.deployments
    .filter((d) => d.spec.parent === name)
    .map((d) => d.metadata.name ?? '')
    .sort(compareNames);
  const reasons: string[] = [];
  if (noderoles.length > 0) {
    reasons.push(
      `it still has ${noderoles.length} noderole(s) (${nameList(noderoles)}): delete them first`,
    );
  }
  if (children.length > 0) {
    reasons.push(
      `it is the parent of ${children.length} deployment(s) (${nameList(children)}): delete them or change their spec.parent first`,
    );
  }
  if (reasons.length === 0) return allow;
  return deny(`deployment ${name} cannot be deleted: ${reasons.join('; ')}`);
}

/** At most this many problems are spelled out in one refusal; the rest are counted. */
export const MAX_PROBLEMS = 5;

/**
 * One refusal for a list of problems: `<prefix>: <problem>; <problem>`, each naming its field
 * (prepended when the validator's message does not) and saying what to fix.
 */
function denyProblems(prefix: string, problems: readonly Problem[]): Decision {
  const messages = [
    ...new Set(
      problems.map((p) => (p.message.includes(p.field) ? p.message : `${p.field}: ${p.message}`)),
    ),
  ];
  const shown = messages.slice(0, MAX_PROBLEMS).join('; ');
  const more =
    messages.length > MAX_PROBLEMS ? `; and ${messages.length - MAX_PROBLEMS} more problem(s)` : '';
  return deny(`${prefix}: ${shown}${more}`);
}

/**
 * §7.3 and issue 5 "Admission and bad input": a network's own ranges and router
 * (validateNetwork), a subnet or /64 overlapping another network of its group
 * (validateGroupSubnets), and a subnet, /64 or range change that strands existing allocations
 * (validateNetworkUpdate). All three come from the Network controller's `networkProblems`, with
 * the allocations read from the snapshot: it judges the change against the spec the allocations
 * were made under (read back from their addresses), so an edit that moves a subnet back to where
 * its allocations are is allowed even if the stored spec had drifted. An update that leaves the
 * spec alone (labels, finalizers) is not re-judged, so a network that went bad while the webhook
 * was down can still be deleted and fixed.
 */
function decideNetworkWrite(
  net: Network,
  old: Network | undefined,
  snapshot: ClusterSnapshot,
): Decision {
  if (old && isDeepStrictEqual(old.spec, net.spec)) return allow;
  const name = net.metadata.name ?? '';
  // status.v6prefix (the resolved `auto` /64) is the stored one on an update of the main
  // resource; fall back to oldObject's in case a client's request carries none.
  const status = net.status ?? old?.status;
  const view = NetworkController.view(status === undefined ? net : { ...net, status });
  const others = snapshot.networks
    .filter((n) => n.metadata.name !== name)
    .map((n) => NetworkController.view(n));
  const allocations = snapshot.networkallocations.filter((a) => a.spec.network === name);
  const problems = networkProblems(view, others, allocations);
  return problems.length === 0 ? allow : denyProblems(`invalid network ${name}`, problems);
}

/**
 * §10.3: the last admin node cannot be deleted: it runs Crowbar's own services (the bootstrap
 * roles), which every other node's clients depend on. Deleting any other node is allowed; the
 * operator then removes its noderoles (children first) and releases its addresses.
 */
function decideNodeDelete(name: string, snapshot: ClusterSnapshot): Decision {
  const node = snapshot.nodes.find((n) => n.metadata.name === name);
  if (node?.spec.admin !== true) return allow;
  const others = snapshot.nodes.filter(
    (n) => n.spec.admin === true && n.metadata.name !== name && !n.metadata.deletionTimestamp,
  );
  if (others.length > 0) return allow;
  return deny(
    `node ${name} is the last admin node and cannot be deleted: Crowbar's own services run there; ` +
      `make another node an admin node (spec.admin: true) first`,
  );
}

/**
 * A Node's `spec.bootEnv` names a BootEnv that exists: the DHCP and HTTP boot servers could not
 * serve one that does not, and the provisioning flow would wait forever for their
 * acknowledgement. Judged when the node is created and when its bootEnv changes (an update that
 * leaves it alone is not re-judged, so a node whose BootEnv was deleted can still be edited).
 * The API server applies the schema's default (`sledgehammer`) before calling the webhook.
 */
function bootEnvProblem(
  node: Node,
  old: Node | undefined,
  snapshot: ClusterSnapshot,
): string | undefined {
  const want = node.spec.bootEnv;
  if (want === undefined || (old && old.spec.bootEnv === want)) return undefined;
  const names = snapshot.bootenvs.map((b) => b.metadata.name ?? '').sort(compareNames);
  if (names.includes(want)) return undefined;
  return (
    `spec.bootEnv of node ${node.metadata.name ?? ''} names BootEnv ${want}, which does not exist; ` +
    (names.length === 0
      ? `create BootEnv ${want} first (no BootEnv exists: the chart and the DHCP sidecar create local and sledgehammer)`
      : `create BootEnv ${want} first, or name one that exists: ${nameList(names)} (kubectl get cbbootenv)`)
  );
}

/**
 * §7.4 hints: each `<network>-v4addr` / `<network>-v6addr` hint must be an address inside the
 * range the node is given addresses from on that network (validateHints). Hints naming networks
 * that do not exist yet are left alone. An update that changes neither the hints nor spec.admin
 * (which picks the range) is not re-judged, so a node whose network changed under it can still
 * be edited. Then its boot environment ({@link bootEnvProblem}).
 */
function decideNodeWrite(node: Node, old: Node | undefined, snapshot: ClusterSnapshot): Decision {
  const bootEnv = bootEnvProblem(node, old, snapshot);
  if (bootEnv !== undefined) return deny(bootEnv);
  const clash = aliasClash(node, old, snapshot);
  if (clash) return clash;
  const { hints, admin } = node.spec;
  if (hints === undefined || Object.keys(hints).length === 0) return allow;
  if (old && old.spec.admin === admin && isDeepStrictEqual(old.spec.hints, hints)) return allow;
  const name = node.metadata.name ?? '';
  const networks = snapshot.networks.map((n) => NetworkController.view(n));
  const problems = validateHints({ name, admin, hints }, networks);
  return problems.length === 0
    ? allow
    : denyProblems(`invalid address hints on node ${name}`, problems);
}

/**
 * Issue 11: a Node's DNS aliases (spec.aliases, served as CNAMEs by the DNS sidecar) name no
 * Node and no other Node's alias: a CNAME owner holds no other data (RFC 1034 §3.6.2), so a name
 * has one owner. Only a create or a change of the aliases is judged.
 */
function aliasClash(
  node: Node,
  old: Node | undefined,
  snapshot: ClusterSnapshot,
): Decision | undefined {
  const aliases = node.spec.aliases ?? [];
  if (aliases.length === 0 || (old && sameSet(old.spec.aliases, aliases))) return undefined;
  const name = node.metadata.name ?? '';
  const owner = new Map<string, string>([[name, "the node's own name"]]);
  for (const n of snapshot.nodes) {
    const other = n.metadata.name ?? '';
    if (other === name) continue;
    owner.set(other, `the name of node ${other}`);
    for (const a of n.spec.aliases ?? [])
      if (!owner.has(a)) owner.set(a, `an alias of node ${other}`);
  }
  const clashes = aliases.flatMap((a) => {
    const o = owner.get(a);
    return o === undefined ? [] : [`${a} is ${o}`];
  });
  if (clashes.length === 0) return undefined;
  return deny(
    `node ${name}: spec.aliases: ${nameList(clashes)}; a DNS name has one owner: remove it from spec.aliases`,
  );
}
