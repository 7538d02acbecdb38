import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { deferContinue, HttpError, readLimited } from './body.ts';

const LIMIT = 1024;
let server: Server | undefined;

afterEach(async () => {
  const s = server;
  server = undefined;
  if (s) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A loopback server whose only route reads at most LIMIT bytes and echoes their count. */
async function start(): Promise<number> {
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    readLimited(req, LIMIT).then(
      (b) => res.end(`read ${String(b.length)}`),
      (e: unknown) => {
        const status = e instanceof HttpError ? e.status : 500;
        res.writeHead(status, { connection: 'close' }).end(String(e));
      },
    );
  };
  const s = createServer(onRequest);
  deferContinue(s, onRequest);
  server = s;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

/**
 * Sends the head of a request that expects 100 Continue, and the body only once the server
 * says 100, as curl does; resolves with everything the server wrote until it closed.
 */
function expectContinue(port: number, size: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    let sent = false;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer in 5 s; got ${JSON.stringify(got)}`));
    }, 5_000);
    sock.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (!sent && got.startsWith('HTTP/1.1 100')) {
        sent = true;
        sock.end(Buffer.alloc(size, 0x20));
      }
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    sock.on('error', reject);
    sock.write(
      `POST /x HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: ${String(size)}\r\n` +
        'connection: close\r\n\r\n',
    );
  });
}

describe('request bodies', () => {
  it('answers a declared over-limit body with 413 and never asks for it (no 100 Continue)', async () => {
    const got = await expectContinue(await start(), 10 * 1024 * 1024);
    expect(got.startsWith('HTTP/1.1 413')).toBe(true);
    expect(got).not.toContain('100 Continue');
    expect(got).toContain(`the body is over ${String(LIMIT)} bytes`);
  });

  it('asks for a body within the limit only when the route reads it, then reads it', async () => {
    const got = await expectContinue(await start(), 700);
    expect(got.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200')).toBe(true);
    expect(got).toContain('read 700');
  });
});
