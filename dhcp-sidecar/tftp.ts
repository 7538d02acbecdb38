/**
 * A read-only TFTP server for the first-stage binaries only (RFC 1350, with option negotiation
 * RFC 2347, blksize RFC 2348, timeout and tsize RFC 2349, windowsize RFC 7440). Every transfer
 * runs on its own socket (its TID), retransmits a bounded number of times, and is refused when
 * the path would leave the root. Files are read whole (first stages are small; capped at 64 MiB).
 */
import dgram from 'node:dgram';
import { readFileSync, statSync } from 'node:fs';
import { safePath } from './http.ts';
import type { Logger, Metrics } from './metrics.ts';

const RRQ = 1;
const WRQ = 2;
const DATA = 3;
const ACK = 4;
const ERROR = 5;
const OACK = 6;
const MAX_FILE = 64 * 1024 * 1024;
const MAX_TRANSFERS = 64;
const RETRIES = 5;

export interface TftpRequest {
  opcode: number;
  file: string;
  mode: string;
  options: Map<string, string>;
}

/** Parses an RRQ/WRQ: opcode, file\0, mode\0, then option\0value\0 pairs. Never throws. */
export function parseRequest(b: Buffer): TftpRequest | undefined {
  if (b.length < 4 || b.length > 1024) return undefined;
  const opcode = b.readUInt16BE(0);
  if (opcode !== RRQ && opcode !== WRQ) return undefined;
  const parts = b.subarray(2).toString('latin1').split('\0');
  if (parts.length < 3 || parts[parts.length - 1] !== '') return undefined;
  parts.pop();
  const [file = '', mode = '', ...rest] = parts;
  if (file === '' || rest.length % 2 !== 0) return undefined;
  const options = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2)
    options.set((rest[i] ?? '').toLowerCase(), rest[i + 1] ?? '');
  return { opcode, file, mode: mode.toLowerCase(), options };
}

function errorPacket(code: number, msg: string): Buffer {
  const m = Buffer.from(`${msg}\0`, 'latin1');
  const b = Buffer.alloc(4 + m.length);
  b.writeUInt16BE(ERROR, 0);
  b.writeUInt16BE(code, 2);
  m.copy(b, 4);
  return b;
}

/** The options we accept, clamped to RFC ranges; unknown options are ignored (RFC 2347). */
export function negotiate(
  req: TftpRequest,
  size: number,
): { blksize: number; timeoutS: number; window: number; oack: Map<string, string> } {
  const oack = new Map<string, string>();
  let blksize = 512;
  let timeoutS = 2;
  let window = 1;
  const bs = Number(req.options.get('blksize'));
  if (req.options.has('blksize') && Number.isInteger(bs) && bs >= 8) {
    blksize = Math.min(bs, 1468); // one Ethernet frame; RFC 2348 allows up to 65464
    oack.set('blksize', String(blksize));
  }
  const to = Number(req.options.get('timeout'));
  if (req.options.has('timeout') && Number.isInteger(to) && to >= 1 && to <= 255) {
    timeoutS = to;
    oack.set('timeout', String(to));
  }
  if (req.options.has('tsize')) oack.set('tsize', String(size));
  const ws = Number(req.options.get('windowsize'));
  if (req.options.has('windowsize') && Number.isInteger(ws) && ws >= 1) {
    window = Math.min(ws, 64);
    oack.set('windowsize', String(window));
  }
  return { blksize, timeoutS, window, oack };
}

export interface TftpOptions {
  host: string;
  port: number;
  root: string;
  metrics: Metrics;
  log: Logger;
}

export class TftpServer {
  private readonly o: TftpOptions;
  private readonly sock: dgram.Socket;
  private readonly transfers = new Set<dgram.Socket>();
  /** udp6 when the host is an IPv6 address (TFTP for DHCPv6 clients' tftp://[...] URLs). */
  private readonly family: 'udp4' | 'udp6';

  constructor(o: TftpOptions) {
    this.o = o;
    this.family = o.host.includes(':') ? 'udp6' : 'udp4';
    this.sock = dgram.createSocket({ type: this.family, reuseAddr: true });
  }

  async start(): Promise<void> {
    this.sock.on('message', (msg, rinfo) => {
      this.onRequest(msg, rinfo.address, rinfo.port);
    });
    this.sock.on('error', (err) => {
      this.o.log.error({ err }, 'tftp socket error');
    });
    await new Promise<void>((resolve, reject) => {
      this.sock.once('error', reject);
      this.sock.bind(this.o.port, this.o.host, () => {
        this.sock.off('error', reject);
        resolve();
      });
    });
    this.o.log.info({ host: this.o.host, port: this.o.port }, 'tftp listening');
  }

