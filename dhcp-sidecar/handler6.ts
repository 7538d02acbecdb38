/**
 * DHCPv6 handlers (RFC 8415 §18.3), pure: a decoded message, where it came from and the backend's
 * view in; a reply (or silence) and what happened out. The socket loop in server6.ts sends the
 * reply and counts the outcome.
 *
 * Addresses are reservations only: a client's IA_NA gets the v6 NetworkAllocation of the Node that
 * holds its MAC. The MAC comes from the relay's client link-layer address option (RFC 6939, 79)
 * when relayed, else from the client's DUID when it is a DUID-LL or DUID-LLT, else from the
 * modified EUI-64 of its link-local source address. DUIDs change between boot stages (firmware,
 * iPXE, installer, OS), so the DUID alone never identifies a machine.
 */
import type { Backend, NetworkConfig, Reservation } from './backend.ts';
import { decideBoot, type BootFiles, type ClientInfo } from './boot.ts';
import {
  Msg6,
  Opt6,
  Status6,
  addressList,
  allOpt6,
  domainList,
  duidMac,
  eui64Mac,
  getOpt6,
  iaAddr,
  iaNa,
  inPrefix6,
  isRelay,
  linkLayerMac,
  msg6Name,
  normalizeIp6,
  parseClientArch,
  parseIaAddr,
  parseIaNa,
  parseLengthPrefixed,
  parseOro,
  parseVendorClass,
  statusCode,
  vendorClass,
  type Message6,
  type Msg6Name,
  type Option6,
  type Packet6,
  type Relay6,
} from './codec6.ts';

export interface Server6Config {
  /** The sidecar's DUID (option 2). */
  serverDuid: Buffer;
  /** The sidecar's IPv6 address on the provisioning link (TFTP URLs). */
  serverIp6: string;
  /** e.g. http://[fd00::1]:8080 */
  httpBase6: string;
  discoveryBootEnv: string;
  /** Valid lifetime of reserved addresses; preferred = valid, T1 = 1/2, T2 = 4/5 of it. */
  leaseSeconds: number;
  /** RFC 8415 §18.3.1: answer a SOLICIT with Rapid Commit by a REPLY (two-message exchange). */
  rapidCommit: boolean;
  files?: BootFiles;
}

export interface Handler6Deps {
  backend: Backend;
  config: Server6Config;
}

export type Outcome6 =
  | 'advertised'
  | 'replied'
  | 'released'
  | 'declined'
  | 'confirmed'
  | 'informed'
  | 'ignored'
  | 'dropped';

export interface Result6 {
  /** The client message's type (inside any relay nesting). */
  type: Msg6Name | 'UNKNOWN';
  outcome: Outcome6;
  reason?: string;
  mac?: string;
  /** Whether the message came through relays. */
  relayed: boolean;
  reply?: { packet: Packet6; address: string; port: number };
  /** The address an IA_NA carried, if any. */
  address?: string;
  bootEnv?: string;
  reservation?: Reservation;
}

/** RFC 8415 §7.2 */
export const CLIENT_PORT = 546;
export const SERVER_PORT = 547;

/** Enterprise number 343 (Intel): what PXE and UEFI HTTP boot clients send in option 16. */
const PXE_ENTERPRISE = 343;

/** What the client says about itself (options 15, 16, 61) in the terms boot.ts decides on. */
export function classify6(m: Message6): ClientInfo {
  const vc = getOpt6(m.options, Opt6.VENDOR_CLASS);
  const classes = vc ? (parseVendorClass(vc)?.data ?? []) : [];
  const uc = getOpt6(m.options, Opt6.USER_CLASS);
  const users = uc ? (parseLengthPrefixed(uc) ?? []) : [];
  return {
    arch: parseClientArch(getOpt6(m.options, Opt6.CLIENT_ARCH))?.[0],
    pxe: classes.some((c) => c.startsWith('PXEClient')),
    httpClient: classes.some((c) => c.startsWith('HTTPClient')),
    // iPXE sends its user class as one string; some builds without the length prefix.
    ipxe: users.includes('iPXE') || uc?.toString('latin1') === 'iPXE',
  };
}

/** The innermost relay (nearest the client) first, then the client message. */
function unwrap(p: Packet6): { relays: Relay6[]; msg: Message6 } | undefined {
  const relays: Relay6[] = [];
  let cur: Packet6 = p;
  while (isRelay(cur)) {
    if (cur.type !== Msg6.RELAY_FORW) return undefined;
    relays.unshift(cur);
    cur = cur.inner;
  }
  return { relays, msg: cur };
}

