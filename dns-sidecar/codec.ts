/**
 * The wire side, on dns-packet (the maintained codec; nothing here parses DNS by hand beyond the
 * fixed 12-byte header). Decoding never throws: a datagram that is too short, is a response, or
 * that dns-packet cannot decode is reported as `drop` (counted, never answered); a decodable query
 * that breaks a protocol rule is reported with the rcode to answer (RFC 1035 §4.1.1 FORMERR and
 * NOTIMP, RFC 6891 §6.1.3 BADVERS). Responses echo the question's bytes exactly as they arrived,
 * so 0x20 mixed case survives (RFC 4343 §4.1).
 */
import dnsPacket, { type Answer, type DecodedPacket, type OptAnswer } from 'dns-packet';
import { RCODE } from './resolver.ts';

/** The parts of dns-packet's runtime API its published types leave out. */
interface RecordCodec {
  answer: {
    encode: (rr: Answer, buf: Buffer, offset: number) => Buffer;
    encodingLength: (rr: Answer) => number;
  };
  question: { decode: (buf: Buffer, offset: number) => unknown };
}
const codec = dnsPacket as unknown as RecordCodec;
const questionDecode = codec.question.decode as ((buf: Buffer, offset: number) => unknown) & {
  bytes: number;
};
const answerEncode = codec.answer.encode as ((
  rr: Answer,
  buf: Buffer,
  offset: number,
) => Buffer) & {
  bytes: number;
};

export const HEADER = 12;
/** RFC 1035 §4.2.1: without EDNS a UDP message is at most 512 bytes. */
export const UDP_MIN = 512;
/** Our EDNS UDP payload size (the DNS flag day 2020 value, as NSD and BIND default to). */
export const EDNS_PAYLOAD = 1232;
/** RFC 6891 §9: extended rcode 16. */
export const BADVERS = 16;

const QR = 0x8000;
const AA = 0x0400;
const TC = 0x0200;
const RD = 0x0100;
const OPCODE_MASK = 0x7800;

export const OPCODE = { QUERY: 0, NOTIFY: 4 } as const;

export interface Edns {
  payload: number;
  version: number;
  dnssecOk: boolean;
}

interface Base {
  id: number;
  /** The request's 16-bit flags word (opcode, RD and CD are echoed). */
  flags: number;
  opcode: number;
}

export type Incoming =
  | { kind: 'drop'; reason: 'short' | 'response' | 'malformed' }
  | (Base & {
      kind: 'error';
      rcode: number;
      reason: string;
      rawQuestion?: Buffer | undefined;
      edns?: Edns | undefined;
    })
  | (Base & {
      kind: 'query';
      name: string;
      qtype: number;
      qclass: number;
      rawQuestion: Buffer;
      edns?: Edns | undefined;
      packet: DecodedPacket;
    });

/** Decodes a query. Never throws. */
export function decodeQuery(buf: Buffer): Incoming {
  if (buf.length < HEADER) return { kind: 'drop', reason: 'short' };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  if (flags & QR) return { kind: 'drop', reason: 'response' }; // never answer a response
  const opcode = (flags & OPCODE_MASK) >> 11;
  // Counts that cannot fit the message (a question takes at least 5 bytes, a record 11) are
  // malformed. Checked before decoding because dns-packet allocates an array per section sized by
  // the counts: 12 bytes claiming 4 x 65535 records would otherwise cost a millisecond each.
  const minSize =
    HEADER +
    buf.readUInt16BE(4) * 5 +
    (buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10)) * 11;
  if (minSize > buf.length) return { kind: 'drop', reason: 'malformed' };
  let packet: DecodedPacket;
  let rawQuestion: Buffer | undefined;
  try {
    packet = dnsPacket.decode(buf);
    const qd = packet.questions?.length ?? 0;
    if (qd === 1) {
      // decode() went through question.decode once, for this question, which left its size in
      // question.decode.bytes (the other sections use answer.decode): no second decode.
      rawQuestion = buf.subarray(HEADER, HEADER + questionDecode.bytes);
    } else if (qd > 1) {
      questionDecode(buf, HEADER);
      rawQuestion = buf.subarray(HEADER, HEADER + questionDecode.bytes);
    }
  } catch {
    return { kind: 'drop', reason: 'malformed' };
  }
  const base = { id, flags, opcode };
  // RFC 1035 §4.1.1: opcodes other than QUERY are not implemented here (we are a primary, so a
  // NOTIFY sent to us has nothing to act on either). Answered with the header alone, as NSD does.
  if (opcode !== OPCODE.QUERY) {
    return { ...base, kind: 'error', rcode: RCODE.NOTIMP, reason: 'opcode' };
  }
  const opts = (packet.additionals ?? []).filter((a): a is OptAnswer => a.type === 'OPT');
  // RFC 6891 §6.1.1: more than one OPT, or an OPT not owned by the root, is FORMERR.
  if (opts.length > 1 || (opts[0] !== undefined && opts[0].name !== '.')) {
    return { ...base, kind: 'error', rcode: RCODE.FORMERR, reason: 'opt' };
  }
  const opt = opts[0];
  const edns: Edns | undefined = opt && {
    payload: opt.udpPayloadSize,
    version: opt.ednsVersion,
    dnssecOk: (opt.flags & 0x8000) !== 0,
  };
  if ((packet.questions?.length ?? 0) !== 1 || !rawQuestion) {
    return { ...base, kind: 'error', rcode: RCODE.FORMERR, reason: 'qdcount', edns };
  }
  // RFC 6891 §6.1.3: an EDNS version we do not speak is answered BADVERS (with our version, 0).
  if (edns && edns.version > 0) {
    return { ...base, kind: 'error', rcode: BADVERS, reason: 'badvers', rawQuestion, edns };
  }
  // A query carries nothing in the answer section, and only IXFR carries an authority record
  // (RFC 1995 §3); NSD answers the same FORMERR.
  const qtype = rawQuestion.readUInt16BE(rawQuestion.length - 4);
  const qclass = rawQuestion.readUInt16BE(rawQuestion.length - 2);
  if (
    (packet.answers?.length ?? 0) > 0 ||
    ((packet.authorities?.length ?? 0) > 0 && qtype !== 251)
  ) {
    return { ...base, kind: 'error', rcode: RCODE.FORMERR, reason: 'sections', rawQuestion, edns };
  }
  const name = packet.questions?.[0]?.name ?? '';
  return { ...base, kind: 'query', name, qtype, qclass, rawQuestion, edns, packet };
}

