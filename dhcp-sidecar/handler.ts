/**
 * One handler per DHCP message type (RFC 2131 §4.3), pure apart from the pool they update: a
 * request and the backend's view in, a reply (or silence) and what happened out. The socket loop
 * in server.ts sends the reply and counts the outcome.
 */
import type { Backend, NetworkConfig, Reservation } from './backend.ts';
import { classify, decideBoot, type BootDecision, type BootFiles } from './boot.ts';
import {
  BROADCAST_FLAG,
  MessageType,
  Op,
  Opt,
  getIp,
  getU16,
  getU8,
  intToIp,
  macOf,
  messageTypeName,
  optClasslessRoutes,
  optDomainSearch,
  optEncapsulated,
  optIps,
  optString,
  optU32,
  optU8,
  type DhcpPacket,
  type MessageTypeName,
} from './codec.ts';
import type { Pool } from './pool.ts';
import { inSubnet, maskOf, prefixOf } from './subnet.ts';

export interface ServerConfig {
  /** The sidecar's address on the provisioning network: option 54, siaddr, TFTP server. */
  serverIp: string;
  httpBase: string;
  /** Boot environment for machines the API does not know. */
  discoveryBootEnv: string;
  leaseSeconds: number;
  poolLeaseSeconds: number;
  /** Short leases for PXE-stage clients in the pool (ANCHORS §7.1: MAAS uses 30 s). */
  pxeLeaseSeconds: number;
  files?: BootFiles;
  /**
   * RFC 5107: the relay's server identifier override (option 82 sub-option 11) for this request:
   * replies carry it as option 54, and a client naming it has chosen this server. Set per request
   * by {@link handle}, never configured.
   */
  serverIdOverride?: string;
}

export interface HandlerDeps {
  backend: Backend;
  /** The discovery pool of the served network (this sidecar's own link). */
  pool: Pool | undefined;
  /** The discovery pool of a network reached through relays (giaddr), if it has one. */
  poolFor?: (net: NetworkConfig) => Pool | undefined;
  config: ServerConfig;
  now: number;
}

export type Outcome =
  'offered' | 'acked' | 'nakked' | 'informed' | 'released' | 'declined' | 'ignored' | 'dropped';

export interface Result {
  type: MessageTypeName | 'UNKNOWN';
  outcome: Outcome;
  reason?: string;
  mac?: string;
  reply?: { packet: DhcpPacket; address: string; port: number; maxSize: number };
  /** The boot environment a reply carried (for logs and the HTTP side). */
  bootEnv?: string;
  reservation?: Reservation;
}

const BROADCAST = '255.255.255.255';
const ZERO = '0.0.0.0';

export { inSubnet };

/** RFC 2131 §4.1: where a reply goes. */
export function replyTarget(req: DhcpPacket, nak: boolean): { address: string; port: number } {
  if (req.giaddr !== ZERO) return { address: req.giaddr, port: 67 };
  if (nak) return { address: BROADCAST, port: 68 };
  if (req.ciaddr !== ZERO) return { address: req.ciaddr, port: 68 };
  // Unicast to yiaddr would need an ARP entry for a host that has no address yet; Node's
  // dgram cannot add one, so we broadcast (RFC 2131 §4.1 allows it when unicast is impossible).
  return { address: BROADCAST, port: 68 };
}

/**
 * Option values every reply carries, encoded once: a reply only reads them (encode copies them
 * into its buffer), so replies share them. Bounded: a sidecar has one server address and a few
 * relay overrides and lease times.
 */
const TYPE_OPTS: readonly Buffer[] = Array.from({ length: 9 }, (_, t) => optU8(t));
const serverIdOpts = new Map<string, Buffer>();
const leaseOpts = new Map<number, readonly [Buffer, Buffer, Buffer]>();

function cached<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  let v = m.get(k);
  if (v === undefined) {
    v = make();
    if (m.size >= 64) m.clear();
    m.set(k, v);
  }
  return v;
}

