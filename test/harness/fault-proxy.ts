/**
 * A fault-injecting HTTPS proxy in front of the test's kube-apiserver: it terminates TLS with the
 * API server's own certificate (so clients' kubeconfigs need only a new address), forwards each
 * request with the admin client certificate, and, drawn from a seeded PRNG per request:
 *
 * - answers 429 (Retry-After: 1) or 500 without forwarding;
 * - forwards a write and then answers 500 anyway (the write happened; the client must not assume
 *   it did not);
 * - delays the request before forwarding it;
 * - cuts a watch stream after a short while.
 *
 * Everything goes to loopback. The counts of each fault are in `counts`.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent, createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Pki } from './pki.ts';

export interface FaultRates {
  /** Probability of an immediate 429. */
  tooMany: number;
  /** Probability of an immediate 500 (not forwarded). */
  error: number;
  /** Probability that a write (POST/PUT/PATCH/DELETE) is forwarded and then answered with 500. */
  errorAfterWrite: number;
  /** Probability of a delay before forwarding, of up to `maxDelayMs`. */
  delay: number;
  maxDelayMs: number;
  /** A watch is cut after up to this many ms. */
  maxWatchMs: number;
}

export const DEFAULT_FAULTS: FaultRates = {
  tooMany: 0.05,
  error: 0.03,
  errorAfterWrite: 0.03,
  delay: 0.1,
  maxDelayMs: 400,
  maxWatchMs: 4000,
};

export class FaultProxy {
  readonly port: number;
  readonly counts = {
    requests: 0,
    tooMany: 0,
    error: 0,
    errorAfterWrite: 0,
    delayed: 0,
    watchesCut: 0,
  };
  enabled = true;
  private readonly server: Server;
  private readonly agent: Agent;

  private constructor(server: Server, agent: Agent, port: number) {
    this.server = server;
    this.agent = agent;
    this.port = port;
  }

  static async start(
    upstream: string,
    pki: Pki,
    random: () => number,
    rates: FaultRates = DEFAULT_FAULTS,
  ): Promise<FaultProxy> {
    const target = new URL(upstream);
    const agent = new Agent({
      keepAlive: true,
      ca: readFileSync(pki.caCrt),
      cert: readFileSync(pki.adminCrt),
      key: readFileSync(pki.adminKey),
    });
    const holder: { proxy?: FaultProxy } = {};
    const server = createServer(
      { cert: readFileSync(pki.apiserverCrt), key: readFileSync(pki.apiserverKey) },
      (req, res) => {
        const p = holder.proxy;
        if (p) p.handle(req, res, target, random, rates);
        else res.destroy();
      },
    );
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        resolve();
      });
    });
    const proxy = new FaultProxy(server, agent, (server.address() as AddressInfo).port);
    holder.proxy = proxy;
    return proxy;
  }

  private handle(
    req: IncomingMessage,
    res: ServerResponse,
    target: URL,
    random: () => number,
    rates: FaultRates,
  ): void {
    this.counts.requests++;
    const url = req.url ?? '/';
    const watch = /[?&]watch=(true|1)/.test(url);
    const write = ['POST', 'PUT', 'PATCH', 'DELETE'].includes(req.method ?? 'GET');
    const status = (code: number, reason: string): void => {
      res.writeHead(code, {
        'content-type': 'application/json',
        ...(code === 429 ? { 'retry-after': '1' } : {}),
      });
      res.end(
        JSON.stringify({
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          message: `fault proxy: ${reason}`,
          reason: code === 429 ? 'TooManyRequests' : 'InternalError',
          code,
        }),
      );
    };
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    if (this.enabled) {
      const r = random();
      if (r < rates.tooMany) {
        this.counts.tooMany++;
        req.resume();
        status(429, 'too many requests');
        return;
      }
      if (r < rates.tooMany + rates.error) {
        this.counts.error++;
        req.resume();
        status(500, 'internal error');
        return;
      }
    }
    const failAfter = this.enabled && write && random() < rates.errorAfterWrite;
    const delay =
      this.enabled && random() < rates.delay ? Math.floor(random() * rates.maxDelayMs) : 0;
    if (delay > 0) this.counts.delayed++;
    const watchMs = Math.floor(random() * rates.maxWatchMs);
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      setTimeout(() => {
        const headers = { ...req.headers, host: target.host };
        const up = request(
          {
            host: target.hostname,
            port: target.port,
            method: req.method,
            path: url,
            headers,
            agent: this.agent,
          },
          (upRes) => {
            if (failAfter) {
              this.counts.errorAfterWrite++;
              upRes.resume();
              status(500, 'internal error after the write');
              return;
            }
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            // As the API server does: a watch's headers go out at once, before any event.
            res.flushHeaders();
            upRes.pipe(res);
            if (watch && this.enabled) {
              const t = setTimeout(() => {
                this.counts.watchesCut++;
                upRes.destroy();
                res.destroy();
              }, watchMs);
              res.on('close', () => {
                clearTimeout(t);
                upRes.destroy();
              });
            }
          },
        );
        up.on('error', () => {
          if (!res.headersSent) status(502, 'upstream unreachable');
          else res.destroy();
        });
        up.end(Buffer.concat(body));
      }, delay);
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve();
      });
    });
    this.agent.destroy();
  }
}