export interface Outgoing {
  id: number;
  requestFlags: number;
  /** Full rcode: values above 15 go into the OPT record's extended rcode (RFC 6891 §6.1.3). */
  rcode: number;
  aa: boolean;
  rawQuestion?: Buffer | undefined;
  answers: readonly Answer[];
  authorities: readonly Answer[];
  additionals: readonly Answer[];
  /** The request's EDNS: when present the response carries an OPT record. */
  edns?: Edns | undefined;
}

function responseOpt(edns: Edns, rcode: number): OptAnswer {
  return {
    name: '.',
    type: 'OPT',
    udpPayloadSize: EDNS_PAYLOAD,
    extendedRcode: rcode >> 4,
    ednsVersion: 0,
    // RFC 3225 §3: the DO bit is copied into the response.
    flags: edns.dnssecOk ? 0x8000 : 0,
    flag_do: edns.dnssecOk,
    options: [],
  };
}

/** The encoded size of one record (no name compression: dns-packet does not compress). */
export function recordSize(rr: Answer): number {
  return codec.answer.encodingLength(rr);
}

const sizeOf = (list: readonly Answer[]): number => {
  let n = 0;
  for (const rr of list) n += codec.answer.encodingLength(rr);
  return n;
};

/** The UDP size a response may take for this request (RFC 6891 §6.2.3 and §6.2.5). */
export function udpLimit(edns: Edns | undefined): number {
  if (!edns) return UDP_MIN;
  return Math.max(UDP_MIN, Math.min(edns.payload, EDNS_PAYLOAD));
}

/**
 * Encodes a response within `maxSize` bytes. Additional records are dropped first without TC
 * (they are optional, RFC 2181 §9); when the answer and authority sections still do not fit they
 * are left out and TC is set, so the client retries over TCP (RFC 7766 §5).
 */
export function encodeResponse(r: Outgoing, maxSize: number): Buffer {
  const opt = r.edns ? responseOpt(r.edns, r.rcode) : undefined;
  const optLen = opt ? codec.answer.encodingLength(opt) : 0;
  const qLen = r.rawQuestion?.length ?? 0;
  let answers = r.answers;
  let authorities = r.authorities;
  let additionals = r.additionals;
  let tc = false;
  const fixed = HEADER + qLen + optLen;
  let size = fixed + sizeOf(answers) + sizeOf(authorities) + sizeOf(additionals);
  if (size > maxSize && additionals.length > 0) {
    additionals = [];
    size = fixed + sizeOf(answers) + sizeOf(authorities);
  }
  if (size > maxSize) {
    answers = [];
    authorities = [];
    tc = true;
    size = fixed;
  }
  const buf = Buffer.allocUnsafe(size);
  const flags =
    QR |
    // RD is copied (RFC 1035 §4.1.1); CD is not, as NSD does: we are not a security-aware server
    // (RFC 4035 §3.1.6 asks that of those), and for us it is one of RFC 1035's zero Z bits.
    (r.requestFlags & (OPCODE_MASK | RD)) |
    (r.aa ? AA : 0) |
    (tc ? TC : 0) |
    (r.rcode & 0xf);
  buf.writeUInt16BE(r.id, 0);
  buf.writeUInt16BE(flags, 2);
  buf.writeUInt16BE(r.rawQuestion ? 1 : 0, 4);
  buf.writeUInt16BE(answers.length, 6);
  buf.writeUInt16BE(authorities.length, 8);
  buf.writeUInt16BE(additionals.length + (opt ? 1 : 0), 10);
  let off = HEADER;
  if (r.rawQuestion) off += r.rawQuestion.copy(buf, off);
  for (const list of [answers, authorities, additionals]) {
    for (const rr of list) {
      answerEncode(rr, buf, off);
      off += answerEncode.bytes;
    }
  }
  if (opt) {
    answerEncode(opt, buf, off);
    off += answerEncode.bytes;
  }
  return off === size ? buf : buf.subarray(0, off);
}

/** A query message (for NOTIFY, tests and the benchmark's checks). */
export function encodeMessage(p: Parameters<typeof dnsPacket.encode>[0]): Buffer {
  return dnsPacket.encode(p);
}

/** A decoded message with the fields dns-packet sets but its types leave out. */
export type Message = DecodedPacket & { rcode: string; opcode: string };

/** Decodes any message, throwing on malformed input (for tests and NOTIFY replies). */
export function decodeMessage(buf: Buffer): Message {
  return dnsPacket.decode(buf) as Message;
}