/** RFC 2132 §9.2, §9.11, §9.12: lease time, T1 = 1/2 and T2 = 7/8 of it. */
function leaseTimes(seconds: number): readonly [Buffer, Buffer, Buffer] {
  return cached(leaseOpts, seconds, () => [
    optU32(seconds),
    optU32(Math.floor(seconds / 2)),
    optU32(Math.floor((seconds * 7) / 8)),
  ]);
}

function baseReply(req: DhcpPacket, type: number, cfg: ServerConfig): DhcpPacket {
  const id = cfg.serverIdOverride ?? cfg.serverIp;
  return {
    op: Op.BOOTREPLY,
    htype: req.htype,
    hlen: req.hlen,
    hops: 0,
    xid: req.xid,
    secs: 0,
    flags: req.flags & BROADCAST_FLAG,
    ciaddr: ZERO,
    yiaddr: ZERO,
    // ANCHORS §7.1: always set siaddr and option 54, or PXE ROMs go looking on port 4011.
    siaddr: cfg.serverIp,
    giaddr: req.giaddr,
    chaddr: req.chaddr,
    sname: '',
    file: '',
    options: new Map([
      [Opt.MESSAGE_TYPE, TYPE_OPTS[type] ?? optU8(type)],
      [Opt.SERVER_ID, cached(serverIdOpts, id, () => optIps([id]))],
    ]),
  };
}

/** A network's option values, encoded once per NetworkConfig object (backends replace the
 * object when the Network changes), in the order replies carry them. Read-only. */
interface NetOptions {
  before: readonly (readonly [number, Buffer])[];
  domain: Buffer | undefined;
  after: readonly (readonly [number, Buffer])[];
}
const netOptions = new WeakMap<NetworkConfig, NetOptions>();

function encodeNetOptions(net: NetworkConfig): NetOptions {
  const { net: base, bits } = prefixOf(net.subnet);
  const mask = maskOf(bits);
  const before: [number, Buffer][] = [[Opt.SUBNET_MASK, optIps([intToIp(mask)])]];
  if (net.router) before.push([Opt.ROUTER, optIps([net.router])]);
  if (net.dns.length > 0) before.push([Opt.DNS, optIps(net.dns)]);
  if (net.ntp.length > 0) before.push([Opt.NTP, optIps(net.ntp)]);
  before.push([Opt.BROADCAST, optIps([intToIp((base | ~mask) >>> 0)])]);
  if (net.mtu !== undefined) {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(net.mtu);
    before.push([Opt.MTU, b]);
  }
  const after: [number, Buffer][] = [];
  if (net.search.length > 0) after.push([Opt.DOMAIN_SEARCH, optDomainSearch(net.search)]);
  if (net.routes.length > 0) after.push([Opt.CLASSLESS_ROUTES, optClasslessRoutes(net.routes)]);
  return { before, domain: net.domain ? optString(net.domain) : undefined, after };
}

function networkOptions(reply: DhcpPacket, net: NetworkConfig, res: Reservation | undefined): void {
  const o = reply.options;
  let n = netOptions.get(net);
  if (n === undefined) {
    n = encodeNetOptions(net);
    netOptions.set(net, n);
  }
  for (const [code, data] of n.before) o.set(code, data);
  let domain = n.domain;
  if (res) {
    const dot = res.node.indexOf('.');
    o.set(Opt.HOSTNAME, optString(dot === -1 ? res.node : res.node.slice(0, dot)));
    if (dot !== -1) domain = optString(res.node.slice(dot + 1));
  }
  if (domain && domain.length > 0) o.set(Opt.DOMAIN_NAME, domain);
  for (const [code, data] of n.after) o.set(code, data);
}

function bootOptions(reply: DhcpPacket, req: DhcpPacket, d: BootDecision, cfg: ServerConfig): void {
  const o = reply.options;
  // ANCHORS §7.2: set both the BOOTP fields and options 66/67; some ROMs read only one.
  reply.file = d.file.length < 128 ? d.file : '';
  o.set(Opt.BOOTFILE, optString(d.file));
  if (d.tftp) {
    reply.sname = cfg.serverIp;
    o.set(Opt.TFTP_SERVER, optString(cfg.serverIp));
  }
  if (d.vendorClass) o.set(Opt.VENDOR_CLASS, optString(d.vendorClass));
  // PXE spec: vendor option 6 = 8 tells the ROM to skip boot-server discovery.
  if (d.vendorClass === 'PXEClient')
    o.set(Opt.VENDOR_SPECIFIC, optEncapsulated([[6, Buffer.from([8])]]));
  if (d.ipxeNoProxy) o.set(Opt.IPXE_ENCAP, optEncapsulated([[176, Buffer.from([1])]]));
  const guid = req.options.get(Opt.CLIENT_GUID);
  if (guid && d.vendorClass) o.set(Opt.CLIENT_GUID, guid);
}

