/**
 * A pure DHCPv6 codec (RFC 8415 §8 client/server messages, §9 relay agent/server messages, §21
 * options), plus the boot options of RFC 5970 (59, 60, 61), RFC 3646 (23, 24) and RFC 6939 (79).
 * Decoding never throws: a malformed packet yields `{ ok: false, reason }` so the socket loop can
 * count and drop it. Relay-Forward/Relay-Reply nest (each relay wraps the message it forwards in
 * option 9); decoding follows the nesting to at most {@link MAX_NESTING} levels.
 */
import { optDomainSearch } from './codec.ts';

/** RFC 8415 §7.3 */
export const Msg6 = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  CONFIRM: 4,
  RENEW: 5,
  REBIND: 6,
  REPLY: 7,
  RELEASE: 8,
  DECLINE: 9,
  RECONFIGURE: 10,
  INFORMATION_REQUEST: 11,
  RELAY_FORW: 12,
  RELAY_REPL: 13,
} as const;
export type Msg6Name = keyof typeof Msg6;

const MSG6_NAMES: readonly (Msg6Name | 'UNKNOWN')[] = (() => {
  const names = Array<Msg6Name | 'UNKNOWN'>(256).fill('UNKNOWN');
  for (const [k, v] of Object.entries(Msg6)) names[v] = k as Msg6Name;
  return names;
})();

export function msg6Name(t: number): Msg6Name | 'UNKNOWN' {
  return MSG6_NAMES[t] ?? 'UNKNOWN';
}

/** Option codes (RFC 8415 §21 unless noted). */
export const Opt6 = {
  CLIENTID: 1,
  SERVERID: 2,
  IA_NA: 3,
  IA_TA: 4,
  IAADDR: 5,
  ORO: 6,
  PREFERENCE: 7,
  ELAPSED_TIME: 8,
  RELAY_MSG: 9,
  AUTH: 11,
  UNICAST: 12,
  STATUS_CODE: 13,
  RAPID_COMMIT: 14,
  USER_CLASS: 15,
  VENDOR_CLASS: 16,
  VENDOR_OPTS: 17,
  INTERFACE_ID: 18,
  DNS_SERVERS: 23, // RFC 3646
  DOMAIN_LIST: 24, // RFC 3646
  IA_PD: 25,
  BOOTFILE_URL: 59, // RFC 5970
  BOOTFILE_PARAM: 60, // RFC 5970
  CLIENT_ARCH: 61, // RFC 5970
  CLIENT_LINKLAYER_ADDR: 79, // RFC 6939
} as const;

/** RFC 8415 §21.13 */
export const Status6 = {
  Success: 0,
  UnspecFail: 1,
  NoAddrsAvail: 2,
  NoBinding: 3,
  NotOnLink: 4,
  UseMulticast: 5,
} as const;

/** One option as sent (order and repeats kept: a client may send several IA_NAs). */
export interface Option6 {
  code: number;
  data: Buffer;
}

/** A client or server message (RFC 8415 §8). */
export interface Message6 {
  type: number;
  /** 24-bit transaction id. */
  xid: number;
  options: Option6[];
}

/** A Relay-Forward or Relay-Reply (RFC 8415 §9); `inner` is what option 9 carries. */
export interface Relay6 {
  type: typeof Msg6.RELAY_FORW | typeof Msg6.RELAY_REPL;
  hopCount: number;
  /** Text form (RFC 5952) of the link-address and peer-address fields. */
  linkAddress: string;
  peerAddress: string;
  /** Options other than RELAY_MSG (interface-id, link-layer address, ...). */
  options: Option6[];
  inner: Packet6;
}

export type Packet6 = Message6 | Relay6;

export type Decode6Result = { ok: true; packet: Packet6 } | { ok: false; reason: string };

/** RFC 8415 §7.6 HOP_COUNT_LIMIT is 8; a little slack for relays that count differently. */
export const MAX_NESTING = 32;

export function isRelay(p: Packet6): p is Relay6 {
  return p.type === Msg6.RELAY_FORW || p.type === Msg6.RELAY_REPL;
}

// ---- IPv6 addresses ---------------------------------------------------------------------------

