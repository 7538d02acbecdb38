/**
 * The Crowbar admission webhook: informers for the kinds its rules read, an HTTPS server the API
 * server calls at /validate, /healthz, /readyz, /metrics, JSON logs, and a clean stop on SIGTERM.
 *
 *   node webhooks/main.ts --kubeconfig=PATH --listen=127.0.0.1:9443 --tls-cert=tls.crt --tls-key=tls.key
 */
import { readFileSync, statSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import { loadKubeConfig } from '../operator/kube/client.ts';
import { rootLogger } from '../operator/log.ts';
import { onShutdown } from '../operator/runtime/shutdown.ts';
import { loadConfig, type WebhookConfig } from './config.ts';
import { makeWebhookMetrics } from './metrics.ts';
import { listen, makeHandler } from './server.ts';
import { InformerSource } from './state.ts';

/** How often the certificate files are checked for rotation (cert-manager renews in place). */
const CERT_POLL_MS = 30_000;

async function main(): Promise<void> {
  const log = rootLogger('crowbar-webhook');
  let config: WebhookConfig;
  try {
    config = loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    log.fatal({ err }, 'bad configuration');
    process.exit(2);
  }
  const readTls = () => ({
    cert: readFileSync(config.tlsCert),
    key: readFileSync(config.tlsKey),
  });
  let tls;
  try {
    tls = readTls();
  } catch (err) {
    log.fatal({ err, cert: config.tlsCert, key: config.tlsKey }, 'cannot read the TLS files');
    process.exit(2);
  }
  const kc = loadKubeConfig(config.kubeconfig);
  const metrics = makeWebhookMetrics();
  const source = new InformerSource(kc, log, (kind) => {
    metrics.freshLists.inc({ kind });
  });
  const handler = makeHandler({ source, metrics, log, maxBodyBytes: config.maxBodyBytes });
  const listening = await listen(handler, { host: config.host, port: config.port, tls, log });
  log.info(
    { host: config.host, port: listening.port, server: kc.getCurrentCluster()?.server },
    'listening',
  );

  // Serve at once (requests before sync are judged from fresh lists); /readyz waits for sync.
  source
    .start()
    .then(() => {
      log.info('informers synced');
    })
    .catch((err: unknown) => {
      log.error({ err }, 'informers failed to start');
    });

  const mtime = () => `${statSync(config.tlsCert).mtimeMs}:${statSync(config.tlsKey).mtimeMs}`;
  let lastMtime = mtime();
  const certTimer = setInterval(() => {
    try {
      const now = mtime();
      if (now === lastMtime) return;
      (listening.server as HttpsServer).setSecureContext(readTls());
      lastMtime = now;
      log.info('reloaded the serving certificate');
    } catch (err) {
      log.warn({ err }, 'could not reload the serving certificate; keeping the old one');
    }
  }, CERT_POLL_MS);
  certTimer.unref();

  onShutdown(log, 10_000, async () => {
    clearInterval(certTimer);
    await Promise.all([listening.close(), source.stop()]);
  });
}

main().catch((err: unknown) => {
  rootLogger('crowbar-webhook').fatal({ err }, 'failed');
  process.exit(1);
});
