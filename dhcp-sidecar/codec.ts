/**
 * A pure DHCPv4 codec (RFC 2131 message format, RFC 2132 options, RFC 3396 long options,
 * option 52 overload). Decoding never throws: a malformed packet yields `{ ok: false, reason }`
 * so the socket loop can count and drop it. Decoding costs memory proportional to the packet.
 */

/** RFC 2131 §3: the magic cookie that opens the options field. */
const MAGIC = 0x63825363;
/** RFC 2131 §2: op, htype, hlen, hops, xid, secs, flags, 4 addresses, chaddr, sname, file. */
const FIXED = 236;
const HEADER = FIXED + 4;
const SNAME_OFF = 44;
const SNAME_LEN = 64;
const FILE_OFF = 108;
const FILE_LEN = 128;
/** RFC 2131 §2: a DHCP message may be at most what fits in the client's max size (576 default). */
export const DEFAULT_MAX_SIZE = 576;
/** BOOTP relays and some ROMs drop replies shorter than the BOOTP minimum (RFC 951). */
const MIN_SIZE = 300;

export const Op = { BOOTREQUEST: 1, BOOTREPLY: 2 } as const;

/** Option 53 message types (RFC 2132 §9.6). */
export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type MessageTypeName = keyof typeof MessageType;

/** Names by message type number (a table: this runs for every packet). */
const TYPE_NAMES: readonly (MessageTypeName | 'UNKNOWN')[] = (() => {
  const names: (MessageTypeName | 'UNKNOWN')[] = Array<MessageTypeName | 'UNKNOWN'>(256).fill(
    'UNKNOWN',
  );
  for (const [k, v] of Object.entries(MessageType)) names[v] = k as MessageTypeName;
  return names;
})();

export function messageTypeName(t: number | undefined): MessageTypeName | 'UNKNOWN' {
  return t === undefined ? 'UNKNOWN' : (TYPE_NAMES[t] ?? 'UNKNOWN');
}

/** Option codes used by Crowbar (RFC 2132 unless noted). */
export const Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  LOG_SERVER: 7,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  MTU: 26,
  BROADCAST: 28,
  NTP: 42,
  VENDOR_SPECIFIC: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAM_LIST: 55,
  MESSAGE: 56,
  MAX_SIZE: 57,
  RENEWAL_T1: 58,
  REBINDING_T2: 59,
  VENDOR_CLASS: 60,
  CLIENT_ID: 61,
  TFTP_SERVER: 66,
  BOOTFILE: 67,
  USER_CLASS: 77, // RFC 3004
  RELAY_AGENT: 82, // RFC 3046
  CLIENT_ARCH: 93, // RFC 4578
  CLIENT_NDI: 94, // RFC 4578
  CLIENT_GUID: 97, // RFC 4578
  DOMAIN_SEARCH: 119, // RFC 3397
  CLASSLESS_ROUTES: 121, // RFC 3442
  IPXE_ENCAP: 175, // iPXE's encapsulated options
  END: 255,
} as const;

export interface DhcpPacket {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** The 16-byte chaddr field as sent. */
  chaddr: Buffer;
  sname: string;
  file: string;
  /** Option data by code; several instances of one code are concatenated (RFC 3396). */
  options: Map<number, Buffer>;
}

export type DecodeResult = { ok: true; packet: DhcpPacket } | { ok: false; reason: string };

export const BROADCAST_FLAG = 0x8000;

export function ipToString(b: Buffer, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/**
 * Dotted quad (four groups of 1-3 decimal digits, each at most 255) to a 32-bit unsigned
 * integer; NaN when not a valid IPv4 address. A character loop: it runs several times per packet.
 */
export function ipToInt(ip: string): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return NaN;
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (++digits > 3) return NaN;
      part = part * 10 + (c - 48);
      if (part > 255) return NaN;
    } else {
      return NaN;
    }
  }
  if (dots !== 3 || digits === 0) return NaN;
  return n * 256 + part;
}