const HEX4: readonly string[] = Array.from({ length: 65536 }, (_, i) => i.toString(16));

/** 16 bytes at `off` in RFC 5952 text form (lowercase, longest zero run as ::). */
export function ip6ToString(b: Buffer, off = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(off + 2 * i));
  let bestAt = -1;
  let bestLen = 1; // RFC 5952 §4.2.2: a single zero group is not shortened
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const part = (from: number, to: number): string =>
    g
      .slice(from, to)
      .map((x) => HEX4[x] ?? '0')
      .join(':');
  if (bestAt === -1) return part(0, 8);
  return `${part(0, bestAt)}::${part(bestAt + bestLen, 8)}`;
}

/** Text (with or without ::, optionally a trailing dotted quad or %zone) to 16 bytes. */
export function ip6ToBytes(text: string): Buffer | undefined {
  const pct = text.indexOf('%');
  const s = pct === -1 ? text : text.slice(0, pct);
  if (s.length < 2 || s.length > 45) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    const parts = h.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i] ?? '';
      if (i === parts.length - 1 && p.includes('.')) {
        const q = p.split('.');
        if (q.length !== 4) return undefined;
        const n = q.map((x) => (/^\d{1,3}$/.test(x) ? Number(x) : NaN));
        if (n.some((x) => !(x >= 0 && x <= 255))) return undefined;
        out.push(((n[0] ?? 0) << 8) | (n[1] ?? 0), ((n[2] ?? 0) << 8) | (n[3] ?? 0));
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
      out.push(parseInt(p, 16));
    }
    return out;
  };
  const head = groups(halves[0] ?? '');
  const tail = halves.length === 2 ? groups(halves[1] ?? '') : [];
  if (!head || !tail) return undefined;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return undefined;
  const all = [...head, ...Array<number>(halves.length === 2 ? fill : 0).fill(0), ...tail];
  const b = Buffer.alloc(16);
  all.forEach((x, i) => b.writeUInt16BE(x, 2 * i));
  return b;
}

/** Canonical text form, or undefined when not an IPv6 address. */
export function normalizeIp6(text: string): string | undefined {
  const b = ip6ToBytes(text);
  return b ? ip6ToString(b) : undefined;
}

/** Whether `address` lies in `prefix` (e.g. fd00:1::/64). False for malformed input. */
export function inPrefix6(address: string, prefix: string): boolean {
  const [net = '', lenText = ''] = prefix.split('/');
  const bits = Number(lenText);
  const a = ip6ToBytes(address);
  const n = ip6ToBytes(net);
  if (!a || !n || !Number.isInteger(bits) || bits < 0 || bits > 128) return false;
  const full = bits >> 3;
  if (a.compare(n, 0, full, 0, full) !== 0) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((a[full] ?? 0) & mask) === ((n[full] ?? 0) & mask);
}

// ---- decoding ---------------------------------------------------------------------------------

function parseOptions6(b: Buffer, start: number, end: number): Option6[] | string {
  const out: Option6[] = [];
  let i = start;
  while (i < end) {
    if (i + 4 > end) return `option header at ${i} runs past the end`;
    const code = b.readUInt16BE(i);
    const len = b.readUInt16BE(i + 2);
    if (i + 4 + len > end) return `option ${code} length ${len} runs past the end`;
    out.push({ code, data: b.subarray(i + 4, i + 4 + len) });
    i += 4 + len;
  }
  return out;
}

