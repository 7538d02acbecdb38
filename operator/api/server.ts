/**
 * The node self-report API (§10.1: "nodes set their own alive flag"). Discovery and installers
 * call it with their node's bearer token (operator/api/tokens.ts):
 *
 *   POST /api/v1/nodes/<fqdn>/alive   {"message": "..."}   (body optional, at most 4 KiB)
 *   POST /api/v1/nodes/<fqdn>/dead
 *   POST /api/v1/nodes/<fqdn>/token   renews: {"token", "expires"}, the node's current token
 *
 * The bearer token is the node's `alive` token (operator/api/tokens.ts): it expires, and a
 * node renews it with the one it holds (the old one stays valid until its own expiry).
 * 200 with the new state; 401 without the node's token; 404 for an unknown path (or a node
 * deleted since its token was made); 405 for another method; 413 for a body over the limit; 400
 * for a body that is not a JSON object; 429 (with Retry-After) past a node's rate limit.
 * The token is checked before the node is looked up, with the same answer for a node that does
 * not exist as for a wrong token, so the API cannot be used to find out node names. Requests are
 * rate-limited per node name (rate-limit.ts) before anything reads the API server.
 * With `tls` it serves HTTPS only (the chart's certificate); without, plain HTTP, which the
 * operator's config allows only on loopback (config.ts), and says so in a warning.
 * For a node with admin addresses the aliveness controller's own check has the last word.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Node } from '../../generated/crowbar.ts';
import type { FlapDamper } from '../controllers/aliveness/damping.ts';
import type { Verdict } from '../controllers/aliveness/plan.ts';
import { writeVerdict } from '../controllers/aliveness/status.ts';
import type { CrowbarClient } from '../kube/client.ts';
import type { Logger } from '../log.ts';
import { deferContinue, HttpError, readLimited } from './body.ts';
import { NODE_API_RATE, RateLimiter, type RateLimitOptions } from './rate-limit.ts';

export const MAX_BODY_BYTES = 4096;

const ROUTE = /^\/api\/v1\/nodes\/([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)\/(alive|dead|token)$/;

/**
 * A route mounted on this server by another part of the operator (the provisioner API): it
 * answers the request and resolves true, or resolves false to leave it to the next.
 */
export type ExtraRoute = (
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
) => Promise<boolean>;

export interface NodeApiDeps {
  host: string;
  port: number;
  client: CrowbarClient;
  /** The Node from the informer cache, or from the API while the cache is not synced. */
  getNode(name: string): Promise<Readonly<Node> | undefined>;
  verify(fqdn: string, token: string): Promise<boolean>;
  /** The node's current token and its expiry (ms), for `/token`; undefined without a Secret. */
  renew?(fqdn: string): Promise<{ token: string; expires: number | undefined } | undefined>;
  fieldManager: string;
  log: Logger;
  /** Tried in order before this server's own routes. */
  routes?: readonly ExtraRoute[];
  /** Serve HTTPS with this certificate and key (PEM); plain HTTP when absent. */
  tls?: { cert: string | Buffer; key: string | Buffer } | undefined;
  /** Per-node request rate (default {@link NODE_API_RATE}). */
  rate?: RateLimitOptions;
  /** The clock (tests). */
  now?: () => number;
  /** Flap damping, shared with the aliveness controller. */
  damper?: FlapDamper;
}

/** The bearer token of a request, or undefined. */
export function bearerToken(req: IncomingMessage): string | undefined {
  return /^Bearer ([\x21-\x7e]+)$/.exec(req.headers.authorization ?? '')?.[1];
}

export interface NodeApi {
  server: Server;
  port: number;
  close(): Promise<void>;
}

function message(body: Buffer): string | undefined {
  if (body.toString('utf8').trim() === '') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'the body must be a JSON object, e.g. {"message": "booted"}');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new HttpError(400, 'the body must be a JSON object, e.g. {"message": "booted"}');
  }
  const m = (v as Record<string, unknown>)['message'];
  return typeof m === 'string' ? m.slice(0, 512) : undefined;
}