export function intToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function writeIp(b: Buffer, off: number, ip: string): void {
  const n = ipToInt(ip);
  b.writeUInt32BE(Number.isNaN(n) ? 0 : n >>> 0, off);
}

function cString(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  const stop = end === -1 || end > off + len ? off + len : end;
  return b.toString('latin1', off, stop);
}

/** Parses one options area into `into`; returns an error reason or undefined. */
function parseOptions(
  b: Buffer,
  start: number,
  end: number,
  into: Map<number, Buffer[]>,
): string | undefined {
  let i = start;
  while (i < end) {
    const code = b.readUInt8(i);
    if (code === Opt.PAD) {
      i++;
      continue;
    }
    if (code === Opt.END) return undefined;
    if (i + 1 >= end) return `option ${code} has no length byte`;
    const len = b.readUInt8(i + 1);
    if (i + 2 + len > end) return `option ${code} length ${len} runs past the end`;
    const list = into.get(code);
    const data = b.subarray(i + 2, i + 2 + len);
    if (list) list.push(data);
    else into.set(code, [data]);
    i += 2 + len;
  }
  // RFC 2131 §4.1 wants an END option; real clients sometimes omit it in overloaded fields.
  return undefined;
}

/** Decodes a BOOTP/DHCP message. Never throws. */
export function decode(b: Buffer): DecodeResult {
  if (b.length < HEADER) return { ok: false, reason: `packet of ${b.length} bytes is too short` };
  if (b.readUInt32BE(FIXED) !== MAGIC) return { ok: false, reason: 'no DHCP magic cookie' };
  const hlen = b.readUInt8(2);
  if (hlen > 16) return { ok: false, reason: `hlen ${hlen} exceeds 16` };
  const parts = new Map<number, Buffer[]>();
  const err = parseOptions(b, HEADER, b.length, parts);
  if (err) return { ok: false, reason: err };
  let sname = cString(b, SNAME_OFF, SNAME_LEN);
  let file = cString(b, FILE_OFF, FILE_LEN);
  // RFC 2132 §9.3: option 52 says file (1), sname (2) or both (3) carry more options, parsed
  // in the order options, file, sname (RFC 2131 §4.1). Overload inside those fields is ignored,
  // so a packet cannot make us loop.
  const ov = parts.get(Opt.OVERLOAD);
  if (ov) {
    const v = ov[0]?.[0];
    if (ov[0]?.length !== 1 || v === undefined || v < 1 || v > 3)
      return { ok: false, reason: 'option 52 overload value is invalid' };
    parts.delete(Opt.OVERLOAD);
    const extra = new Map<number, Buffer[]>();
    if (v & 1) {
      const e = parseOptions(b, FILE_OFF, FILE_OFF + FILE_LEN, extra);
      if (e) return { ok: false, reason: `in file: ${e}` };
      file = '';
    }
    if (v & 2) {
      const e = parseOptions(b, SNAME_OFF, SNAME_OFF + SNAME_LEN, extra);
      if (e) return { ok: false, reason: `in sname: ${e}` };
      sname = '';
    }
    extra.delete(Opt.OVERLOAD);
    for (const [k, list] of extra) {
      const have = parts.get(k);
      if (have) have.push(...list);
      else parts.set(k, list);
    }
  }
  const options = new Map<number, Buffer>();
  // One instance (the common case) is a view of the datagram; several are joined (RFC 3396).
  for (const [k, list] of parts) {
    const [only] = list;
    options.set(k, list.length === 1 && only !== undefined ? only : Buffer.concat(list));
  }
  return {
    ok: true,
    packet: {
      op: b.readUInt8(0),
      htype: b.readUInt8(1),
      hlen,
      hops: b.readUInt8(3),
      xid: b.readUInt32BE(4),
      secs: b.readUInt16BE(8),
      flags: b.readUInt16BE(10),
      ciaddr: ipToString(b, 12),
      yiaddr: ipToString(b, 16),
      siaddr: ipToString(b, 20),
      giaddr: ipToString(b, 24),
      chaddr: Buffer.from(b.subarray(28, 44)),
      sname,
      file,
      options,
    },
  };
}