function decodeAt(b: Buffer, depth: number): Decode6Result {
  if (b.length < 4) return { ok: false, reason: `packet of ${b.length} bytes is too short` };
  const type = b.readUInt8(0);
  if (type === Msg6.RELAY_FORW || type === Msg6.RELAY_REPL) {
    if (b.length < 34) return { ok: false, reason: `relay message of ${b.length} bytes` };
    if (depth >= MAX_NESTING) return { ok: false, reason: `relay nesting deeper than ${depth}` };
    const opts = parseOptions6(b, 34, b.length);
    if (typeof opts === 'string') return { ok: false, reason: opts };
    let relayed: Buffer | undefined;
    const rest: Option6[] = [];
    for (const o of opts) {
      if (o.code !== Opt6.RELAY_MSG) rest.push(o);
      else if (relayed) return { ok: false, reason: 'relay message with two option 9s' };
      else relayed = o.data;
    }
    if (!relayed) return { ok: false, reason: 'relay message without option 9' };
    const inner = decodeAt(relayed, depth + 1);
    if (!inner.ok) return { ok: false, reason: `in relayed message: ${inner.reason}` };
    return {
      ok: true,
      packet: {
        type,
        hopCount: b.readUInt8(1),
        linkAddress: ip6ToString(b, 2),
        peerAddress: ip6ToString(b, 18),
        options: rest,
        inner: inner.packet,
      },
    };
  }
  const opts = parseOptions6(b, 4, b.length);
  if (typeof opts === 'string') return { ok: false, reason: opts };
  return { ok: true, packet: { type, xid: b.readUIntBE(1, 3), options: opts } };
}

/** Decodes a DHCPv6 message, following relay nesting. Never throws. */
export function decode6(b: Buffer): Decode6Result {
  return decodeAt(b, 0);
}

// ---- encoding ---------------------------------------------------------------------------------

function optionsLength(opts: readonly Option6[]): number {
  let n = 0;
  for (const o of opts) n += 4 + o.data.length;
  return n;
}

function writeOptions(b: Buffer, off: number, opts: readonly Option6[]): number {
  for (const o of opts) {
    b.writeUInt16BE(o.code, off);
    b.writeUInt16BE(o.data.length, off + 2);
    o.data.copy(b, off + 4);
    off += 4 + o.data.length;
  }
  return off;
}

/** Encodes a message (relays with their nested message in option 9). Throws only for data that
 * no client sent: an option over 65,535 bytes or an address that is not IPv6. */
export function encode6(p: Packet6): Buffer {
  if (isRelay(p)) {
    const inner = encode6(p.inner);
    const link = ip6ToBytes(p.linkAddress);
    const peer = ip6ToBytes(p.peerAddress);
    if (!link || !peer) throw new Error('relay addresses must be IPv6');
    const opts = [...p.options, { code: Opt6.RELAY_MSG, data: inner }];
    for (const o of opts) if (o.data.length > 0xffff) throw new Error(`option ${o.code} too long`);
    const b = Buffer.alloc(34 + optionsLength(opts));
    b[0] = p.type;
    b[1] = p.hopCount & 0xff;
    link.copy(b, 2);
    peer.copy(b, 18);
    writeOptions(b, 34, opts);
    return b;
  }
  for (const o of p.options)
    if (o.data.length > 0xffff) throw new Error(`option ${o.code} too long`);
  const b = Buffer.alloc(4 + optionsLength(p.options));
  b[0] = p.type;
  b.writeUIntBE(p.xid & 0xffffff, 1, 3);
  writeOptions(b, 4, p.options);
  return b;
}

// ---- option helpers ---------------------------------------------------------------------------

export function getOpt6(opts: readonly Option6[], code: number): Buffer | undefined {
  for (const o of opts) if (o.code === code) return o.data;
  return undefined;
}

export function allOpt6(opts: readonly Option6[], code: number): Buffer[] {
  const out: Buffer[] = [];
  for (const o of opts) if (o.code === code) out.push(o.data);
  return out;
}

/** RFC 8415 §21.4: IA_NA = IAID, T1, T2, options (IAADDR, status code). */
export interface IaNa {
  iaid: number;
  t1: number;
  t2: number;
  options: Option6[];
}

export function parseIaNa(d: Buffer): IaNa | undefined {
  if (d.length < 12) return undefined;
  const opts = parseOptions6(d, 12, d.length);
  if (typeof opts === 'string') return undefined;
  return { iaid: d.readUInt32BE(0), t1: d.readUInt32BE(4), t2: d.readUInt32BE(8), options: opts };
}

export function iaNa(ia: IaNa): Buffer {
  const b = Buffer.alloc(12 + optionsLength(ia.options));
  b.writeUInt32BE(ia.iaid >>> 0, 0);
  b.writeUInt32BE(ia.t1 >>> 0, 4);
  b.writeUInt32BE(ia.t2 >>> 0, 8);
  writeOptions(b, 12, ia.options);
  return b;
}

