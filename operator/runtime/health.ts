/**
 * /healthz (the process serves), /readyz (caches synced and fresh) and, when `registry` is given,
 * plain-HTTP /metrics (without it, /metrics is served by secure-metrics.ts, behind TLS and auth).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface ReadyCheck {
  name: string;
  ok(): boolean;
}

export function startHealthServer(
  host: string,
  port: number,
  registry: Registry | undefined,
  checks: () => readonly ReadyCheck[],
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz' || path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const failing = checks()
        .filter((c) => !c.ok())
        .map((c) => c.name);
      if (failing.length === 0) res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      else
        res
          .writeHead(503, { 'content-type': 'text/plain' })
          .end(`not ready: ${failing.join(', ')}\n`);
    } else if (path === '/metrics' && registry !== undefined) {
      registry
        .metrics()
        .then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text))
        .catch((err: unknown) => res.writeHead(500).end(String(err)));
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      resolve({ server, port: (server.address() as AddressInfo).port });
    });
  });
}