/** Serialises options (RFC 3396: data longer than 255 bytes is split into several instances). */
function optionBytes(code: number, data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  if (data.length === 0) return [Buffer.from([code, 0])];
  for (let i = 0; i < data.length; i += 255) {
    const chunk = data.subarray(i, Math.min(data.length, i + 255));
    out.push(Buffer.concat([Buffer.from([code, chunk.length]), chunk]));
  }
  return out;
}

/**
 * Encodes a message. Options go in the options field while the packet stays within `maxSize`;
 * the rest overflow into file and then sname (option 52) when those carry nothing else.
 * Throws only when the options cannot fit at all (a configuration error, not client input).
 */
export function encode(p: DhcpPacket, maxSize = DEFAULT_MAX_SIZE): Buffer {
  const size = Math.max(maxSize, DEFAULT_MAX_SIZE);
  // Fast path (every reply Crowbar builds): the options fit in the options field, so they are
  // written straight into one buffer, message type first, the rest in insertion order.
  let need = 0;
  for (const [code, data] of p.options) {
    if (code === Opt.PAD || code === Opt.END || code === Opt.OVERLOAD) continue;
    need += data.length === 0 ? 2 : data.length + 2 * Math.ceil(data.length / 255);
  }
  if (need <= size - HEADER - 1) {
    // From Node's shared pool (a fresh ArrayBuffer per reply costs more than the rest of encode),
    // zeroed: the header's unused fields and the padding to MIN_SIZE must be zero.
    const b = Buffer.allocUnsafe(Math.max(MIN_SIZE, HEADER + need + 1)).fill(0);
    writeHeader(b, p);
    b.write(p.sname.slice(0, SNAME_LEN - 1), SNAME_OFF, 'latin1');
    b.write(p.file.slice(0, FILE_LEN - 1), FILE_OFF, 'latin1');
    let off = HEADER;
    const type = p.options.get(Opt.MESSAGE_TYPE);
    if (type !== undefined) off = writeOption(b, off, Opt.MESSAGE_TYPE, type);
    for (const [code, data] of p.options) {
      if (code === Opt.PAD || code === Opt.END || code === Opt.OVERLOAD) continue;
      if (code !== Opt.MESSAGE_TYPE) off = writeOption(b, off, code, data);
    }
    b[off] = Opt.END;
    return b;
  }
  return encodeOverloaded(p, size);
}

/** Writes one option at `off` (RFC 3396: split into instances of at most 255 bytes). */
function writeOption(b: Buffer, off: number, code: number, data: Buffer): number {
  if (data.length === 0) {
    b[off] = code;
    b[off + 1] = 0;
    return off + 2;
  }
  for (let i = 0; i < data.length; i += 255) {
    const n = Math.min(255, data.length - i);
    b[off] = code;
    b[off + 1] = n;
    data.copy(b, off + 2, i, i + n);
    off += 2 + n;
  }
  return off;
}

/** The fixed header fields and the magic cookie. */
function writeHeader(b: Buffer, p: DhcpPacket): void {
  b[0] = p.op;
  b[1] = p.htype;
  b[2] = p.hlen;
  b[3] = p.hops;
  b.writeUInt32BE(p.xid >>> 0, 4);
  b.writeUInt16BE(p.secs & 0xffff, 8);
  b.writeUInt16BE(p.flags & 0xffff, 10);
  writeIp(b, 12, p.ciaddr);
  writeIp(b, 16, p.yiaddr);
  writeIp(b, 20, p.siaddr);
  writeIp(b, 24, p.giaddr);
  p.chaddr.copy(b, 28, 0, Math.min(16, p.chaddr.length));
  b.writeUInt32BE(MAGIC, FIXED);
}