/** RFC 8415 §21.6: IAADDR = address, preferred and valid lifetimes, options. */
export interface IaAddr {
  address: string;
  preferred: number;
  valid: number;
  options: Option6[];
}

export function parseIaAddr(d: Buffer): IaAddr | undefined {
  if (d.length < 24) return undefined;
  const opts = parseOptions6(d, 24, d.length);
  if (typeof opts === 'string') return undefined;
  return {
    address: ip6ToString(d, 0),
    preferred: d.readUInt32BE(16),
    valid: d.readUInt32BE(20),
    options: opts,
  };
}

export function iaAddr(a: IaAddr): Buffer {
  const addr = ip6ToBytes(a.address);
  if (!addr) throw new Error(`${a.address} is not an IPv6 address`);
  const b = Buffer.alloc(24 + optionsLength(a.options));
  addr.copy(b, 0);
  b.writeUInt32BE(a.preferred >>> 0, 16);
  b.writeUInt32BE(a.valid >>> 0, 20);
  writeOptions(b, 24, a.options);
  return b;
}

/** RFC 8415 §21.13 */
export function statusCode(code: number, message: string): Buffer {
  const m = Buffer.from(message, 'utf8');
  const b = Buffer.alloc(2 + m.length);
  b.writeUInt16BE(code, 0);
  m.copy(b, 2);
  return b;
}

export function parseStatusCode(d: Buffer): { code: number; message: string } | undefined {
  if (d.length < 2) return undefined;
  return { code: d.readUInt16BE(0), message: d.toString('utf8', 2) };
}

/** RFC 8415 §21.7: the option codes a client asks for. */
export function parseOro(d: Buffer | undefined): number[] {
  const out: number[] = [];
  if (!d) return out;
  for (let i = 0; i + 2 <= d.length; i += 2) out.push(d.readUInt16BE(i));
  return out;
}

export function oro(codes: readonly number[]): Buffer {
  const b = Buffer.alloc(2 * codes.length);
  codes.forEach((c, i) => b.writeUInt16BE(c, 2 * i));
  return b;
}

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

/** RFC 3646 §3: a list of IPv6 addresses. */
export function addressList(ips: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const ip of ips) {
    const b = ip6ToBytes(ip);
    if (!b) throw new Error(`${ip} is not an IPv6 address`);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

export function parseAddressList(d: Buffer): string[] | undefined {
  if (d.length % 16 !== 0) return undefined;
  const out: string[] = [];
  for (let i = 0; i < d.length; i += 16) out.push(ip6ToString(d, i));
  return out;
}

/** RFC 3646 §4: the search list in RFC 1035 wire form (no compression), as DHCPv4's 119. */
export function domainList(domains: readonly string[]): Buffer {
  return optDomainSearch(domains);
}

/** RFC 8415 §21.15/§21.16, RFC 5970 §3.2: a list of 16-bit length-prefixed opaque strings. */
export function parseLengthPrefixed(d: Buffer, start = 0): string[] | undefined {
  const out: string[] = [];
  let i = start;
  while (i < d.length) {
    if (i + 2 > d.length) return undefined;
    const n = d.readUInt16BE(i);
    if (i + 2 + n > d.length) return undefined;
    out.push(d.toString('latin1', i + 2, i + 2 + n));
    i += 2 + n;
  }
  return out;
}

export function lengthPrefixed(items: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of items) {
    const d = Buffer.from(s, 'latin1');
    parts.push(u16(d.length), d);
  }
  return Buffer.concat(parts);
}

/** RFC 8415 §21.16: enterprise number, then length-prefixed class data. */
export function parseVendorClass(d: Buffer): { enterprise: number; data: string[] } | undefined {
  if (d.length < 4) return undefined;
  const data = parseLengthPrefixed(d, 4);
  return data ? { enterprise: d.readUInt32BE(0), data } : undefined;
}

export function vendorClass(enterprise: number, data: readonly string[]): Buffer {
  const e = Buffer.alloc(4);
  e.writeUInt32BE(enterprise >>> 0);
  return Buffer.concat([e, lengthPrefixed(data)]);
}