function maxSize(req: DhcpPacket): number {
  const m = getU16(req, Opt.MAX_SIZE);
  return m !== undefined && m >= 576 ? Math.min(m, 1500) : 576;
}

interface Binding {
  address: string;
  reservation?: Reservation;
  leaseSeconds: number;
}

interface Reserved extends Reservation {
  address: string;
}

/** Builds an OFFER or ACK carrying the address, network options and boot options. */
function leaseReply(
  req: DhcpPacket,
  type: number,
  b: Binding | undefined,
  deps: HandlerDeps,
  net: NetworkConfig,
  mac: string,
  res: Reservation | undefined,
  known: Reservation | undefined,
): { reply: DhcpPacket; bootEnv: string } {
  const cfg = deps.config;
  const reply = baseReply(req, type, cfg);
  if (b) {
    reply.yiaddr = b.address;
    const [lease, t1, t2] = leaseTimes(b.leaseSeconds);
    reply.options.set(Opt.LEASE_TIME, lease);
    reply.options.set(Opt.RENEWAL_T1, t1);
    reply.options.set(Opt.REBINDING_T2, t2);
  } else {
    reply.ciaddr = req.ciaddr;
  }
  networkOptions(reply, net, res);
  const bootEnv = known?.bootEnv ?? cfg.discoveryBootEnv;
  const d = decideBoot(classify(req), deps.backend.bootEnv(bootEnv), {
    mac,
    httpBase: cfg.httpBase,
    ...(cfg.files ? { files: cfg.files } : {}),
  });
  if (d) bootOptions(reply, req, d, cfg);
  // RFC 3046 §2.2: a server echoes the relay agent information option.
  const ri = req.options.get(Opt.RELAY_AGENT);
  if (ri && req.giaddr !== ZERO) reply.options.set(Opt.RELAY_AGENT, ri);
  return { reply, bootEnv };
}

function nak(req: DhcpPacket, cfg: ServerConfig, message: string): DhcpPacket {
  const r = baseReply(req, MessageType.NAK, cfg);
  r.siaddr = ZERO;
  r.flags = r.flags | (req.giaddr !== ZERO ? BROADCAST_FLAG : 0);
  r.options.set(Opt.MESSAGE, optString(message));
  return r;
}

function poolLease(deps: HandlerDeps, req: DhcpPacket): number {
  const c = classify(req);
  return c.pxe || c.httpClient || c.ipxe
    ? deps.config.pxeLeaseSeconds
    : deps.config.poolLeaseSeconds;
}

