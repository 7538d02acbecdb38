/**
 * One message in, the messages to send back out: decode, the protocol rules around the resolver
 * (zone transfers, IXFR, size limits), encode. No sockets here, so all of it is unit-tested.
 */
import type { Answer } from 'dns-packet';
import {
  decodeQuery,
  encodeResponse,
  recordSize,
  udpLimit,
  type Edns,
  type Incoming,
  type Outgoing,
} from './codec.ts';
import { canon } from './names.ts';
import { QCLASS, QTYPE, RCODE, findZone, resolve, type ZoneSet } from './resolver.ts';
import { zoneRecords } from './zonefile.ts';

export type Transport = 'udp' | 'tcp';

export interface Context {
  zones: ZoneSet;
  transport: Transport;
  /** The client's address (for the zone transfer ACL). */
  remote: string;
  transferAllowed(remote: string): boolean;
}

export interface Handled {
  /** Messages to send, in order; none means the message is dropped. */
  responses: Buffer[];
  /** What happened, for metrics and logs. */
  outcome: 'answer' | 'error' | 'drop' | 'transfer';
  reason?: string;
  qtype?: number;
  rcode?: number;
  zone?: string | undefined;
}

/** TCP messages are at most 65535 bytes (RFC 1035 §4.2.2); a transfer message aims at this size. */
const TCP_MAX = 65_535;
const XFR_CHUNK = 16_384;

function reply(
  q: Extract<Incoming, { kind: 'query' | 'error' }>,
  rest: Omit<Outgoing, 'id' | 'requestFlags' | 'rawQuestion' | 'edns'>,
  edns: Edns | undefined,
): Outgoing {
  return { id: q.id, requestFlags: q.flags, rawQuestion: q.rawQuestion, edns, ...rest };
}

/** AXFR (RFC 5936 §2.2): SOA, every other record, SOA again, split over messages. */
function transfer(q: Extract<Incoming, { kind: 'query' }>, records: readonly Answer[]): Buffer[] {
  const out: Buffer[] = [];
  const soa = records[0];
  if (!soa) return out;
  const all = [...records, soa];
  let chunk: Answer[] = [];
  let size = 0;
  const flush = (): void => {
    const msg = reply(
      q,
      { rcode: RCODE.NOERROR, aa: true, answers: chunk, authorities: [], additionals: [] },
      q.edns,
    );
    out.push(encodeResponse(msg, TCP_MAX));
    chunk = [];
    size = 0;
  };
  for (const rr of all) {
    chunk.push(rr);
    size += recordSize(rr);
    if (size >= XFR_CHUNK) flush();
  }
  if (chunk.length) flush();
  return out;
}

/** Handles one DNS message. Never throws. */
export function handleMessage(buf: Buffer, ctx: Context): Handled {
  let q: Incoming;
  try {
    q = decodeQuery(buf);
  } catch {
    return { responses: [], outcome: 'drop', reason: 'malformed' };
  }
  if (q.kind === 'drop') return { responses: [], outcome: 'drop', reason: q.reason };
  const limit = ctx.transport === 'udp' ? udpLimit(q.edns) : TCP_MAX;
  if (q.kind === 'error') {
    const msg = reply(
      q,
      { rcode: q.rcode, aa: false, answers: [], authorities: [], additionals: [] },
      q.edns,
    );
    return {
      responses: [encodeResponse(msg, limit)],
      outcome: 'error',
      reason: q.reason,
      rcode: q.rcode,
    };
  }
  const base = { qtype: q.qtype };
  if (q.qclass !== QCLASS.IN && q.qclass !== QCLASS.ANY && q.qclass !== QCLASS.CH) {
    // Classes we hold no data in at all (HS, NONE, unassigned) are refused with the header
    // alone, as NSD does; CHAOS names are refused by the resolver like any name outside our zones.
    const msg: Outgoing = {
      id: q.id,
      requestFlags: q.flags,
      rcode: RCODE.REFUSED,
      aa: false,
      answers: [],
      authorities: [],
      additionals: [],
      edns: q.edns,
    };
    return {
      ...base,
      responses: [encodeResponse(msg, limit)],
      outcome: 'error',
      rcode: RCODE.REFUSED,
    };
  }
  if (q.qtype === QTYPE.AXFR || q.qtype === QTYPE.IXFR) {
    const zone = findZone(ctx.zones, canon(q.name));
    const origin = zone?.origin;
    const refuse = (rcode: number, reason: string): Handled => ({
      ...base,
      responses: [
        encodeResponse(
          reply(q, { rcode, aa: false, answers: [], authorities: [], additionals: [] }, q.edns),
          limit,
        ),
      ],
      outcome: 'error',
      reason,
      rcode,
      zone: origin,
    });
    // RFC 5936 §4.2: no AXFR over UDP (NOTIMP, as NSD answers).
    if (ctx.transport === 'udp' && q.qtype === QTYPE.AXFR) return refuse(RCODE.NOTIMP, 'axfr-udp');
    // Transfers are of whole zones, by their apex name, to allowed addresses only.
    if (!zone || canon(q.name) !== zone.origin) return refuse(RCODE.REFUSED, 'xfr-not-apex');
    if (!ctx.transferAllowed(ctx.remote)) return refuse(RCODE.REFUSED, 'xfr-denied');
    if (ctx.transport === 'udp') {
      // RFC 1995 §2: an IXFR over UDP that does not fit is answered with the current SOA
      // alone, which tells the client to come back over TCP.
      const soa: Answer = { ...zone.soa, name: q.name.replace(/\.$/, '') };
      const msg = reply(
        q,
        { rcode: RCODE.NOERROR, aa: true, answers: [soa], authorities: [], additionals: [] },
        q.edns,
      );
      return { ...base, responses: [encodeResponse(msg, limit)], outcome: 'answer', rcode: 0 };
    }
    // IXFR over TCP falls back to a full transfer in AXFR form (RFC 1995 §4).
    return {
      ...base,
      responses: transfer(q, zoneRecords(zone)),
      outcome: 'transfer',
      rcode: RCODE.NOERROR,
      zone: origin,
    };
  }
  const r = resolve(ctx.zones, { name: q.name, type: q.qtype, class: q.qclass });
  const msg = reply(
    q,
    {
      rcode: r.rcode,
      aa: r.aa,
      answers: r.answers,
      authorities: r.authorities,
      additionals: r.additionals,
    },
    q.edns,
  );
  return {
    ...base,
    responses: [encodeResponse(msg, limit)],
    outcome: 'answer',
    rcode: r.rcode,
    zone: r.zone,
  };
}