  /** Errors to a request come from a fresh port (a new TID), as from a transfer's socket. */
  private reply(to: string, port: number, b: Buffer): void {
    const s = dgram.createSocket(this.family);
    s.on('error', () => {
      s.close();
    });
    s.bind(0, this.o.host, () => {
      s.send(b, port, to, () => {
        s.close();
      });
    });
  }

  private onRequest(msg: Buffer, from: string, port: number): void {
    const req = parseRequest(msg);
    const m = this.o.metrics.tftpTransfers;
    if (!req) {
      m.inc({ outcome: 'error' });
      this.reply(from, port, errorPacket(4, 'illegal TFTP operation'));
      return;
    }
    if (req.opcode === WRQ) {
      m.inc({ outcome: 'error' });
      this.reply(from, port, errorPacket(2, 'read-only server'));
      return;
    }
    if (this.transfers.size >= MAX_TRANSFERS) {
      m.inc({ outcome: 'error' });
      this.reply(from, port, errorPacket(0, 'too many transfers, retry'));
      return;
    }
    const full = safePath(this.o.root, req.file);
    let data: Buffer;
    try {
      if (!full) throw new Error('outside root');
      const st = statSync(full);
      if (!st.isFile() || st.size > MAX_FILE) throw new Error('not a servable file');
      data = readFileSync(full);
    } catch {
      m.inc({ outcome: 'error' });
      this.o.log.info({ from, file: req.file }, 'tftp file not found');
      this.reply(from, port, errorPacket(1, 'file not found'));
      return;
    }
    this.transfer(req, data, from, port);
  }

  private transfer(req: TftpRequest, data: Buffer, to: string, port: number): void {
    const { blksize, timeoutS, window, oack } = negotiate(req, data.length);
    const blocks = Math.floor(data.length / blksize) + 1; // the last one is short (maybe empty)
    const s = dgram.createSocket(this.family);
    this.transfers.add(s);
    let acked = oack.size > 0 ? 0 : -1; // with OACK, the client first ACKs block 0
    let tries = 0;
    let timer: NodeJS.Timeout | undefined;
    let finished = false;
    const log = this.o.log.child({ to, file: req.file });
    const finish = (outcome: string) => {
      if (finished) return;
      finished = true;
      if (timer) clearTimeout(timer);
      this.transfers.delete(s);
      s.close();
      this.o.metrics.tftpTransfers.inc({ outcome });
      log.debug({ outcome, bytes: data.length, blksize, window }, 'tftp transfer done');
    };
    const dataPacket = (n: number): Buffer => {
      const chunk = data.subarray((n - 1) * blksize, Math.min(data.length, n * blksize));
      const b = Buffer.alloc(4 + chunk.length);
      b.writeUInt16BE(DATA, 0);
      b.writeUInt16BE(n & 0xffff, 2); // block numbers roll over after 65535
      chunk.copy(b, 4);
      return b;
    };
    const sendWindow = () => {
      if (acked < 0) {
        const parts: Buffer[] = [Buffer.from([0, OACK])];
        for (const [k, v] of oack) parts.push(Buffer.from(`${k}\0${v}\0`, 'latin1'));
        s.send(Buffer.concat(parts), port, to);
      } else {
        for (let n = acked + 1; n <= Math.min(blocks, acked + window); n++)
          s.send(dataPacket(n), port, to);
      }
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        if (++tries > RETRIES) {
          finish('timeout');
          return;
        }
        sendWindow();
      }, timeoutS * 1000);
    };
    if (acked === 0) acked = -1; // send the OACK first; block 0's ACK moves us to data
    s.on('message', (msg, rinfo) => {
      if (rinfo.address !== to || rinfo.port !== port) {
        // RFC 1350 §4: a packet from an unknown TID gets an error and changes nothing.
        s.send(errorPacket(5, 'unknown transfer ID'), rinfo.port, rinfo.address);
        return;
      }
      if (msg.length < 4) return;
      const op = msg.readUInt16BE(0);
      if (op === ERROR) {
        finish('aborted'); // e.g. OVMF's tsize probe
        return;
      }
      if (op !== ACK) return;
      const wire = msg.readUInt16BE(2);
      // Map the 16-bit block number onto the window we have in flight.
      const base = acked < 0 ? 0 : acked;
      let n = base + ((wire - (base & 0xffff) + 0x10000) & 0xffff);
      if (n > Math.min(blocks, base + window)) return; // stale or duplicate ACK
      if (acked < 0 && wire === 0) n = 0;
      if (n < base) return;
      tries = 0;
      acked = n;
      if (acked >= blocks) {
        finish('ok');
        return;
      }
      sendWindow();
    });
    s.on('error', () => {
      finish('error');
    });
    s.bind(0, this.o.host, () => {
      sendWindow();
    });
  }

  async stop(): Promise<void> {
    for (const s of this.transfers) s.close();
    this.transfers.clear();
    await new Promise<void>((r) => {
      this.sock.close(() => {
        r();
      });
    });
  }
}
