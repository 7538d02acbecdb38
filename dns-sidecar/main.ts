/**
 * The DNS sidecar: authoritative A, AAAA, PTR, SOA and NS for the cluster's domain and its
 * networks' reverse zones, answered from memory, fed by informers (or a manifest file).
 * /healthz, /readyz (every zone loaded, watches healthy) and /metrics on --health-addr.
 */
import { createServer, type Server } from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { FileBackend } from './backend/file.ts';
import { KubeBackend } from './backend/kube.ts';
import type { Backend } from './backend/backend.ts';
import { loadConfig } from './config.ts';
import { DnsMetrics } from './metrics.ts';
import { DnsSidecar } from './sidecar.ts';

function health(
  host: string,
  port: number,
  sidecar: DnsSidecar,
  metrics: DnsMetrics,
): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz' || path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      if (sidecar.ready()) res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      else
        res.writeHead(503, { 'content-type': 'text/plain' }).end('not ready: zones not loaded\n');
    } else if (path === '/metrics') {
      sidecar
        .metricsText()
        .then((text) =>
          res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        )
        .catch((err: unknown) => res.writeHead(500).end(String(err)));
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      resolve(server);
    });
  });
}

async function main(): Promise<void> {
  const log = pino({
    name: 'crowbar-dns',
    level: process.env['LOG_LEVEL'] ?? 'info',
    timestamp: pino.stdTimeFunctions.isoTime,
  });
  let config;
  try {
    config = loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    log.fatal({ err }, 'bad configuration');
    process.exit(2);
  }
  let backend: Backend;
  if (config.source.kind === 'file') {
    backend = new FileBackend(config.source.path, log);
  } else {
    const kc = new KubeConfig();
    if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
    else kc.loadFromDefault();
    backend = new KubeBackend(kc, log);
  }
  const metrics = new DnsMetrics();
  const sidecar = new DnsSidecar({
    config: config.dns,
    backend,
    listen: config.listen,
    notify: config.notify,
    transferAllowed: config.allowTransfer,
    log,
    metrics,
    stateFile: config.stateFile,
    zoneDir: config.zoneDir,
    answerCacheBytes: config.answerCacheBytes,
    udpWorkers: config.udpWorkers,
    udpEngine: config.udpEngine,
    allowTransferList: config.allowTransferList,
  });
  const http = await health(config.healthHost, config.healthPort, sidecar, metrics);
  await sidecar.start();
  log.info(
    {
      listen: sidecar.server.bound.map((l) => `${l.host}:${l.port}`),
      zones: config.dns.forwardZones,
      source: config.source.kind,
      notify: config.notify.map((n) => `${n.host}:${n.port}`),
      allowTransfer: config.allowTransferList,
      udpWorkers: config.udpWorkers,
      udpEngine: sidecar.server.udpEngine,
    },
    'serving',
  );
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    http.close();
    sidecar
      .stop()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      });
  };
  process.once('SIGTERM', () => {
    stop('SIGTERM');
  });
  process.once('SIGINT', () => {
    stop('SIGINT');
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