/** Handles one decoded request. Never throws for client input. */
export function handle(req: DhcpPacket, deps: HandlerDeps): Result {
  const type = messageTypeName(getU8(req, Opt.MESSAGE_TYPE));
  const mac = macOf(req);
  const base = { type, ...(mac ? { mac } : {}) };
  if (req.op !== Op.BOOTREQUEST) return { ...base, outcome: 'dropped', reason: 'not a request' };
  if (!mac) return { ...base, outcome: 'dropped', reason: 'not an Ethernet client' };
  if (!deps.backend.ready()) return { ...base, outcome: 'ignored', reason: 'backend not ready' };
  const local = deps.backend.network();
  let net = local;
  const relay = req.giaddr !== ZERO ? relayInfo(req) : {};
  if (req.giaddr !== ZERO) {
    // Relayed (RFC 2131 §4.3.1): the client's network is the one holding the relay's link
    // selection (RFC 3527, option 82.5) when present, else its giaddr.
    const link = relay.linkSelection ?? req.giaddr;
    net = local && inSubnet(link, local.subnet) ? local : deps.backend.networkFor(link);
    if (!net)
      return {
        ...base,
        outcome: 'ignored',
        reason: `relayed from ${link}, on no network this sidecar knows`,
      };
  }
  if (!net) return { ...base, outcome: 'ignored', reason: 'network not known yet' };
  if (net.mode === 'off')
    return { ...base, outcome: 'ignored', reason: `DHCP is off on network ${net.name}` };
  if (net !== local || relay.serverIdOverride !== undefined) {
    deps = {
      ...deps,
      pool: net === local ? deps.pool : deps.poolFor?.(net),
      ...(relay.serverIdOverride !== undefined
        ? { config: { ...deps.config, serverIdOverride: relay.serverIdOverride } }
        : {}),
    };
  }
  const known = deps.backend.reservation(mac, net.name);
  // The backend's object itself: nothing below changes it, so a copy would only cost.
  const r: Reserved | undefined =
    known?.address !== undefined && inSubnet(known.address, net.subnet)
      ? (known as Reserved)
      : undefined;
  const withRes = known ? { reservation: known } : {};
  if (net.mode === 'proxy') return proxy(req, deps, mac, known, base, withRes);
  switch (type) {
    case 'DISCOVER':
      return discover(req, deps, net, mac, r, base, withRes);
    case 'REQUEST':
      return request(req, deps, net, mac, r, base, withRes);
    case 'DECLINE':
      return decline(req, deps, mac, r, base);
    case 'RELEASE':
      return release(req, deps, mac, r, base);
    case 'INFORM':
      return inform(req, deps, net, mac, r, base, withRes);
    default:
      return { ...base, outcome: 'dropped', reason: 'not a client message type' };
  }
}

type Base = { type: MessageTypeName | 'UNKNOWN'; mac?: string };

/** What a relay told us in option 82 (RFC 3046) beyond circuit and remote id. */
export interface RelayInfo {
  /** RFC 3527 sub-option 5: the client's link, when it is not the giaddr's. */
  linkSelection?: string;
  /** RFC 5107 sub-option 11: the address the client must use as our server identifier. */
  serverIdOverride?: string;
}

/** Parses option 82's sub-options; malformed ones end the parse (what came before counts). */
export function relayInfo(req: DhcpPacket): RelayInfo {
  const v = req.options.get(Opt.RELAY_AGENT);
  const out: RelayInfo = {};
  if (!v) return out;
  let i = 0;
  while (i + 2 <= v.length) {
    const code = v[i] ?? 0;
    const len = v[i + 1] ?? 0;
    if (i + 2 + len > v.length) break;
    if ((code === 5 || code === 11) && len === 4) {
      const ip = `${String(v[i + 2])}.${String(v[i + 3])}.${String(v[i + 4])}.${String(v[i + 5])}`;
      if (code === 5) out.linkSelection = ip;
      else out.serverIdOverride = ip;
    }
    i += 2 + len;
  }
  return out;
}

/** Whether a client's server identifier (option 54) names this server. */
function isUs(id: string | undefined, cfg: ServerConfig): boolean {
  return id !== undefined && (id === cfg.serverIp || id === cfg.serverIdOverride);
}
type WithRes = { reservation?: Reservation };

function send(req: DhcpPacket, packet: DhcpPacket, nakked: boolean): NonNullable<Result['reply']> {
  return { packet, ...replyTarget(req, nakked), maxSize: maxSize(req) };
}

/** RFC 2131 §4.3.1 */
function discover(
  req: DhcpPacket,
  deps: HandlerDeps,
  net: NetworkConfig,
  mac: string,
  res: Reserved | undefined,
  base: Base,
  withRes: WithRes,
): Result {
  let b: Binding;
  if (res) {
    b = { address: res.address, reservation: res, leaseSeconds: deps.config.leaseSeconds };
  } else {
    if (!deps.pool)
      return { ...base, outcome: 'ignored', reason: 'unknown MAC and no discovery pool' };
    const got = deps.pool.offer(mac, getIp(req, Opt.REQUESTED_IP), deps.now);
    if (!got.ok) return { ...base, outcome: 'dropped', reason: got.reason };
    b = { address: got.lease.address, leaseSeconds: poolLease(deps, req) };
  }
  const { reply, bootEnv } = leaseReply(
    req,
    MessageType.OFFER,
    b,
    deps,
    net,
    mac,
    res,
    withRes.reservation,
  );
  return { ...base, ...withRes, outcome: 'offered', bootEnv, reply: send(req, reply, false) };
}