/** The client's MAC: relay option 79, the DUID's link-layer address, or the EUI-64 source. */
export function clientMac(
  msg: Message6,
  nearest: Relay6 | undefined,
  from: string,
): { mac: string; by: 'link-layer option' | 'duid' | 'eui-64' } | undefined {
  const ll = nearest
    ? linkLayerMac(getOpt6(nearest.options, Opt6.CLIENT_LINKLAYER_ADDR))
    : undefined;
  if (ll) return { mac: ll, by: 'link-layer option' };
  const d = duidMac(getOpt6(msg.options, Opt6.CLIENTID));
  if (d) return { mac: d, by: 'duid' };
  const e = eui64Mac(nearest ? nearest.peerAddress : from);
  return e ? { mac: e, by: 'eui-64' } : undefined;
}

/** Wraps a reply in one Relay-Reply per relay it came through (RFC 8415 §19.3), interface-id echoed. */
function wrap(reply: Message6, relays: readonly Relay6[]): Packet6 {
  let p: Packet6 = reply;
  for (const r of relays) {
    const iid = getOpt6(r.options, Opt6.INTERFACE_ID);
    p = {
      type: Msg6.RELAY_REPL,
      hopCount: r.hopCount,
      linkAddress: r.linkAddress,
      peerAddress: r.peerAddress,
      options: iid ? [{ code: Opt6.INTERFACE_ID, data: iid }] : [],
      inner: p,
    };
  }
  return p;
}

function lifetimes(cfg: Server6Config): { t1: number; t2: number; valid: number } {
  const valid = cfg.leaseSeconds;
  return { t1: Math.floor(valid / 2), t2: Math.floor((valid * 4) / 5), valid };
}

function iaWith(iaid: number, opts: Option6[], cfg: Server6Config, withTimes: boolean): Buffer {
  const t = lifetimes(cfg);
  return iaNa({ iaid, t1: withTimes ? t.t1 : 0, t2: withTimes ? t.t2 : 0, options: opts });
}

function addrOpt(address: string, valid: number): Option6 {
  return {
    code: Opt6.IAADDR,
    data: iaAddr({ address, preferred: valid, valid, options: [] }),
  };
}

function status(code: number, message: string): Option6 {
  return { code: Opt6.STATUS_CODE, data: statusCode(code, message) };
}

/** Configuration options (23, 24) and boot options (59, 16) for a reply. */
function configOptions(
  out: Option6[],
  msg: Message6,
  net: NetworkConfig,
  mac: string | undefined,
  known: Reservation | undefined,
  deps: Handler6Deps,
): string | undefined {
  const cfg = deps.config;
  if (net.dns6 && net.dns6.length > 0)
    out.push({ code: Opt6.DNS_SERVERS, data: addressList(net.dns6) });
  if (net.search.length > 0) out.push({ code: Opt6.DOMAIN_LIST, data: domainList(net.search) });
  if (mac === undefined) return undefined;
  const c = classify6(msg);
  const asked = parseOro(getOpt6(msg.options, Opt6.ORO)).includes(Opt6.BOOTFILE_URL);
  // RFC 5970 §3.1: a booting client asks for option 59; firmware that omits option 61 still gets
  // a first stage when it asked (boot.ts falls back to the BIOS/UEFI defaults).
  if (!asked && !c.pxe && !c.httpClient && !c.ipxe && c.arch === undefined) return undefined;
  const bootEnv = known?.bootEnv ?? cfg.discoveryBootEnv;
  const d = decideBoot(
    c.arch === undefined && !c.ipxe && !c.httpClient ? { ...c, arch: 7 } : c,
    deps.backend.bootEnv(bootEnv),
    { mac, httpBase: cfg.httpBase6, ...(cfg.files ? { files: cfg.files } : {}) },
  );
  if (!d) return bootEnv;
  // RFC 5970 §3.1: the boot file is a URL; TFTP ones name the server in brackets.
  const url = d.tftp ? `tftp://[${cfg.serverIp6}]/${d.file}` : d.file;
  out.push({ code: Opt6.BOOTFILE_URL, data: Buffer.from(url, 'latin1') });
  if (d.vendorClass === 'HTTPClient')
    out.push({ code: Opt6.VENDOR_CLASS, data: vendorClass(PXE_ENTERPRISE, ['HTTPClient']) });
  return bootEnv;
}

