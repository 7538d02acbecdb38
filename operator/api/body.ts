/**
 * Request bodies for the node API and the routes it serves (provisioning): a size limit that
 * refuses before anything is read, and `Expect: 100-continue` answered only by a reader that will
 * read. Node's server otherwise sends 100 Continue itself, the client uploads the whole body, and
 * the 413 sent meanwhile (with `connection: close`) can be lost to a reset of the half-read
 * connection: curl then reports 100, not 413.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/** An answer with a status, and headers such as `retry-after`. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/** Requests whose client waits for 100 Continue, and the response to send it on. */
const awaitingContinue = new WeakMap<IncomingMessage, ServerResponse>();

/**
 * Makes `server` hand requests that carry `Expect: 100-continue` to `onRequest` without the 100:
 * {@link readLimited} sends it once the declared size is within the limit, and a request refused
 * before its body is read (401, 404, 413, 429) gets its final answer instead.
 */
export function deferContinue(
  server: Server,
  onRequest: (req: IncomingMessage, res: ServerResponse) => void,
): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    awaitingContinue.set(req, res);
    onRequest(req, res);
  });
}

/** Reads at most `max` bytes; 413 as soon as the declared or received size is over. */
export function readLimited(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > max) {
      reject(new HttpError(413, `the body is over ${max} bytes`));
      return;
    }
    const res = awaitingContinue.get(req);
    if (res) {
      awaitingContinue.delete(req);
      res.writeContinue();
    }
    const parts: Buffer[] = [];
    let n = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      n += c.length;
      if (n > max) {
        over = true;
        reject(new HttpError(413, `the body is over ${max} bytes`));
        return;
      }
      parts.push(c);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(parts));
    });
    req.on('error', reject);
  });
}