/** RFC 2131 §4.3.2: SELECTING, INIT-REBOOT, RENEWING/REBINDING. */
function request(
  req: DhcpPacket,
  deps: HandlerDeps,
  net: NetworkConfig,
  mac: string,
  res: Reserved | undefined,
  base: Base,
  withRes: WithRes,
): Result {
  const cfg = deps.config;
  const serverId = getIp(req, Opt.SERVER_ID);
  const requested = getIp(req, Opt.REQUESTED_IP);
  let wanted: string;
  if (serverId !== undefined) {
    // SELECTING: the client names the server it chose.
    if (!isUs(serverId, cfg)) {
      deps.pool?.cancelOffer(mac, deps.now);
      return { ...base, outcome: 'ignored', reason: 'client chose another server' };
    }
    if (requested === undefined)
      return { ...base, outcome: 'dropped', reason: 'SELECTING REQUEST without option 50' };
    wanted = requested;
  } else if (requested !== undefined) {
    wanted = requested; // INIT-REBOOT
  } else if (req.ciaddr !== ZERO) {
    wanted = req.ciaddr; // RENEWING (unicast) or REBINDING (broadcast)
  } else {
    return { ...base, outcome: 'dropped', reason: 'REQUEST names no address' };
  }
  const nakWith = (why: string): Result => ({
    ...base,
    outcome: 'nakked',
    reason: why,
    reply: send(req, nak(req, cfg, why), true),
  });
  if (!inSubnet(wanted, net.subnet)) {
    // INIT-REBOOT on the wrong network: NAK (§4.3.2); renewing elsewhere: not ours to answer.
    if (serverId === undefined && requested === undefined)
      return { ...base, outcome: 'ignored', reason: 'address outside the served network' };
    return nakWith(`${wanted} is not on network ${net.name}`);
  }
  let b: Binding;
  if (res) {
    if (wanted !== res.address) return nakWith(`${mac} is reserved ${res.address}`);
    b = { address: res.address, reservation: res, leaseSeconds: cfg.leaseSeconds };
  } else {
    if (!deps.pool?.contains(wanted)) return nakWith(`${wanted} is not in the discovery pool`);
    if (deps.backend.isReserved(wanted)) return nakWith(`${wanted} is reserved for a node`);
    const leaseSeconds = poolLease(deps, req);
    const got = deps.pool.bind(mac, wanted, leaseSeconds * 1000, deps.now);
    if (!got.ok) return nakWith(got.reason);
    b = { address: wanted, leaseSeconds };
  }
  const { reply, bootEnv } = leaseReply(
    req,
    MessageType.ACK,
    b,
    deps,
    net,
    mac,
    res,
    withRes.reservation,
  );
  reply.ciaddr = req.ciaddr;
  return { ...base, ...withRes, outcome: 'acked', bootEnv, reply: send(req, reply, false) };
}

/**
 * proxyDHCP (PXE specification 2.1, §2.2.2 and §2.2.3): another server hands out the addresses;
 * PXE clients (option 60 PXEClient or HTTPClient, or iPXE) get boot information only: no
 * yiaddr, no lease, no network options, option 60 echoed, option 54 and siaddr set (and option
 * 43 sub-option 6 = 8: boot from the file named here, no boot-server discovery). A DISCOVER is
 * answered with an OFFER; a REQUEST (on port 67 naming this server, or on port 4011 as iPXE
 * sends it once it has its address) with an ACK. Everything else is left to the address server.
 */