function send(
  res: ServerResponse,
  status: number,
  body: object,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(`${JSON.stringify(body)}\n`);
}

export async function startNodeApi(d: NodeApiDeps): Promise<NodeApi> {
  const log = d.log.child({ component: 'node-api' });
  const limiter = new RateLimiter(d.rate ?? NODE_API_RATE);
  const now = d.now ?? Date.now;
  if (!d.tls) log.warn('the node API serves plain HTTP: give it a certificate (--api-tls-cert)');

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    for (const r of d.routes ?? []) if (await r(req, res, path)) return;
    const m = ROUTE.exec(path);
    const fqdn = m?.[1];
    const what = m?.[3];
    if (fqdn === undefined || what === undefined) throw new HttpError(404, 'no such endpoint');
    if (req.method !== 'POST') {
      throw new HttpError(405, 'use POST', { allow: 'POST' });
    }
    const wait = limiter.take(fqdn, now());
    if (wait > 0) {
      throw new HttpError(429, `too many requests for this node; retry in ${String(wait)} s`, {
        'retry-after': String(wait),
      });
    }
    const body = await readLimited(req, MAX_BODY_BYTES);
    // Authentication before lookup: an unknown node and a wrong token get the same answer.
    const token = bearerToken(req);
    if (token === undefined || !(await d.verify(fqdn, token))) {
      log.warn({ node: fqdn, remote: req.socket.remoteAddress }, 'refused a node report');
      throw new HttpError(401, 'a valid bearer token of this node is required', {
        'www-authenticate': 'Bearer realm="crowbar-node"',
      });
    }
    const node = await d.getNode(fqdn);
    if (!node) throw new HttpError(404, `node ${fqdn} not found`);
    if (what === 'token') {
      const cur = await d.renew?.(fqdn);
      if (!cur) throw new HttpError(503, 'the node has no token to hand out; retry');
      log.info({ node: fqdn }, 'node renewed its token');
      send(res, 200, {
        node: fqdn,
        token: cur.token,
        ...(cur.expires === undefined ? {} : { expires: new Date(cur.expires).toISOString() }),
      });
      return;
    }
    const note = message(body);
    const reported: Verdict = {
      alive: what === 'alive',
      reason: 'SelfReported',
      message: `the node reported itself ${what}${note === undefined ? '' : `: ${note}`}`,
    };
    const v = d.damper
      ? d.damper.damp(fqdn, reported, node.status?.alive, now(), node.status?.aliveDamping)
      : reported;
    const damping = d.damper?.record(fqdn, node.status?.aliveDamping);
    await writeVerdict(d.client, node, v, d.fieldManager, 0, damping);
    const alive = v.alive === true;
    log.info({ node: fqdn, alive, reason: v.reason }, 'node reported its aliveness');
    // A node held dead for flapping is told when to report again.
    const held = d.damper?.releaseInMs(fqdn, now()) ?? 0;
    send(res, 200, {
      node: fqdn,
      alive,
      ...(held > 0 ? { heldSeconds: Math.ceil(held / 1000), message: v.message } : {}),
    });
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((e: unknown) => {
      if (e instanceof HttpError) {
        send(res, e.status, { error: e.message }, { ...e.headers, connection: 'close' });
        return;
      }
      log.error({ err: e }, 'node API request failed');
      send(res, 500, { error: 'internal error; see the operator log' });
    });
  };
  const server: Server = d.tls
    ? createTlsServer({ cert: d.tls.cert, key: d.tls.key }, onRequest)
    : createServer(onRequest);
  deferContinue(server, onRequest);
  server.on('tlsClientError', (err: Error) => {
    log.debug({ err }, 'TLS handshake failed');
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(d.port, d.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => {
          r();
        });
        server.closeAllConnections();
      }),
  };
}