/** The options do not fit in the options field: overflow into file and sname (option 52). */
function encodeOverloaded(p: DhcpPacket, size: number): Buffer {
  const chunks: Buffer[] = [];
  // Message type first: some clients look for it at a fixed place.
  const ordered = [...p.options.entries()].sort(([a], [b]) =>
    a === Opt.MESSAGE_TYPE ? -1 : b === Opt.MESSAGE_TYPE ? 1 : 0,
  );
  for (const [code, data] of ordered) {
    if (code === Opt.PAD || code === Opt.END || code === Opt.OVERLOAD) continue;
    chunks.push(...optionBytes(code, data));
  }
  // Room in the options field: END (1) and possibly option 52 (3).
  const room = size - HEADER - 1;
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const main: Buffer[] = [];
  const inFile: Buffer[] = [];
  const inSname: Buffer[] = [];
  if (total <= room) {
    main.push(...chunks);
  } else {
    if (p.file !== '' || p.sname !== '')
      throw new Error('DHCP options do not fit and file/sname are in use (cannot overload)');
    let used = 3; // option 52
    let fUsed = 0;
    let sUsed = 0;
    for (const c of chunks) {
      if (used + c.length <= room) {
        main.push(c);
        used += c.length;
      } else if (fUsed + c.length <= FILE_LEN - 1) {
        inFile.push(c);
        fUsed += c.length;
      } else if (sUsed + c.length <= SNAME_LEN - 1) {
        inSname.push(c);
        sUsed += c.length;
      } else {
        throw new Error(`DHCP options need more than ${size} bytes`);
      }
    }
    const flag = (inFile.length > 0 ? 1 : 0) | (inSname.length > 0 ? 2 : 0);
    main.unshift(Buffer.from([Opt.OVERLOAD, 1, flag]));
  }
  const optLen = main.reduce((n, c) => n + c.length, 0) + 1;
  const len = Math.max(MIN_SIZE, HEADER + optLen);
  const b = Buffer.alloc(len);
  writeHeader(b, p);
  if (inSname.length > 0) Buffer.concat([...inSname, Buffer.from([Opt.END])]).copy(b, SNAME_OFF);
  else b.write(p.sname.slice(0, SNAME_LEN - 1), SNAME_OFF, 'latin1');
  if (inFile.length > 0) Buffer.concat([...inFile, Buffer.from([Opt.END])]).copy(b, FILE_OFF);
  else b.write(p.file.slice(0, FILE_LEN - 1), FILE_OFF, 'latin1');
  let off = HEADER;
  for (const c of main) {
    c.copy(b, off);
    off += c.length;
  }
  b[off] = Opt.END;
  return b;
}

// ---- option value helpers -------------------------------------------------------------------

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) =>
  i.toString(16).padStart(2, '0'),
);

export function macOf(p: DhcpPacket): string | undefined {
  if (p.htype !== 1 || p.hlen !== 6) return undefined;
  const c = p.chaddr;
  return `${HEX[c[0] ?? 0]}:${HEX[c[1] ?? 0]}:${HEX[c[2] ?? 0]}:${HEX[c[3] ?? 0]}:${HEX[c[4] ?? 0]}:${HEX[c[5] ?? 0]}`;
}

export function optIps(ips: readonly string[]): Buffer {
  const b = Buffer.alloc(4 * ips.length);
  ips.forEach((ip, i) => {
    writeIp(b, 4 * i, ip);
  });
  return b;
}

export function optU32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export function optU8(n: number): Buffer {
  return Buffer.from([n & 255]);
}