function proxy(
  req: DhcpPacket,
  deps: HandlerDeps,
  mac: string,
  known: Reservation | undefined,
  base: Base,
  withRes: WithRes,
): Result {
  const c = classify(req);
  if (!c.pxe && !c.httpClient && !c.ipxe)
    return { ...base, outcome: 'ignored', reason: 'proxyDHCP answers PXE clients only' };
  let type: number;
  if (base.type === 'DISCOVER') type = MessageType.OFFER;
  else if (base.type === 'REQUEST' || base.type === 'INFORM') {
    const id = getIp(req, Opt.SERVER_ID);
    if (id !== undefined && !isUs(id, deps.config))
      return { ...base, outcome: 'ignored', reason: 'REQUEST for the address server' };
    type = MessageType.ACK;
  } else
    return { ...base, outcome: 'ignored', reason: 'proxyDHCP leaves this to the address server' };
  const cfg = deps.config;
  const bootEnv = known?.bootEnv ?? cfg.discoveryBootEnv;
  const d = decideBoot(c, deps.backend.bootEnv(bootEnv), {
    mac,
    httpBase: cfg.httpBase,
    ...(cfg.files ? { files: cfg.files } : {}),
  });
  if (!d) return { ...base, ...withRes, outcome: 'ignored', reason: `${bootEnv} boots locally` };
  const reply = baseReply(req, type, cfg);
  reply.ciaddr = req.ciaddr;
  bootOptions(reply, req, d, cfg);
  // PXE spec: a proxyDHCP reply always carries option 60 (PXEClient), even to iPXE.
  if (!reply.options.has(Opt.VENDOR_CLASS))
    reply.options.set(Opt.VENDOR_CLASS, optString('PXEClient'));
  const ri = req.options.get(Opt.RELAY_AGENT);
  if (ri && req.giaddr !== ZERO) reply.options.set(Opt.RELAY_AGENT, ri);
  return {
    ...base,
    ...withRes,
    outcome: type === MessageType.OFFER ? 'offered' : 'acked',
    bootEnv,
    reply: send(req, reply, false),
  };
}

/** RFC 2131 §4.3.3: the address is in use elsewhere; mark it and stay silent. */
function decline(
  req: DhcpPacket,
  deps: HandlerDeps,
  mac: string,
  res: Reserved | undefined,
  base: Base,
): Result {
  if (!isUs(getIp(req, Opt.SERVER_ID), deps.config))
    return { ...base, outcome: 'ignored', reason: 'DECLINE for another server' };
  const addr = getIp(req, Opt.REQUESTED_IP);
  if (addr === undefined)
    return { ...base, outcome: 'dropped', reason: 'DECLINE without option 50' };
  if (res) return { ...base, outcome: 'declined', reason: `reserved ${addr} reported in use` };
  const ok = deps.pool?.decline(mac, addr, deps.now) ?? false;
  return ok
    ? { ...base, outcome: 'declined' }
    : { ...base, outcome: 'ignored', reason: `${addr} is not in the discovery pool` };
}

/** RFC 2131 §4.3.4: the client gives its address back; no reply. */
function release(
  req: DhcpPacket,
  deps: HandlerDeps,
  mac: string,
  res: Reserved | undefined,
  base: Base,
): Result {
  if (!isUs(getIp(req, Opt.SERVER_ID), deps.config))
    return { ...base, outcome: 'ignored', reason: 'RELEASE for another server' };
  if (res) return { ...base, outcome: 'released' }; // reservations stay with their node
  const ok = deps.pool?.release(mac, req.ciaddr, deps.now) ?? false;
  return ok
    ? { ...base, outcome: 'released' }
    : { ...base, outcome: 'ignored', reason: `${mac} holds no lease on ${req.ciaddr}` };
}

/** RFC 2131 §4.3.5: configuration only; no lease time, no yiaddr, unicast to ciaddr. */
function inform(
  req: DhcpPacket,
  deps: HandlerDeps,
  net: NetworkConfig,
  mac: string,
  res: Reserved | undefined,
  base: Base,
  withRes: WithRes,
): Result {
  if (req.ciaddr === ZERO) return { ...base, outcome: 'dropped', reason: 'INFORM without ciaddr' };
  const { reply, bootEnv } = leaseReply(
    req,
    MessageType.ACK,
    undefined,
    deps,
    net,
    mac,
    res,
    withRes.reservation,
  );
  return { ...base, ...withRes, outcome: 'informed', bootEnv, reply: send(req, reply, false) };
}
