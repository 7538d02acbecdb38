/**
 * The admission webhook's HTTP(S) server: POST /validate answers AdmissionReview v1; /healthz,
 * /readyz (every informer has synced) and /metrics. A bad request gets a 4xx answer and a log
 * line; nothing a client sends can throw out of the handler.
 */
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../operator/log.ts';
import {
  MalformedReview,
  deny,
  parseReview,
  reviewResponse,
  type AdmissionRequest,
  type Decision,
} from './admission.ts';
import { decide, reads } from './decide.ts';
import { kindLabel, type WebhookMetrics } from './metrics.ts';
import { WATCHED, type SnapshotSource } from './state.ts';

export const VALIDATE_PATH = '/validate';

export interface HandlerDeps {
  readonly source: SnapshotSource;
  readonly metrics: WebhookMetrics;
  readonly log: Logger;
  readonly maxBodyBytes: number;
  /** How long a refusal from the cache waits for fresh lists before it stands (ms). */
  readonly freshTimeoutMs?: number;
}

/** An HTTP error answered as plain text. */
class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`${what} took longer than ${ms} ms`));
    }, ms);
  });
  return Promise.race([p, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

/**
 * Judges one request: from the cache when it has synced, else from fresh lists. A refusal from
 * the cache is checked again against fresh lists (see state.ts for why); if those cannot be had
 * in time, the cached refusal stands.
 */
export async function review(request: AdmissionRequest, deps: HandlerDeps): Promise<Decision> {
  const cached = deps.source.cached();
  // A deletion cannot be undone (and the operator deletes a noderole's children with it): it is
  // judged on fresh lists only, so a child bound a moment ago is never missed. Deletes are rare.
  if (!cached || request.operation === 'DELETE') {
    const fresh = await deps.source.fresh(reads(request));
    if (cached) deps.metrics.freshReads.inc({ outcome: 'delete' });
    return decide(request, fresh);
  }
  const first = decide(request, cached);
  if (first.allowed || first.code !== 403) return first;
  try {
    const fresh = await withTimeout(
      deps.source.fresh(reads(request)),
      deps.freshTimeoutMs ?? 2000,
      'listing the cluster',
    );
    const second = decide(request, fresh);
    deps.metrics.freshReads.inc({ outcome: second.allowed ? 'overturned' : 'confirmed' });
    return second;
  } catch (err) {
    deps.metrics.freshReads.inc({ outcome: 'failed' });
    deps.log.warn({ err, uid: request.uid }, 'fresh read failed; the cached refusal stands');
    return first;
  }
}

/** Reads the body, refusing more than `max` bytes with 413 before buffering it. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > max) {
    return Promise.reject(new HttpError(413, `the body exceeds ${max} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > max) {
        done = true;
        reject(new HttpError(413, `the body exceeds ${max} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks));
    });
    req.once('error', (err) => {
      if (done) return;
      done = true;
      reject(new HttpError(400, `reading the body failed: ${err.message}`));
    });
  });
}

function sendText(res: ServerResponse, status: number, text: string, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(`${text}\n`);
}

/** The request handler: routes, never throws, always answers. */
export function makeHandler(
  deps: HandlerDeps,
): (req: IncomingMessage, res: ServerResponse) => void {
  const { metrics, log } = deps;

  const validate = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = process.hrtime.bigint();
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      throw new HttpError(405, `${VALIDATE_PATH} takes POST with an AdmissionReview`);
    }
    let request: AdmissionRequest;
    try {
      const body = await readBody(req, deps.maxBodyBytes);
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch (e) {
        throw new HttpError(400, `the body is not JSON: ${(e as Error).message}`);
      }
      request = parseReview(parsed);
    } catch (e) {
      metrics.requests.inc({ kind: 'unknown', operation: 'unknown', result: 'malformed' });
      if (e instanceof MalformedReview) throw new HttpError(400, e.message);
      throw e;
    }
    const kind = kindLabel(request.kind.kind);
    let decision: Decision;
    let result: 'allowed' | 'denied' | 'malformed' | 'error';
    try {
      decision = await review(request, deps);
      const code = decision.allowed ? 200 : (decision.code ?? 403);
      result =
        code === 200 ? 'allowed' : code === 403 ? 'denied' : code === 400 ? 'malformed' : 'error';
    } catch (err) {
      log.error({ err, uid: request.uid, kind: request.kind.kind }, 'admission decision failed');
      decision = deny(
        `the Crowbar admission webhook could not decide (${err instanceof Error ? err.message : String(err)}); try again`,
        500,
      );
      result = 'error';
    }
    const payload = JSON.stringify(reviewResponse(request.uid, decision));
    res.writeHead(200, { 'content-type': 'application/json' }).end(payload);
    metrics.requests.inc({ kind, operation: request.operation, result });
    metrics.seconds.observe({ kind }, Number(process.hrtime.bigint() - started) / 1e9);
    const fields = {
      uid: request.uid,
      kind: request.kind.kind,
      name: request.name,
      operation: request.operation,
      user: request.userInfo?.username,
      dryRun: request.dryRun,
    };
    if (decision.allowed) log.debug(fields, 'admitted');
    else log.info({ ...fields, code: decision.code, reason: decision.message }, 'refused');
  };

  const metricsText = async (res: ServerResponse): Promise<void> => {
    const synced = deps.source.synced();
    for (const k of WATCHED) metrics.synced.set({ kind: k }, synced[k] ? 1 : 0);
    const text = await metrics.registry.metrics();
    res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text);
  };

  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const route = async (): Promise<void> => {
      switch (path) {
        case VALIDATE_PATH:
          return validate(req, res);
        case '/healthz':
        case '/livez':
          sendText(res, 200, 'ok');
          return;
        case '/readyz': {
          const synced = deps.source.synced();
          const waiting = WATCHED.filter((k) => !synced[k]);
          if (waiting.length === 0) sendText(res, 200, 'ok');
          else sendText(res, 503, `not ready: informers not synced: ${waiting.join(', ')}`);
          return;
        }
        case '/metrics':
          return metricsText(res);
        default:
          sendText(res, 404, `no such path; try ${VALIDATE_PATH}, /healthz, /readyz or /metrics`);
      }
    };
    route().catch((err: unknown) => {
      if (err instanceof HttpError) {
        log.warn({ path, status: err.status, reason: err.message }, 'bad request');
        // A 413 leaves the rest of the body unread: close the connection rather than drain it.
        sendText(res, err.status, err.message, err.status === 413);
        if (err.status === 413) {
          res.once('finish', () => {
            req.destroy();
          });
        }
      } else {
        log.error({ err, path }, 'request failed');
        sendText(res, 500, 'internal error');
      }
    });
  };
}

export interface TlsFiles {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

export interface Listening {
  readonly server: Server;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Listens on host:port, over TLS when `tls` is given (the API server calls webhooks over HTTPS
 * only; plain HTTP is for unit tests).
 */
export function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  opts: { host: string; port: number; tls?: TlsFiles; log: Logger },
): Promise<Listening> {
  const server: Server = opts.tls
    ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler)
    : createHttpServer(handler);
  // The API server gives a webhook timeoutSeconds (at most 30) per call; idle clients get less.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 65_000;
  server.on('clientError', (err, socket) => {
    opts.log.debug({ err }, 'client error');
    socket.destroy();
  });
  server.on('tlsClientError', (err: Error) => {
    opts.log.debug({ err }, 'TLS handshake failed');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      server.on('error', (err) => {
        opts.log.error({ err }, 'server error');
      });
      resolve({
        server,
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((r) => {
            server.close(() => {
              r();
            });
            server.closeIdleConnections();
          }),
      });
    });
  });
}