export function optString(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

/** The first IPv4 address in an option, or undefined when absent or not 4 bytes long. */
export function getIp(p: DhcpPacket, code: number): string | undefined {
  const v = p.options.get(code);
  return v?.length === 4 ? ipToString(v, 0) : undefined;
}

export function getU8(p: DhcpPacket, code: number): number | undefined {
  const v = p.options.get(code);
  return v?.length === 1 ? v[0] : undefined;
}

export function getU16(p: DhcpPacket, code: number): number | undefined {
  const v = p.options.get(code);
  return v?.length === 2 ? v.readUInt16BE(0) : undefined;
}

export function getString(p: DhcpPacket, code: number): string | undefined {
  return p.options.get(code)?.toString('latin1');
}

/** RFC 4578 §2.1: option 93 is a list of 16-bit architecture types; the first one counts. */
export function getClientArch(p: DhcpPacket): number | undefined {
  const v = p.options.get(Opt.CLIENT_ARCH);
  return v !== undefined && v.length >= 2 && v.length % 2 === 0 ? v.readUInt16BE(0) : undefined;
}

/** RFC 3004: option 77 is a list of length-prefixed user classes; iPXE sends the bare text. */
export function getUserClasses(p: DhcpPacket): string[] {
  const v = p.options.get(Opt.USER_CLASS);
  if (!v || v.length === 0) return [];
  const out: string[] = [];
  let i = 0;
  while (i < v.length) {
    const n = v.readUInt8(i);
    if (n === 0 || i + 1 + n > v.length) return [v.toString('latin1')];
    out.push(v.toString('latin1', i + 1, i + 1 + n));
    i += 1 + n;
  }
  return out;
}

/** RFC 3397 / RFC 1035 §3.1: domain names as length-prefixed labels, no compression. */
export function optDomainSearch(domains: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const d of domains) {
    for (const label of d.replace(/\.$/, '').split('.')) {
      if (label === '') continue;
      const l = Buffer.from(label, 'ascii').subarray(0, 63);
      parts.push(Buffer.from([l.length]), l);
    }
    parts.push(Buffer.from([0]));
  }
  return Buffer.concat(parts);
}

/** RFC 3442: each route is the prefix length, the significant octets, then the router. */
export function optClasslessRoutes(
  routes: readonly { destination: string; router: string }[],
): Buffer {
  const parts: Buffer[] = [];
  for (const r of routes) {
    const [net = '0.0.0.0', lenText = '0'] = r.destination.split('/');
    const len = Number(lenText);
    const octets = Math.ceil(len / 8);
    const n = ipToInt(net) >>> 0;
    const dest = Buffer.alloc(4);
    dest.writeUInt32BE(n);
    parts.push(Buffer.from([len]), dest.subarray(0, octets), optIps([r.router]));
  }
  return Buffer.concat(parts);
}

/**
 * Reads sub-option `sub` of an encapsulated option block (RFC 2132 §8.4 layout: code, length,
 * data; 0 pads, 255 ends); undefined when absent or when the block is malformed.
 */
export function getEncapsulated(p: DhcpPacket, code: number, sub: number): Buffer | undefined {
  const v = p.options.get(code);
  if (!v) return undefined;
  let i = 0;
  while (i < v.length) {
    const c = v.readUInt8(i);
    if (c === 0) {
      i++;
      continue;
    }
    if (c === 255 || i + 1 >= v.length) return undefined;
    const n = v.readUInt8(i + 1);
    if (i + 2 + n > v.length) return undefined;
    if (c === sub) return v.subarray(i + 2, i + 2 + n);
    i += 2 + n;
  }
  return undefined;
}

/** A network device as iPXE names it in option 175.177 (its `dhcp_netdev_desc`). */
export interface IpxeBusId {
  /** 1 is PCI; other buses (EFI, ISA, ...) carry vendor and device numbers of their own. */
  busType: number;
  /** Lower-case hex, 4 digits. */
  vendor: string;
  device: string;
}

/** iPXE's bus ID of the network device it asks from (option 175, sub-option 177 = 0xb1). */
export function getIpxeBusId(p: DhcpPacket): IpxeBusId | undefined {
  const v = getEncapsulated(p, Opt.IPXE_ENCAP, 0xb1);
  if (v?.length !== 5) return undefined;
  const hex = (n: number) => n.toString(16).padStart(4, '0');
  return {
    busType: v.readUInt8(0),
    vendor: hex(v.readUInt16BE(1)),
    device: hex(v.readUInt16BE(3)),
  };
}

/** Encodes (code, data) pairs as an encapsulated option block (e.g. option 43 or 175). */
export function optEncapsulated(sub: readonly (readonly [number, Buffer])[]): Buffer {
  return Buffer.concat(sub.map(([c, d]) => Buffer.concat([Buffer.from([c, d.length]), d])));
}