/** RFC 5970 §3.3: a list of 16-bit architecture types. */
export function parseClientArch(d: Buffer | undefined): number[] | undefined {
  if (!d || d.length < 2 || d.length % 2 !== 0) return undefined;
  const out: number[] = [];
  for (let i = 0; i < d.length; i += 2) out.push(d.readUInt16BE(i));
  return out;
}

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) =>
  i.toString(16).padStart(2, '0'),
);

function macText(b: Buffer, off: number): string {
  const o: string[] = [];
  for (let i = 0; i < 6; i++) o.push(HEX[b[off + i] ?? 0] ?? '00');
  return o.join(':');
}

/** RFC 8415 §11: DUID types. */
export const Duid = { LLT: 1, EN: 2, LL: 3, UUID: 4 } as const;

/**
 * The Ethernet MAC inside a DUID-LLT (type 1) or DUID-LL (type 3) with hardware type 1, else
 * undefined (DUID-EN and DUID-UUID carry no link-layer address).
 */
export function duidMac(d: Buffer | undefined): string | undefined {
  if (!d || d.length < 4 || d.readUInt16BE(2) !== 1) return undefined;
  const type = d.readUInt16BE(0);
  if (type === Duid.LLT && d.length === 14) return macText(d, 8);
  if (type === Duid.LL && d.length === 10) return macText(d, 4);
  return undefined;
}

/** DUID-LL (hardware type 1) of a MAC such as 52:54:00:12:34:56. */
export function duidLl(mac: string): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt16BE(Duid.LL, 0);
  b.writeUInt16BE(1, 2);
  macBytes(mac).copy(b, 4);
  return b;
}

/** DUID-UUID (RFC 6355) from 16 bytes. */
export function duidUuid(uuid: Buffer): Buffer {
  const b = Buffer.alloc(18);
  b.writeUInt16BE(Duid.UUID, 0);
  uuid.copy(b, 2, 0, 16);
  return b;
}

function macBytes(mac: string): Buffer {
  const b = Buffer.from(mac.replace(/[:-]/g, ''), 'hex');
  if (b.length !== 6) throw new Error(`${mac} is not an Ethernet MAC`);
  return b;
}

/** RFC 6939: hardware type (1 = Ethernet) and the address; the MAC, or undefined. */
export function linkLayerMac(d: Buffer | undefined): string | undefined {
  if (d?.length !== 8 || d.readUInt16BE(0) !== 1) return undefined;
  return macText(d, 2);
}

export function linkLayerOption(mac: string): Buffer {
  return Buffer.concat([u16(1), macBytes(mac)]);
}

/**
 * The MAC behind a modified EUI-64 interface identifier (RFC 4291 appendix A) of a link-local
 * address (fe80::/64 with ff:fe in the middle), or undefined (e.g. a privacy address).
 */
export function eui64Mac(address: string): string | undefined {
  const b = ip6ToBytes(address);
  if (!b || b[0] !== 0xfe || ((b[1] ?? 0) & 0xc0) !== 0x80) return undefined;
  if (b[11] !== 0xff || b[12] !== 0xfe) return undefined;
  const m = Buffer.from([
    (b[8] ?? 0) ^ 0x02,
    b[9] ?? 0,
    b[10] ?? 0,
    b[13] ?? 0,
    b[14] ?? 0,
    b[15] ?? 0,
  ]);
  return macText(m, 0);
}

/** The EUI-64 link-local address of a MAC (what Linux configures by default). */
export function linkLocalOf(mac: string): string {
  const m = macBytes(mac);
  const b = Buffer.alloc(16);
  b[0] = 0xfe;
  b[1] = 0x80;
  b[8] = (m[0] ?? 0) ^ 0x02;
  b[9] = m[1] ?? 0;
  b[10] = m[2] ?? 0;
  b[11] = 0xff;
  b[12] = 0xfe;
  b[13] = m[3] ?? 0;
  b[14] = m[4] ?? 0;
  b[15] = m[5] ?? 0;
  return ip6ToString(b);
}