/** Handles one decoded message from `from` (the datagram's source address). Never throws for
 * client input. */
export function handle6(p: Packet6, from: string, deps: Handler6Deps): Result6 {
  const u = unwrap(p);
  if (!u)
    return {
      type: 'UNKNOWN',
      outcome: 'dropped',
      reason: 'relay-reply sent to a server',
      relayed: true,
    };
  const { relays, msg } = u;
  const type = msg6Name(msg.type);
  const relayed = relays.length > 0;
  const nearest = relays[0];
  const who = clientMac(msg, nearest, from);
  const base = { type, relayed, ...(who ? { mac: who.mac } : {}) };
  const drop = (reason: string): Result6 => ({ ...base, outcome: 'dropped', reason });
  const ignore = (reason: string): Result6 => ({ ...base, outcome: 'ignored', reason });
  if (
    msg.type === Msg6.ADVERTISE ||
    msg.type === Msg6.REPLY ||
    msg.type === Msg6.RECONFIGURE ||
    type === 'UNKNOWN'
  )
    return drop('not a client message type');
  if (!deps.backend.ready()) return ignore('backend not ready');
  // The client's link: the nearest relay's link-address when it names one (RFC 8415 §19.1.1),
  // else this sidecar's own.
  const local = deps.backend.network();
  let net = local;
  if (nearest && nearest.linkAddress !== '::') {
    const link = nearest.linkAddress;
    net =
      local?.v6prefix !== undefined && inPrefix6(link, local.v6prefix)
        ? local
        : deps.backend.networkFor6(link);
    if (!net) return ignore(`relayed from ${link}, on no network this sidecar knows`);
  }
  if (!net) return ignore('network not known yet');
  if (net.mode === 'off') return ignore(`DHCP is off on network ${net.name}`);
  if (net.mode === 'proxy') return ignore(`network ${net.name} is in proxy mode (DHCPv4 only)`);
  const cfg = deps.config;
  // RFC 8415 §16: message validation.
  const clientId = getOpt6(msg.options, Opt6.CLIENTID);
  const serverIds = allOpt6(msg.options, Opt6.SERVERID);
  const serverId = serverIds[0];
  const forUs = serverId !== undefined && serverIds.length === 1 && serverId.equals(cfg.serverDuid);
  const needClient = msg.type !== Msg6.INFORMATION_REQUEST;
  if (needClient && clientId === undefined) return drop('no client identifier');
  switch (msg.type) {
    case Msg6.SOLICIT:
    case Msg6.CONFIRM:
    case Msg6.REBIND:
      if (serverId !== undefined) return drop(`${type} with a server identifier`);
      break;
    case Msg6.REQUEST:
    case Msg6.RENEW:
    case Msg6.RELEASE:
    case Msg6.DECLINE:
      if (serverId === undefined) return drop(`${type} without a server identifier`);
      if (!forUs) return ignore(`${type} for another server`);
      break;
    case Msg6.INFORMATION_REQUEST:
      if (serverId !== undefined && !forUs) return ignore('INFORMATION-REQUEST for another server');
      if (getOpt6(msg.options, Opt6.IA_NA) ?? getOpt6(msg.options, Opt6.IA_TA))
        return drop('INFORMATION-REQUEST with an IA');
      break;
    default:
      return drop('not a client message type');
  }
  const mac = who?.mac;
  const known = mac ? deps.backend.reservation(mac, net.name) : undefined;
  const withRes = known ? { reservation: known } : {};
  const reserved =
    known?.address6 !== undefined &&
    net.v6prefix !== undefined &&
    inPrefix6(known.address6, net.v6prefix)
      ? (normalizeIp6(known.address6) ?? known.address6)
      : undefined;
  const rapid =
    msg.type === Msg6.SOLICIT &&
    cfg.rapidCommit &&
    getOpt6(msg.options, Opt6.RAPID_COMMIT) !== undefined;
  const replyType = msg.type === Msg6.SOLICIT && !rapid ? Msg6.ADVERTISE : (Msg6.REPLY as number);
  const out: Option6[] = [{ code: Opt6.SERVERID, data: cfg.serverDuid }];
  if (clientId) out.push({ code: Opt6.CLIENTID, data: clientId });
  if (rapid) out.push({ code: Opt6.RAPID_COMMIT, data: Buffer.alloc(0) });
  const ias = allOpt6(msg.options, Opt6.IA_NA).map(parseIaNa);
  if (ias.some((x) => x === undefined)) return drop('malformed IA_NA');
  const send = (outcome: Outcome6, extra: Partial<Result6> = {}): Result6 => {
    const reply: Message6 = { type: replyType, xid: msg.xid, options: out };
    const packet = wrap(reply, relays);
    return {
      ...base,
      ...withRes,
      ...extra,
      outcome,
      reply: relayed
        ? { packet, address: from, port: SERVER_PORT }
        : { packet, address: from, port: CLIENT_PORT },
    };
  };
  const valid = lifetimes(cfg).valid;
  switch (msg.type) {
    case Msg6.SOLICIT:
    case Msg6.REQUEST:
    case Msg6.RENEW:
    case Msg6.REBIND: {
      const renewing = msg.type === Msg6.RENEW || msg.type === Msg6.REBIND;
      let gave: string | undefined;
      let none = 0;
      for (const ia of ias) {
        if (!ia) continue;
        if (reserved === undefined) {
          none++;
          // RFC 8415 §18.3.4/§18.3.5: no binding to extend; a new one is not ours to make.
          out.push({
            code: Opt6.IA_NA,
            data: iaWith(
              ia.iaid,
              [
                renewing
                  ? status(Status6.NoBinding, 'no reservation for this client')
                  : status(Status6.NoAddrsAvail, 'no reservation for this client'),
              ],
              cfg,
              false,
            ),
          });
          continue;
        }
        // Addresses the client holds that are not its reservation get lifetimes 0 (§18.3.4).
        const stale: Option6[] = [];
        for (const a of allOpt6(ia.options, Opt6.IAADDR)) {
          const had = parseIaAddr(a);
          if (had && had.address !== reserved) stale.push(addrOpt(had.address, 0));
        }
        out.push({
          code: Opt6.IA_NA,
          data: iaWith(ia.iaid, [addrOpt(reserved, valid), ...stale], cfg, true),
        });
        gave = reserved;
      }
      if (ias.length > 0 && none === ias.length && !renewing && msg.type === Msg6.SOLICIT) {
        // RFC 8415 §18.3.9: an ADVERTISE that assigns nothing says so at the top level too.
        out.push(status(Status6.NoAddrsAvail, 'no reservation for this client'));
      }
      const bootEnv = configOptions(out, msg, net, mac, known, deps);
      return send(replyType === Msg6.ADVERTISE ? 'advertised' : 'replied', {
        ...(gave !== undefined ? { address: gave } : {}),
        ...(bootEnv !== undefined ? { bootEnv } : {}),
        ...(none > 0 ? { reason: 'no reservation for this client' } : {}),
      });
    }
    case Msg6.RELEASE:
      // RFC 8415 §18.3.7: reservations stay with their node; the release is acknowledged.
      out.push(status(Status6.Success, 'released'));
      return send('released');
    case Msg6.DECLINE:
      // RFC 8415 §18.3.8: the reserved address is in use by someone else on the link.
      out.push(status(Status6.Success, 'declined'));
      return send('declined', { reason: `reserved ${reserved ?? '(none)'} reported in use` });
    case Msg6.CONFIRM: {
      // RFC 8415 §18.3.3: are the client's addresses on this link? No addresses: no reply.
      const addrs: string[] = [];
      for (const ia of ias)
        for (const a of allOpt6(ia?.options ?? [], Opt6.IAADDR)) {
          const x = parseIaAddr(a);
          if (x) addrs.push(x.address);
        }
      if (addrs.length === 0) return ignore('CONFIRM without addresses');
      const onLink =
        net.v6prefix !== undefined && addrs.every((a) => inPrefix6(a, net.v6prefix ?? ''));
      out.push(
        onLink
          ? status(Status6.Success, 'all addresses are on link')
          : status(Status6.NotOnLink, `not on network ${net.name}`),
      );
      return send('confirmed', onLink ? {} : { reason: 'not on link' });
    }
    default: {
      // INFORMATION-REQUEST (RFC 8415 §18.3.6): configuration only.
      const bootEnv = configOptions(out, msg, net, mac, known, deps);
      return send('informed', bootEnv !== undefined ? { bootEnv } : {});
    }
  }
}
