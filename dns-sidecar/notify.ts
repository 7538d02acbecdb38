/**
 * NOTIFY (RFC 1996) to the configured secondaries whenever a zone's serial moves: a UDP message of
 * opcode NOTIFY with the zone's SOA, retransmitted with backoff until the secondary answers with
 * the same id (RFC 1996 §3.6), a bounded number of times.
 */
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import dnsPacket from 'dns-packet';
import type { SoaAnswer } from 'dns-packet';

export interface NotifyTarget {
  host: string;
  port: number;
}

const OPCODE_NOTIFY = 4;
const AA = 0x0400;

export interface NotifyOptions {
  /** First wait for an answer; doubled on each retransmission. */
  firstTimeoutMs?: number;
  tries?: number;
}

/** The NOTIFY message for `soa` (RFC 1996 §3.7: the SOA may ride in the answer section). */
export function notifyMessage(id: number, soa: SoaAnswer): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: (OPCODE_NOTIFY << 11) | AA,
    questions: [{ name: soa.name, type: 'SOA', class: 'IN' }],
    answers: [soa],
  });
}

/**
 * Sends NOTIFY for `soa` to `target`. Resolves 'ok' when the secondary acknowledges, 'timeout'
 * after `tries` unanswered sends, 'error' if the socket fails. Never rejects.
 */
export function sendNotify(
  target: NotifyTarget,
  soa: SoaAnswer,
  opts: NotifyOptions = {},
): Promise<'ok' | 'timeout' | 'error'> {
  const tries = opts.tries ?? 5;
  let wait = opts.firstTimeoutMs ?? 1000;
  const id = randomInt(0, 65536);
  const msg = notifyMessage(id, soa);
  const sock = createSocket(isIPv6(target.host) ? 'udp6' : 'udp4');
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let sent = 0;
    const done = (r: 'ok' | 'timeout' | 'error'): void => {
      if (timer) clearTimeout(timer);
      sock.removeAllListeners('message');
      sock.close();
      resolve(r);
    };
    sock.on('message', (buf: Buffer) => {
      try {
        const r = dnsPacket.decode(buf);
        if (r.id === id && r.flag_qr && (((r.flags ?? 0) >> 11) & 0xf) === OPCODE_NOTIFY)
          done('ok');
      } catch {
        // Not a reply we can read: keep waiting for one.
      }
    });
    sock.on('error', () => {
      done('error');
    });
    const send = (): void => {
      if (sent >= tries) {
        done('timeout');
        return;
      }
      sent++;
      sock.send(msg, target.port, target.host);
      timer = setTimeout(send, wait);
      wait *= 2;
    };
    send();
  });
}
