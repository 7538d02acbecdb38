import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeMetrics } from './metrics.ts';
import { TftpServer, negotiate, parseRequest } from './tftp.ts';

function rrq(file: string, opts: Record<string, string> = {}): Buffer {
  const parts = [file, 'octet', ...Object.entries(opts).flat()].map((s) => `${s}\0`).join('');
  return Buffer.concat([Buffer.from([0, 1]), Buffer.from(parts, 'latin1')]);
}

describe('TFTP request parsing and negotiation', () => {
  it.each([
    ['empty', Buffer.alloc(0)],
    ['no terminator', Buffer.from([0, 1, 0x61, 0x62])],
    ['unknown opcode', Buffer.from([0, 9, 0x61, 0, 0x6f, 0])],
    ['odd option list', Buffer.concat([rrq('a'), Buffer.from('blksize\0', 'latin1')])],
  ])('refuses %s', (_n, b) => {
    expect(parseRequest(b)).toBeUndefined();
  });

  it('clamps options to what RFC 2348/2349/7440 and one Ethernet frame allow', () => {
    const r = parseRequest(
      rrq('f', { blksize: '65464', tsize: '0', timeout: '300', windowsize: '999' }),
    );
    expect(r).toBeDefined();
    const n = negotiate(r!, 1234);
    expect(n.blksize).toBe(1468);
    expect(n.timeoutS).toBe(2); // 300 is out of range: not acknowledged
    expect(n.window).toBe(64);
    expect(Object.fromEntries(n.oack)).toEqual({
      blksize: '1468',
      tsize: '1234',
      windowsize: '64',
    });
  });
});

describe('TFTP transfers on loopback', () => {
  let dir: string;
  let server: TftpServer;
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const data = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cbdhcp-tftp-'));
    writeFileSync(join(dir, 'file.bin'), data);
    server = new TftpServer({
      host: '127.0.0.1',
      port,
      root: dir,
      metrics: makeMetrics(),
      log: pino({ level: 'silent' }),
    });
    await server.start();
  });
  afterAll(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A minimal client: ACKs each window's last block; returns the file or the error text. */
  function fetch(file: string, opts: Record<string, string>): Promise<Buffer | string> {
    return new Promise((resolve, reject) => {
      const s = dgram.createSocket('udp4');
      const got: Buffer[] = [];
      let expect = 1;
      const window = Number(opts['windowsize'] ?? 1);
      const timer = setTimeout(() => {
        s.close();
        reject(new Error('timed out'));
      }, 10_000);
      const done = (v: Buffer | string) => {
        clearTimeout(timer);
        s.close();
        resolve(v);
      };
      s.on('message', (m, r) => {
        const op = m.readUInt16BE(0);
        const ack = (n: number) => {
          s.send(Buffer.from([0, 4, (n >> 8) & 255, n & 255]), r.port, r.address);
        };
        if (op === 5) {
          done(m.toString('latin1', 4).replace(/\0$/, ''));
          return;
        }
        if (op === 6) {
          ack(0);
          return;
        }
        if (op !== 3) return;
        const n = m.readUInt16BE(2);
        if (n !== (expect & 0xffff)) return;
        got.push(m.subarray(4));
        const last = m.length - 4 < Number(opts['blksize'] ?? 512);
        if (last) {
          ack(n);
          done(Buffer.concat(got));
          return;
        }
        if (expect % window === 0) ack(n);
        expect++;
      });
      s.bind(0, '127.0.0.1', () => {
        s.send(rrq(file, opts), port, '127.0.0.1');
      });
    });
  }

  it.each([
    ['plain RFC 1350', {}],
    ['blksize and tsize', { blksize: '1468', tsize: '0' }],
    ['windowsize 8 (RFC 7440)', { blksize: '1024', windowsize: '8' }],
  ])('%s', async (_n, opts: Record<string, string>) => {
    expect(await fetch('file.bin', opts)).toEqual(data);
  });

  it('refuses paths outside its root and missing files', async () => {
    expect(await fetch('../../../etc/passwd', {})).toBe('file not found');
    expect(await fetch('/etc/passwd', {})).toBe('file not found');
    expect(await fetch('nope', {})).toBe('file not found');
  });
});
